"""Where a user's input history lives: the platform's per-user data directory.

Linux and other Unix: ``$XDG_DATA_HOME/labchat`` (``~/.local/share/labchat`` by default,
the XDG Base Directory spec); macOS: ``~/Library/Application Support/labchat``; Windows:
``%APPDATA%\\labchat``. One file per chat user name, so alice's lines never come up in bob's
history on a shared lab machine account. The file is created 0600: it holds what you typed,
private lines included.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from labchat import protocol as p

__all__ = ["data_dir", "history_file"]


def data_dir(env: dict[str, str] | None = None, platform: str | None = None) -> Path:
    """labchat's directory in the user's data directory (not created).

    Args:
        env: The environment to read (default: `os.environ`).
        platform: ``sys.platform`` to decide for (default: this one).
    """
    env = dict(os.environ if env is None else env)
    platform = platform or sys.platform
    home = Path(env.get("HOME") or Path.home())
    if platform.startswith("win"):
        base = Path(env["APPDATA"]) if env.get("APPDATA") else home / "AppData" / "Roaming"
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        xdg = env.get("XDG_DATA_HOME", "")
        # The spec: a relative path in XDG_DATA_HOME is invalid and must be ignored.
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base / "labchat"


def history_file(user: str, env: dict[str, str] | None = None) -> Path:
    """The history file of chat user *user*, created (mode 0600) with its directory.

    Args:
        user: The chat user name (a valid labchat user name: safe as a file name).
        env: The environment to read (default: `os.environ`).

    Raises:
        ValueError: *user* is not a valid user name.
    """
    if not p.valid_username(user) or user in (".", ".."):
        raise ValueError(f"invalid user name {user!r}")
    directory = data_dir(env) / "history"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / user
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    return path
