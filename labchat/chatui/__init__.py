"""``labchat chat``'s user interface: a terminal application, or plain lines for pipes.

==============  ===========================================================================
``session``     `ChatSession`: the connection, owned by one thread; reconnects with backoff
``app``         the terminal application (prompt_toolkit): input line at the bottom
``plain``       line by line, when stdin or stdout is not a terminal
``commands``    /commands: parsing, /help, Tab completion (no I/O)
``view``        `Line`: what is shown, its kind, time stamp and style
``history``     where each user's input history is kept
==============  ===========================================================================
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from labchat.client import Client

from .session import ChatSession

__all__ = ["ChatSession", "is_terminal", "run_chat"]


def is_terminal(stdin: TextIO, stdout: TextIO, env: dict[str, str] | None = None) -> bool:
    """Whether to run the terminal application: both ends are terminals that can draw it."""
    env = dict(os.environ if env is None else env)
    try:
        ttys = stdin.isatty() and stdout.isatty()
    except (AttributeError, ValueError):
        return False
    return ttys and env.get("TERM", "") not in ("dumb", "unknown")


def run_chat(
    client: Client,
    *,
    connect: Callable[[], Client],
    password: str,
    where: str,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    history: bool = True,
    intro: Sequence[str] = (),
) -> int:
    """Chat as ``client.user`` until the person leaves; returns the exit code.

    Args:
        client: A connection, logged in.
        connect: Opens a new connection, for reconnecting (terminal mode only).
        password: The password, to log in again after a reconnect.
        where: ``host:port``, for messages.
        stdin, stdout: The streams (default: ``sys.stdin``, ``sys.stdout``).
        history: Keep the input history in the user's data directory (terminal mode).
        intro: Lines to show first (how the connection was made).

    Returns:
        0, or 1 if the session ended on an error.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    assert client.user is not None, "log in first"
    make_session = functools.partial(ChatSession, connect, client.user, password, where=where)
    if not is_terminal(stdin, stdout):
        from .plain import run_plain

        return run_plain(client, make_session, stdin, stdout, intro)
    from .app import run_app
    from .history import history_file

    path = None
    intro = list(intro)
    if history:
        try:
            path = history_file(client.user)
        except OSError as exc:  # a read-only home: chat anyway, without saved history
            intro.append(f"-- input history not saved: {exc}")
    return run_app(client, make_session, path, intro)
