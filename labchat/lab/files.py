"""Throwaway lab files for one notebook: certificates, a users file, and a server using them.

Every notebook that runs a server makes its own certificates and accounts in a temporary
directory (never the learner's ``certs/``), starts the server on a free loopback port and
closes it again at the end of the cell.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..auth import UserStore
from ..certs import LabCertPaths, create_lab_certs

__all__ = ["LabFiles", "client_options", "lab_files", "running_server"]


@dataclass
class LabFiles:
    """Throwaway lab certificates and users for one notebook.

    Attributes:
        directory: the temporary directory holding everything.
        certs: paths of ca.pem, ca.key, server.pem, server.key.
        users: the users store (users.json).
        passwords: user name -> password of the accounts created.
    """

    directory: Path
    certs: LabCertPaths
    users: UserStore
    passwords: dict[str, str]


def lab_files(
    directory: str | Path,
    passwords: dict[str, str] | None = None,
    *,
    fast_hash: bool = False,
) -> LabFiles:
    """Make lab certificates and a users file in ``directory`` (never the learner's certs/).

    Args:
        directory: a (temporary) directory; ``certs/`` and ``users.json`` go inside.
        passwords: accounts to create; alice and bob by default.
        fast_hash: hash with scrypt N=2**10, r=8, p=1 instead of the real cost. Only for
            load experiments with dozens of logins: the real cost (about 0.1 s a login on
            purpose) would dominate them. Never for a real users file.

    Returns:
        The paths and the store.
    """
    directory = Path(directory)
    passwords = dict(passwords or {"alice": "correct horse battery", "bob": "staple tuna lamp"})
    certs = create_lab_certs(directory / "certs", force=True)
    kw = {"n": 2**10, "r": 8, "p": 1} if fast_hash else {}
    users = UserStore(directory / "users.json", **kw)
    for name, password in passwords.items():
        users.add(name, password, replace=True)
    return LabFiles(directory, certs, users, passwords)


@contextlib.contextmanager
def running_server(files: LabFiles, **kwargs: Any) -> Iterator[Any]:
    """A started `Server` on 127.0.0.1 with a free port, using ``files``; closed on exit.

    Args:
        files: from `lab_files`: the server's certificates and users.
        **kwargs: more `labchat.Server` settings (``plain=True``, limits, ...).

    Yields:
        The running server (``server.address`` is its host and port).
    """
    from ..server import Server

    kwargs.setdefault("users", files.users)
    if not kwargs.get("plain"):
        kwargs.setdefault("certs_dir", files.certs.directory)
    with Server("127.0.0.1", 0, **kwargs) as server:
        yield server


def client_options(files: LabFiles) -> dict[str, Any]:
    """`labchat.Client` keyword arguments that trust ``files``' lab CA (server name localhost)."""
    return {"cafile": files.certs.ca_cert, "server_hostname": "localhost", "timeout": 10.0}
