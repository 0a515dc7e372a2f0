"""The demo accounts file: the passwords `labchat init` made, kept where a learner finds them.

``labchat init`` creates alice and bob with random passwords. Shown once above a screen of
JupyterLab's log they were easy to miss (issue 12), so they are also written to
``certs/demo-accounts.txt`` (mode 0600, git-ignored with the rest of ``certs/``), printed in a
box at the end of every ``labchat init`` (which ``make lab`` runs just before JupyterLab's
banner), and ``labchat passwd NAME`` resets one and updates the file.

The file is plain text a person can read::

    # labchat demo accounts: user password (labchat passwd NAME makes a new one)
    alice  Xb3k9_Qw2mZp
    bob    7hQ-2vLsK0aa

It holds lab passwords for lab accounts on one machine: the same trust as the users file
next to it, and the same mode.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from labchat.auth import write_private_file

__all__ = [
    "ACCOUNTS_FILE",
    "new_password",
    "read_accounts",
    "update_accounts",
    "write_accounts",
    "accounts_box",
]

#: The file's name, next to the certificates and the users file.
ACCOUNTS_FILE = "demo-accounts.txt"

_HEADER = "# labchat demo accounts: user password (labchat passwd NAME makes a new one)\n"


def new_password() -> str:
    """A random password: 12 URL-safe characters (72 bits), easy to copy from a terminal."""
    return secrets.token_urlsafe(9)


def read_accounts(path: str | os.PathLike[str]) -> dict[str, str]:
    """The accounts in *path*, name -> password, in file order; {} if there is no file.

    Lines that are empty, comments, or not ``NAME PASSWORD`` are skipped.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    accounts = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and not line.startswith("#"):
            accounts[fields[0]] = fields[1]
    return accounts


def write_accounts(path: str | os.PathLike[str], accounts: Mapping[str, str]) -> Path:
    """Write *accounts* (name -> password) to *path* with mode 0600, atomically.

    Returns:
        The path written.
    """
    path = Path(path)
    width = max((len(name) for name in accounts), default=0)
    body = _HEADER + "".join(f"{n:<{width}}  {pw}\n" for n, pw in accounts.items())
    write_private_file(path, body.encode("utf-8"))
    return path


def update_accounts(path: str | os.PathLike[str], name: str, password: str | None) -> None:
    """Record *name*'s new *password* in the file, or drop *name* if *password* is None.

    Nothing is written when the file does not exist and *password* is None.
    """
    accounts = read_accounts(path)
    if password is None:
        if accounts.pop(name, None) is None:
            return
    else:
        accounts[name] = password
    write_accounts(path, accounts)


def accounts_box(accounts: Mapping[str, str], *, path: str | os.PathLike[str] | None = None) -> str:
    """The accounts in an ASCII box, to stand out from the log lines around it.

    Args:
        accounts: name -> password.
        path: The file they are kept in, named in the box.

    Returns:
        The box, several lines, no trailing newline.
    """
    width = max((len(name) for name in accounts), default=0)
    lines = ["labchat demo accounts" + (f" (also in {path})" if path else "")]
    lines += [f"  {name:<{width}}  {password}" for name, password in accounts.items()]
    lines.append("labchat passwd NAME gives one a new password")
    inner = max(len(line) for line in lines)
    rule = "+" + "-" * (inner + 2) + "+"
    return "\n".join([rule, *(f"| {line:<{inner}} |" for line in lines), rule])
