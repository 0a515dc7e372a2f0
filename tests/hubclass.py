"""A trial class on this machine: system users, a JupyterHub, and everything removed after.

Used by tests/test_jupyterhub.py and bench/hub.py. Needs root (it creates system users and
the Hub spawns servers as them), a venv of the lab with ``labchat[hub]`` that every user can
read (tests/installed.py), and configurable-http-proxy (``make hub-deps``).

    with trial_hub(venv, proxy, students=10) as hub:
        reports = asyncio.run(run_class(hub, "01-watch-a-tcp-handshake.ipynb"))
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installed import REPO, public_tempdir
from jupyterlab_process import alive, descendants, free_port, kill_tree

from labchat.classroom.hub import HubClient, check_class, hub_config, service_config

__all__ = [
    "ClassRun",
    "TrialHub",
    "find_proxy",
    "run_class",
    "stop_all",
    "student_processes",
    "trial_hub",
]

#: Where `make hub-deps` puts configurable-http-proxy (npm).
PROXY = REPO / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
SERVICE = "labchat-check"


def find_proxy() -> Path | None:
    """configurable-http-proxy from `make hub-deps`, or on PATH."""
    if PROXY.exists():
        return PROXY
    found = shutil.which("configurable-http-proxy")
    return Path(found) if found else None


@dataclass
class TrialHub:
    """A running JupyterHub with its students."""

    url: str
    token: str
    students: list[str]
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    seen: set[int] = field(default_factory=set)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self) -> HubClient:
        return HubClient(self.url, self.token)

    def uids(self) -> set[int]:
        return {pwd.getpwnam(s).pw_uid for s in self.students}


def student_processes(uids: set[int]) -> list[int]:
    """Pids of every process running as one of `uids` (our students: nobody else is)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids and alive(int(entry.name)):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _useradd(name: str, home: Path) -> None:
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _userdel(name: str) -> None:
    subprocess.run(["userdel", "--remove", name], capture_output=True, timeout=30)


def _wait_hub(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/hub/api/", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"jupyterhub did not answer in {timeout} s:\n{log.read_text()}")
        time.sleep(0.3)


@contextlib.contextmanager
def trial_hub(
    venv: Path, proxy: Path, *, students: int, start_timeout: float = 60.0
) -> Iterator[TrialHub]:
    """JupyterHub (LocalProcessSpawner) for `students` new system users; all removed after.

    The users get homes in a temporary directory and random names (``lcXXXXsNN``); the Hub,
    its proxy and every student's process are stopped, the users deleted, the files removed,
    even if the body fails.
    """
    root = public_tempdir("labchat-hub-")
    run = secrets.token_hex(2)
    names = [f"lc{run}s{i:02d}" for i in range(1, students + 1)]
    created: list[str] = []
    process = None
    hub: TrialHub | None = None
    try:
        (root / "home").mkdir(mode=0o755)
        for name in names:
            _useradd(name, root / "home" / name)
            created.append(name)
        state = root / "state"
        state.mkdir(mode=0o700)
        token = secrets.token_hex(32)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = hub_config(
            labchat=venv / "bin" / "labchat",
            proxy=proxy,
            students=names,
            bind_url=url,
            state_dir=state,
        )
        config += service_config(SERVICE, token)
        config += (
            f"c.JupyterHub.hub_port = {free_port()}\n"
            f'c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"\n'
            # Students' servers pick random ports on 127.0.0.1 (the default), never the LAN.
        )
        (state / "jupyterhub_config.py").write_text(config)
        env = {
            "PATH": f"{venv / 'bin'}:{proxy.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
            "/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(state),
        }
        log_path = root / "jupyterhub.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(venv / "bin" / "jupyterhub"), "-f", str(state / "jupyterhub_config.py")],
                cwd=state,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_hub(url, process, log_path, start_timeout)
        hub = TrialHub(url, token, names, root, process, log_path)
        yield hub
    finally:
        uids = {pwd.getpwnam(n).pw_uid for n in created}
        if process is not None:
            seen = set(descendants(process.pid)) | (hub.seen if hub else set())
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # the Hub stops its servers and proxy
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            kill_tree([process.pid, *seen, *student_processes(uids)])
        left = student_processes(uids)
        if left:
            kill_tree(left)
        for name in created:
            _userdel(name)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class ClassRun:
    """What `run_class` found: each student's report, timings and executed notebook."""

    reports: dict[str, Any]
    timings: dict[str, dict[str, float]]
    notebooks: dict[str, Any]
    start_seconds: float
    run_seconds: float


async def run_class(hub: TrialHub, notebook: str, students: list[str] | None = None) -> ClassRun:
    """Start every student's server (all at once), then every student runs `notebook` at once."""
    names = students or hub.students
    timings: dict[str, dict[str, float]] = {}
    executed: dict[str, Any] = {}
    async with hub.client() as client:
        await client.add_users(hub.students)
        t0 = time.monotonic()
        await asyncio.gather(*(client.start(s) for s in names))
        t1 = time.monotonic()
        if hub.process.poll() is None:
            hub.seen.update(descendants(hub.process.pid))
        reports = await check_class(client, names, notebook, timings=timings, executed=executed)
        t2 = time.monotonic()
    return ClassRun(reports, timings, executed, t1 - t0, t2 - t1)


def stop_all(hub: TrialHub) -> None:
    """Stop every student's server through the Hub (what a teacher does after class)."""

    async def stop() -> None:
        async with hub.client() as client:
            await asyncio.gather(*(client.stop(s) for s in hub.students))

    asyncio.run(stop())
