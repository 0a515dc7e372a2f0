"""A class server on JupyterHub: its configuration, and checking every student's notebook.

One system user per student; JupyterHub's LocalProcessSpawner starts each student's server as
that user with ``labchat lab --hub --student labchat-lab``, which copies the student edition
into ``~/labchat-lab`` on first start and serves it. Every capture a student's kernel makes
runs in a private user+network namespace of its own (labchat's *private* mode): no root, no
capture rights, and no student sees another's packets. docs/classroom.md walks through it.

`hub_config` writes the ``jupyterhub_config.py``; `HubClient` drives the Hub's REST API (start
and stop servers); `check_class` runs a notebook in every student's own server and returns each
student's `labchat.classroom.checker.NotebookReport`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .checker import NotebookReport, collect
from .launch import FIRST_NOTEBOOK
from .remote import JsonApi, RemoteError, ServerClient

__all__ = ["HubClient", "WORKDIR", "check_class", "hub_config", "service_config"]

#: The work folder in each student's home.
WORKDIR = "labchat-lab"

#: A student's server imports Jupyter and copies the notebooks: seconds on a loaded machine.
START_TIMEOUT = 180.0


def _set(names: Iterable[str]) -> str:
    """A set literal in a stable order (``set()`` if empty)."""
    names = sorted(set(names))
    return "{" + ", ".join(repr(n) for n in names) + "}" if names else "set()"


def hub_config(
    *,
    labchat: str | Path | Sequence[str],
    proxy: str | Path = "configurable-http-proxy",
    students: Iterable[str] = (),
    admins: Iterable[str] = (),
    bind_url: str = "http://:8000",
    state_dir: str | Path = "/srv/labchat-hub",
    edition: str = "student",
    ssl_cert: str | Path | None = None,
    ssl_key: str | Path | None = None,
) -> str:
    """The ``jupyterhub_config.py`` of a labchat class server.

    Args:
        labchat: the ``labchat`` command of the lab's venv (e.g. ``/opt/labchat/bin/labchat``),
            or an argv that runs it; every student runs it, so it must be readable by all
            (never under /root).
        proxy: the ``configurable-http-proxy`` command (npm).
        students: the students' user names (system users that exist).
        admins: the teachers' user names (they may also log in).
        bind_url: where the Hub listens (put TLS in front of it, or set ssl_cert/ssl_key).
        state_dir: the Hub's database, cookie secret and proxy pid file (root only).
        edition: ``student`` (answers removed) or ``teacher``.
        ssl_cert: the Hub's TLS certificate (students type their passwords into it).
        ssl_key: its private key.

    Returns:
        The configuration file's text.
    """
    users = sorted({*students, *admins})
    command = [str(labchat)] if isinstance(labchat, str | Path) else [str(a) for a in labchat]
    argv = [*command, "lab", "--hub", *(["--student"] if edition == "student" else []), WORKDIR]
    argv.append("--jupyter")  # last: the spawner's own arguments (Spawner.args) follow it
    state = Path(state_dir)
    tls = ""
    if ssl_cert or ssl_key:
        tls = (
            f"c.JupyterHub.ssl_cert = {str(ssl_cert)!r}\nc.JupyterHub.ssl_key = {str(ssl_key)!r}\n"
        )
    return f"""\
# jupyterhub_config.py for a labchat class (docs/classroom.md). Run as root:
#     jupyterhub -f jupyterhub_config.py
c = get_config()  # noqa: F821 - JupyterHub provides it

c.JupyterHub.bind_url = {bind_url!r}
{tls}c.JupyterHub.db_url = "sqlite:///{state / "jupyterhub.sqlite"}"
c.JupyterHub.cookie_secret_file = {str(state / "jupyterhub_cookie_secret")!r}
c.ConfigurableHTTPProxy.pid_file = {str(state / "jupyterhub-proxy.pid")!r}
c.ConfigurableHTTPProxy.command = [{str(proxy)!r}]

# One system user per student (PAM: their system password). Each student's server runs as
# that user, started by labchat, which copies the notebooks into ~/{WORKDIR} on first start.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = {_set(users)}
c.Authenticator.admin_users = {_set(admins)}
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = {argv!r}
c.Spawner.default_url = "/lab/tree/{FIRST_NOTEBOOK}"
# Twenty students starting at once on two cores take a while to import Jupyter.
c.Spawner.start_timeout = {int(START_TIMEOUT)}
c.Spawner.http_timeout = {int(START_TIMEOUT)}
"""


def service_config(name: str, token: str) -> str:
    """Config lines for a service whose token may start servers and run code in them.

    That is what `check_class` needs (and tests/test_jupyterhub.py uses): a teacher's
    script, never a student's.
    """
    scopes = ["list:users", "read:users", "admin:users", "admin:servers", "access:servers"]
    return f"""
c.JupyterHub.services = [{{"name": {name!r}, "api_token": {token!r}}}]
c.JupyterHub.load_roles = [
    {{"name": {name!r}, "scopes": {scopes!r}, "services": [{name!r}]}},
]
"""


class HubClient(JsonApi):
    """The Hub's REST API (``/hub/api``) with a service token.

    Args:
        url: the Hub's public URL (``http://host:8000``).
        token: a token with the scopes of `service_config`.
    """

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        super().__init__(f"{self.url}/hub/api/", token)

    async def add_users(self, names: Sequence[str]) -> None:
        """Make the Hub know these (system) users; those it knows already are left alone."""
        known = {u["name"] for u in await self.api("users")}
        new = [n for n in names if n not in known]
        if new:
            await self.api("users", "POST", {"usernames": new})

    async def start(self, name: str, timeout: float = START_TIMEOUT) -> str:
        """Start `name`'s server (if it is not running) and wait until it is ready.

        Returns:
            Its URL path (``/user/<name>/``).

        Raises:
            RemoteError: it did not become ready in `timeout` seconds.
        """
        user = await self.api(f"users/{name}")
        if not user.get("servers", {}).get("", {}).get("ready"):
            try:
                await self.api(f"users/{name}/server", "POST", {})
            except RemoteError as exc:
                if " 400 " not in str(exc):  # 400: already running or pending
                    raise
        deadline = time.monotonic() + timeout
        while True:
            server = (await self.api(f"users/{name}")).get("servers", {}).get("")
            if server and server.get("ready"):
                return str(server["url"])
            if time.monotonic() > deadline:
                raise RemoteError(f"{name}'s server was not ready after {timeout:.0f} s")
            await asyncio.sleep(0.5)

    async def stop(self, name: str, timeout: float = 60.0) -> None:
        """Stop `name`'s server and wait until the Hub says it is gone."""
        try:
            await self.api(f"users/{name}/server", "DELETE")
        except RemoteError as exc:
            if " 400 " not in str(exc):  # 400: not running
                raise
        deadline = time.monotonic() + timeout
        while (await self.api(f"users/{name}")).get("servers"):
            if time.monotonic() > deadline:
                raise RemoteError(f"{name}'s server did not stop in {timeout:.0f} s")
            await asyncio.sleep(0.5)


async def _check_one(
    hub: HubClient,
    name: str,
    notebook: str,
    *,
    save: bool,
    timings: dict[str, dict[str, float]],
    executed: dict[str, Any],
) -> NotebookReport:
    t0 = time.monotonic()
    path = await hub.start(name)
    t1 = time.monotonic()
    async with ServerClient(hub.url + path, hub.token) as server:
        nb = await server.read_notebook(notebook)
        await server.execute(nb)
        if save:
            await server.write_notebook(notebook, nb)
    t2 = time.monotonic()
    timings[name] = {"start": t1 - t0, "run": t2 - t1}
    executed[name] = nb
    report = collect(nb, notebook=notebook, student=name)
    report.seconds = round(t2 - t1, 1)
    return report


async def check_class(
    hub: HubClient,
    students: Sequence[str],
    notebook: str,
    *,
    save: bool = True,
    timings: dict[str, dict[str, float]] | None = None,
    executed: dict[str, Any] | None = None,
) -> dict[str, NotebookReport | BaseException]:
    """Run `notebook` in every student's own server at once; each student's report.

    Each student's server is started if needed; the notebook is read from their work folder
    (their own copy, their answers), run in a new kernel of their server, as them, and saved
    back with its outputs when `save` (what Run All and Save would do).

    Args:
        hub: the Hub.
        students: user names.
        notebook: path relative to the work folder (``01-watch-a-tcp-handshake.ipynb``).
        save: write the executed notebook back.
        timings: filled with each student's seconds to ``start`` the server and to ``run``.
        executed: filled with each student's executed notebook.

    Returns:
        Student -> their report, or the exception that stopped their run.
    """
    timings = {} if timings is None else timings
    executed = {} if executed is None else executed
    runs = (
        _check_one(hub, s, notebook, save=save, timings=timings, executed=executed)
        for s in students
    )
    results = await asyncio.gather(*runs, return_exceptions=True)
    return dict(zip(students, results, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labchat.classroom.hub --students ana ben ...``: print a jupyterhub_config.py."""
    import argparse
    import shutil
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m labchat.classroom.hub", description="Print a jupyterhub_config.py."
    )
    parser.add_argument("--students", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--admins", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--bind-url", default="http://:8000")
    parser.add_argument("--state-dir", default="/srv/labchat-hub")
    parser.add_argument("--proxy", default=shutil.which("configurable-http-proxy"))
    parser.add_argument("--ssl-cert")
    parser.add_argument("--ssl-key")
    parser.add_argument("--edition", choices=("student", "teacher"), default="student")
    args = parser.parse_args(argv)
    labchat = Path(sys.executable).parent / "labchat"
    print(
        hub_config(
            labchat=labchat,
            proxy=args.proxy or "configurable-http-proxy",
            students=args.students,
            admins=args.admins,
            bind_url=args.bind_url,
            state_dir=args.state_dir,
            edition=args.edition,
            ssl_cert=args.ssl_cert,
            ssl_key=args.ssl_key,
        ),
        end="",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
