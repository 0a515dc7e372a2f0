"""A program in a real terminal emulator, typed into and read like a person would: tmux.

tmux keeps a screen (what `capture-pane -p` prints is what a person would see, escape
sequences applied), answers the terminal queries prompt_toolkit makes, and takes keys by name
(``Up``, ``Tab``, ``C-c``). Each `Tmux` runs its own tmux server (``-L``) with no config file
and stops it at `close`, so tests never meet each other's (or a user's) sessions.

    with Tmux([sys.executable, "-m", "labchat", "chat", ...], env={...}) as term:
        term.wait_for("password:")
        term.type("secret", "Enter")
        term.wait_for("alice> ")
        print(term.screen())

Needs the tmux Debian package (.ci/run installs it).
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from helpers import TIMEOUT

__all__ = ["TMUX", "Tmux"]

TMUX = shutil.which("tmux")
_counter = itertools.count()
_EXITED = re.compile(r"^\[exited (\d+)\]$", re.M)


class Tmux:
    """*argv* running in a detached tmux window of *width* x *height* characters.

    Args:
        argv: The program and its arguments.
        env: Variables to set for it (on top of this process's environment).
        width, height: The terminal's size.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        width: int = 100,
        height: int = 24,
    ) -> None:
        assert TMUX is not None, "tmux is not installed"
        self.socket = f"labchat-test-{os.getpid()}-{next(_counter)}"
        assignments = [f"{k}={v}" for k, v in (env or {}).items()]
        # After the program ends its exit code stays on the screen, and the window with it.
        command = shlex.join(["env", *assignments, *argv]) + '; echo "[exited $?]"; sleep 600'
        self._tmux("new-session", "-d", "-x", str(width), "-y", str(height), "-s", "t", command)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            [TMUX, "-L", self.socket, "-f", os.devnull, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        ).stdout

    def screen(self) -> str:
        """What the terminal shows now, one line per row, trailing blanks removed."""
        return self._tmux("capture-pane", "-p", "-t", "t")

    def lines(self) -> list[str]:
        """The screen's rows that are not empty."""
        return [line for line in self.screen().splitlines() if line.strip()]

    def type(self, *keys: str) -> None:
        """Type text (as is) and keys by tmux name: ``type("hello", "Enter")``."""
        for key in keys:
            if key in ("Enter", "Tab", "Up", "Down", "Left", "Right", "BSpace") or re.fullmatch(
                r"[CM]-.", key
            ):
                self._tmux("send-keys", "-t", "t", key)
            else:
                self._tmux("send-keys", "-t", "t", "-l", key)

    def wait_for(self, wanted: str | Callable[[str], object], timeout: float = 3 * TIMEOUT) -> str:
        """Wait until *wanted* (text, or a predicate of the screen) is on the screen.

        Returns:
            The screen at that moment.
        """
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if (wanted in screen) if isinstance(wanted, str) else wanted(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"not on the screen after {timeout} s: {wanted!r}\n{screen}")
            time.sleep(0.1)

    def exit_code(self, timeout: float = 3 * TIMEOUT) -> int:
        """Wait for the program to end; its exit code."""
        screen = self.wait_for(lambda s: _EXITED.search(s), timeout)
        match = _EXITED.search(screen)
        assert match is not None
        return int(match.group(1))

    def close(self) -> None:
        """Stop the tmux server, and with it the program if it still runs."""
        subprocess.run(
            [TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=TIMEOUT
        )

    def __enter__(self) -> Tmux:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
