"""Shared fixtures: lab certificates, a users file, servers and clients on 127.0.0.1:0.

Everything a fixture starts, it stops: servers are closed and clients disconnected at
teardown, and `no_thread_leak` checks that the threads they started are gone again.

    pytestmark = pytest.mark.usefixtures("no_thread_leak")   # opt in, module-wide

    def test_something(make_server, connect):
        server = make_server(tls_version="1.3")
        alice = connect(server, user="alice")       # connected and logged in
        alice.say("hi")
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import TIMEOUT

from labchat.auth import UserStore
from labchat.certs import LabCertPaths, create_lab_certs
from labchat.client import Client
from labchat.server import Server

#: The accounts in the `users` file and their passwords.
PASSWORDS = {
    "alice": "alice-password",
    "bob": "bob-password",
    "carol": "carol-password",
}


@pytest.fixture(scope="session")
def lab_certs(tmp_path_factory: pytest.TempPathFactory) -> LabCertPaths:
    """A lab CA and a server certificate for localhost/127.0.0.1/::1, made once per run."""
    return create_lab_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def passwords() -> dict[str, str]:
    """User name -> password for every account in `users` (a copy: change it freely)."""
    return dict(PASSWORDS)


@pytest.fixture(scope="session")
def _users_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Real scrypt records (N=2**14, r=8), but p=1 instead of the default p=5: each login
    # then costs ~30 ms instead of ~150 ms, which the suite's many logins notice. The
    # parameters live in each record, so the server verifies exactly as in production.
    path = tmp_path_factory.mktemp("users") / "users.json"
    store = UserStore(path, p=1)
    for name, password in PASSWORDS.items():
        store.add(name, password)
    return path


@pytest.fixture
def users(_users_template: Path, tmp_path: Path) -> Path:
    """A fresh users file (alice, bob, carol; see `passwords`) that a test may change."""
    path = tmp_path / "users.json"
    shutil.copy2(_users_template, path)
    return path


@pytest.fixture
def make_server(lab_certs: LabCertPaths, users: Path) -> Iterator[Callable[..., Server]]:
    """Factory: `make_server(**kw)` returns a started `Server` on 127.0.0.1, port 0.

    Keyword arguments go to `Server` (plain=True, tls_version="1.3", idle_timeout=0.3,
    users=<path, UserStore or Authenticator>, ...). Every server is closed at teardown.
    """
    servers: list[Server] = []

    def make(**kw: object) -> Server:
        kw.setdefault("certs_dir", lab_certs.directory)
        kw.setdefault("users", users)
        server = Server("127.0.0.1", 0, **kw)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def connect(lab_certs: LabCertPaths) -> Iterator[Callable[..., Client]]:
    """Factory: `connect(server, user=None, password=None, **kw)` returns a `Client`.

    The client speaks TLS or plaintext as the server does and trusts the lab CA. With
    *user* it also logs in (with that user's password unless *password* is given). Other
    keyword arguments go to `Client`. Thread-safe; every client is closed at teardown.
    """
    clients: list[Client] = []
    lock = threading.Lock()

    def make(
        server: Server, user: str | None = None, password: str | None = None, **kw: object
    ) -> Client:
        kw.setdefault("tls", server.tls)
        kw.setdefault("cafile", lab_certs.ca_cert)
        kw.setdefault("timeout", TIMEOUT)
        host, port = server.address
        client = Client(host, port, **kw)  # type: ignore[arg-type]
        with lock:
            clients.append(client)
        if user is not None:
            client.login(user, PASSWORDS[user] if password is None else password)
        return client

    yield make
    with lock:
        for client in clients:
            client.close()


def wait_for_threads(baseline: set[threading.Thread], timeout: float = 3.0) -> list[str]:
    """Join every thread not in *baseline* (bounded); return the names of those still alive."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread not in baseline and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return sorted(t.name for t in threading.enumerate() if t not in baseline and t.is_alive())


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    """Fail the test if threads it started outlive it (after fixtures closed their servers).

    Request it before `make_server`/`connect` (e.g. with `pytest.mark.usefixtures`) so its
    check runs after their teardown. Threads get a short grace period to finish.
    """
    baseline = set(threading.enumerate())
    yield
    leaked = wait_for_threads(baseline)
    assert not leaked, f"threads still running after the test: {leaked}"
