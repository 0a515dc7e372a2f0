"""The chat line by line, for when stdin or stdout is not a terminal (a pipe, a file, a script).

Each input line is one chat line or /command; every reply is printed, in order, before the
program ends: at the end of the input the session says QUIT and prints what arrived before the
server's BYE (issue 12: ``printf 'pw\\nhi\\n/who\\n' | labchat chat ...`` showed neither the
echo nor the /who answer). No time stamps and no styles: the output is for reading by
programs as much as by people. The connection is not retried: a script should fail, not wait.

The keyboard (or the pipe) is read by a helper thread; the socket belongs to the session's
thread (`labchat.chatui.session.ChatSession`), as in the terminal application.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import TextIO

from labchat.client import Client

from .session import SessionFactory
from .view import Line

__all__ = ["run_plain"]


def _read_lines(stdin: TextIO, lines: queue.Queue[str | None]) -> None:
    try:
        for raw in stdin:
            lines.put(raw.rstrip("\r\n"))
    except (OSError, ValueError):  # stdin closed under us
        pass
    lines.put(None)


def run_plain(
    client: Client,
    make_session: SessionFactory,
    stdin: TextIO,
    stdout: TextIO,
    intro: Sequence[str] = (),
) -> int:
    """Chat line by line until the input ends, /quit, Ctrl-C, or the connection is lost.

    Args:
        client: The connection, logged in; handed to the session.
        make_session: Makes the `ChatSession` from its callbacks (see `labchat.chatui.app`).
        stdin: Where the lines come from.
        stdout: Where every line goes.
        intro: Lines to print first (how the connection was made).

    Returns:
        The exit code: 0, or 1 if the connection was lost.
    """
    write_lock = threading.Lock()

    def show(line: Line) -> None:
        with write_lock:
            stdout.write(line.text + "\n")
            stdout.flush()

    session = make_session(on_line=show, reconnect=False)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(stdin, lines), daemon=True).start()
    for text in intro:
        show(Line("notice", text))
    show(Line("notice", "-- type to chat; /help lists the commands; Ctrl-D leaves"))
    session.start(client)
    try:
        while session.running:
            try:
                text = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if text is None:
                break
            if session.typed(text):
                break
    except KeyboardInterrupt:
        pass
    session.stop()
    session.join()
    return session.exit_code
