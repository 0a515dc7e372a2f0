"""The chat as a terminal application, on prompt_toolkit (the line editor IPython uses).

The input line stays at the bottom with a status bar under it; messages scroll above it,
printed into the terminal's own scrollback (so the mouse, copy and the scroll wheel work as
everywhere else). prompt_toolkit redraws the input line after each message, so text being
typed is never cut by an arriving line (issue 12: ``I am typing a long sent<bob> ...``).

* Emacs editing keys (prompt_toolkit's default): Ctrl-A/E, Ctrl-K/U/W, Alt-B/F, Ctrl-L.
* History with Up/Down, kept per user in `labchat.chatui.history.history_file`.
* Tab completes /commands and the names of people in the room.
* HH:MM time stamps; own lines, private lines, notices and errors each in their own style.
* Disconnected: the status bar counts down to the next attempt; Enter retries at once, and
  the line being typed stays where it is; Ctrl-C quits.

The socket is not touched here: `labchat.chatui.session.ChatSession` owns it in its thread
and calls back; the callbacks hand over to the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.shortcuts import CompleteStyle
from prompt_toolkit.styles import Style

from labchat.client import Client

from . import commands as c
from .session import ChatSession, SessionFactory
from .view import STYLE, Line

__all__ = ["NameCompleter", "run_app"]

#: Seconds the application waits for the session to say goodbye after /quit or Ctrl-C.
QUIT_WAIT = 5.0


class NameCompleter(Completer):
    """Tab: /commands, and the user names the session knows (`labchat.chatui.commands`).

    Args:
        names: Returns the names in the room now.
    """

    def __init__(self, names: Callable[[], Iterable[str]]) -> None:
        self._names = names

    def get_completions(self, document: Document, complete_event: CompleteEvent):
        before = document.text_before_cursor
        word = before.split(" ")[-1]
        for completion in c.complete(before, self._names()):
            # A space after the word, as readline does: the next word can follow at once.
            yield Completion(completion + " ", start_position=-len(word), display=completion)


def _formatted(line: Line) -> FormattedText:
    return FormattedText(
        [("class:time", f"{line.stamp()} "), (f"class:line.{line.kind}", line.text)]
    )


def _toolbar(session: ChatSession) -> FormattedText:
    status = session.status
    if status.connected:
        return FormattedText([("class:bottom-toolbar", f" {status.text} · /help ")])
    wait = ""
    if status.retry_at is not None:
        left = max(0, round(status.retry_at - time.monotonic()))
        wait = f"; next try in {left} s" if left else ""
    return FormattedText(
        [
            (
                "class:bottom-toolbar.down",
                f" {status.text}{wait} · Enter retries now, Ctrl-C quits ",
            )
        ]
    )


def _key_bindings(session: ChatSession) -> KeyBindings:
    keys = KeyBindings()
    down = Condition(lambda: not session.status.connected)

    @keys.add("enter", filter=down)
    def _retry(event: KeyPressEvent) -> None:
        """Disconnected: Enter retries now, and what is typed stays (a /command still runs)."""
        text = event.current_buffer.text
        if text.startswith("/") and not text.startswith("//"):
            event.current_buffer.validate_and_handle()
        else:
            session.retry_now()

    return keys


async def _chat(
    client: Client,
    make_session: SessionFactory,
    history: History,
    style: Style,
    intro: Sequence[str],
) -> int:
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    prompt_session: PromptSession[str] | None = None

    def show(line: Line) -> None:
        print_formatted_text(_formatted(line), style=style)

    def on_end() -> None:
        ended.set()
        if prompt_session is not None and prompt_session.app.is_running:
            prompt_session.app.exit(exception=EOFError)

    session = make_session(
        on_line=lambda line: loop.call_soon_threadsafe(show, line),
        on_status=lambda status: loop.call_soon_threadsafe(_redraw, prompt_session),
        on_end=lambda: loop.call_soon_threadsafe(on_end),
        reconnect=True,
    )
    prompt = f"{session.user}> "
    prompt_session = PromptSession(
        history=history,
        completer=NameCompleter(lambda: session.names),
        complete_while_typing=False,
        key_bindings=_key_bindings(session),
        bottom_toolbar=lambda: _toolbar(session),
        refresh_interval=0.5,  # the countdown in the status bar
        style=style,
        # Completions are listed above the input, as bash does: no lines are kept free under
        # it for a menu, so the input line and the status bar are the screen's last two.
        complete_style=CompleteStyle.READLINE_LIKE,
        reserve_space_for_menu=0,
        # A sent line leaves the input; the server's echo (`<alice> hi`) shows it, once.
        erase_when_done=True,
    )

    # Start at the bottom of the screen: what was on it scrolls up (still in the scrollback).
    print("\n" * max(0, shutil.get_terminal_size().lines - len(intro) - 3), end="", flush=True)
    for text in intro:
        show(Line("notice", text))
    show(Line("notice", "-- type to chat; /help lists the commands; Tab completes; Ctrl-D leaves"))
    session.start(client)
    with patch_stdout(raw=True):
        while not ended.is_set():
            try:
                text = await prompt_session.prompt_async(FormattedText([("class:prompt", prompt)]))
            except (KeyboardInterrupt, EOFError):
                break
            if session.typed(text):
                break
    session.stop()
    await loop.run_in_executor(None, session.join, QUIT_WAIT)
    await asyncio.sleep(0)  # the lines the session showed last
    return session.exit_code


def _redraw(prompt_session: PromptSession[str] | None) -> None:
    if prompt_session is not None and prompt_session.app.is_running:
        prompt_session.app.invalidate()


def run_app(
    client: Client,
    make_session: SessionFactory,
    history_path: Path | None,
    intro: Sequence[str] = (),
) -> int:
    """Chat in this terminal until /quit, Ctrl-D or Ctrl-C (or the session ends).

    Args:
        client: The connection, logged in; handed to the session.
        make_session: Makes the `ChatSession`, given its callbacks as keyword arguments
            (``on_line``, ``on_status``, ``on_end``) and ``reconnect``.
        history_path: The user's history file, or None to keep history in memory only.
        intro: Lines to show first (how the connection was made).

    Returns:
        The exit code: 0, or 1 if the session ended on an error.
    """
    history = FileHistory(str(history_path)) if history_path else InMemoryHistory()
    style = Style.from_dict(STYLE)
    return asyncio.run(_chat(client, make_session, history, style, intro))
