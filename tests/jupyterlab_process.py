"""Start JupyterLab as a child process on a loopback port, and stop it with all it started.

A test helper (tests/test_browser.py): `make lab` runs ``jupyter lab`` in the foreground, where
Ctrl-C is the way out; a test needs the same server in the background: on a free port, with a
token it can read, with Jupyter's config, runtime and settings directories kept away from the
user's own, and stopped at the end together with its kernels and whatever they started.

    argv = [sys.executable, "-m", "jupyter", "lab", "--notebook-dir=notebooks",
            f"--ServerApp.port={free_port()}", "--no-browser"]
    with JupyterLab.start(argv, env=isolated_env(tmp / "jupyter")) as lab:
        print(lab.url)        # http://localhost:PORT/lab/tree/...?token=... as Jupyter printed it
    # here the server, its kernels and their children are gone

Process trees come from psutil (a test dependency). Import it as ``from jupyterlab_process
import ...``: pytest puts ``tests/`` on ``sys.path``. (Not ``jupyter.py``: that name is
jupyter_core's own module.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

__all__ = [
    "JupyterLab",
    "JupyterLabError",
    "alive",
    "descendants",
    "free_port",
    "isolated_env",
    "kill_tree",
    "processes_mentioning",
]

#: The line Jupyter Server prints under "Jupyter Server x.y is running at:". With a generated
#: token it carries the token; with one from config it prints "token=..." instead.
URL_RE = re.compile(r"(https?://(?:localhost|127\.0\.0\.1|\[::1\]):(\d+)(/\S*))")

#: JupyterLab imports a lot on its first start (and may build a font cache for matplotlib in
#: the kernel later); 60 s is generous for 2 cores and still ends a hung start.
START_TIMEOUT = 60.0

#: How long the server gets after SIGTERM to shut its kernels down before SIGKILL.
STOP_TIMEOUT = 15.0


class JupyterLabError(RuntimeError):
    """JupyterLab did not start (it exited, or printed no URL in time)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that was free a moment ago (bind to port 0, read it, close).

    Jupyter moves on to the next port if another process takes it in between
    (`ServerApp.port_retries`), and `JupyterLab.url` reports the one it really used.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def isolated_env(base: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `environ` whose Jupyter and IPython directories all live under `base`.

    Config, runtime (connection files, the cookie secret), data, JupyterLab user settings and
    workspaces, and IPython's profile: nothing the server writes lands in the user's home, and
    nothing the user configured (extensions, a password, a workspace layout) changes the run.
    Kernels are still found in the interpreter's own ``share/jupyter``.

    Args:
        base: a directory of the caller's (created if missing).
        environ: the environment to start from; `os.environ` if None.

    Returns:
        The new environment, with the directories created.
    """
    env = dict(os.environ if environ is None else environ)
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTERLAB_SETTINGS_DIR": base / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "lab-workspaces",
        "IPYTHONDIR": base / "ipython",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    # A JUPYTER_PATH of the user's would bring their extensions and kernels back in.
    env.pop("JUPYTER_PATH", None)
    return env


def descendants(pid: int) -> list[int]:
    """The pids of every living process below `pid` (children, grandchildren, ...).

    Kernels are started in a session of their own (jupyter_client sets ``start_new_session``),
    so the server's process group does not reach them: the parent links do.
    """
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(pid: int) -> bool:
    """True if process `pid` exists and is not a zombie."""
    try:
        # A zombie is dead, only not yet reaped by its parent.
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_mentioning(text: str) -> list[int]:
    """Living processes (other than this one) whose command line contains `text`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(text in arg for arg in cmdline):
            found.append(proc.pid)
    return found


def kill_tree(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """SIGKILL each of `pids` and its process group, wait for them; return the survivors."""
    pids = list(pids)
    for pid in pids:
        for kill in (os.killpg, os.kill):
            try:
                kill(os.getpgid(pid) if kill is os.killpg else pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


@dataclass
class JupyterLab:
    """A running JupyterLab server started by `start`; stop it with `stop` (or `with`)."""

    process: subprocess.Popen[bytes]
    log_path: Path
    #: The URL exactly as Jupyter printed it (path = its default_url, with ``?token=``).
    printed_url: str
    #: The token in use: the one given to `start`, or the one Jupyter generated and printed.
    token: str
    #: Every process seen below the server (kernels and their children), kept for `stop`.
    seen: set[int] = field(default_factory=set)

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        token: str | None = None,
        log_path: Path | None = None,
        timeout: float = START_TIMEOUT,
    ) -> JupyterLab:
        """Run `argv` (a ``jupyter lab ...`` command line) and wait until it serves.

        Args:
            argv: the command; pass ``--no-browser`` and a port in it. If `token` is given it is
                added as ``--IdentityProvider.token``; otherwise Jupyter generates one and prints
                it in its URL, which is read from its log.
            cwd: working directory (relative ``--notebook-dir`` values are resolved from it).
            env: the environment, e.g. from `isolated_env`.
            token: a token to require, or None to use Jupyter's own.
            log_path: where the server's stdout and stderr go (a temp file by default).
            timeout: seconds to wait for the URL and for ``/api/status`` to answer.

        Returns:
            The running server.

        Raises:
            JupyterLabError: it exited or did not serve in time (it is stopped first; the
                message ends with its log).
        """
        argv = list(argv)
        if token is not None:
            argv.append(f"--IdentityProvider.token={token}")
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="jupyterlab-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        with open(log_path, "wb") as log:
            # A session of its own: one killpg reaches the server and anything it forks
            # that does not leave the group itself.
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        lab = cls(process=process, log_path=log_path, printed_url="", token=token or "")
        try:
            lab.wait_ready(timeout, token_given=token is not None)
        except BaseException:
            lab.stop()
            raise
        return lab

    def wait_ready(self, timeout: float = START_TIMEOUT, *, token_given: bool = True) -> None:
        """Wait until the server printed its URL and answers ``/api/status``.

        Args:
            timeout: seconds for both together.
            token_given: False if Jupyter generated the token: it is read from the printed URL.

        Raises:
            JupyterLabError: the server exited, or did not get there in `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while not self.printed_url:
            if self.process.poll() is not None:
                raise JupyterLabError(
                    f"jupyter lab exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise JupyterLabError(f"jupyter lab printed no URL in {timeout} s:\n{self.log()}")
            match = URL_RE.search(self.log())
            if match:
                self.printed_url = match.group(1)
            else:
                time.sleep(0.1)
        if not token_given:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.printed_url).query)
            self.token = query.get("token", [""])[0]
        while True:
            try:
                self.api("status", timeout=5)
                return
            except OSError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise JupyterLabError(
                        f"jupyter lab does not answer /api/status ({exc}):\n{self.log()}"
                    ) from exc
                time.sleep(0.1)

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the server."""
        parts = urllib.parse.urlsplit(self.printed_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def url(self) -> str:
        """The printed URL with the real token in it (Jupyter prints ``...`` for a given one)."""
        parts = urllib.parse.urlsplit(self.printed_url)
        query = urllib.parse.urlencode({"token": self.token})
        return urllib.parse.urlunsplit(parts._replace(query=query))

    def lab_url(self, path: str) -> str:
        """The URL that opens `path` (relative to the notebook dir) in JupyterLab."""
        quoted = urllib.parse.quote(path)
        return f"{self.base_url}/lab/tree/{quoted}?token={urllib.parse.quote(self.token)}"

    def api(self, path: str, method: str = "GET", timeout: float = 30.0) -> object:
        """Call the REST API (``/api/<path>``) with the token; return the decoded JSON.

        Raises:
            urllib.error.HTTPError: the server answered with an error status.
            OSError: no answer in `timeout` seconds.
        """
        request = urllib.request.Request(
            f"{self.base_url}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def remember_children(self) -> None:
        """Note the processes now below the server, so `stop` can end them even if orphaned."""
        if self.process.poll() is None:
            self.seen.update(descendants(self.process.pid))

    def stop(self, timeout: float = STOP_TIMEOUT) -> list[int]:
        """Stop the server, its kernels and their children; return pids that survived.

        SIGTERM first, which Jupyter Server answers by shutting its kernels down; then
        SIGKILL to whatever is left: the server's process group and every process seen below
        it, each with its own process group (kernels run in sessions of their own).
        """
        self.remember_children()
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        survivors = kill_tree([self.process.pid, *sorted(self.seen)])
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            survivors.append(self.process.pid)
        return sorted(set(survivors))

    def __enter__(self) -> JupyterLab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
