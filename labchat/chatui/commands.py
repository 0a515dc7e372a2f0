"""What the person typed: slash commands, their help, and Tab completion. No I/O.

`parse` turns one typed line into an `Action` (or a `Usage` error to show); `complete` gives
the completions for the text before the cursor; `help_lines` is what ``/help`` prints. The
table `COMMANDS` is the one place a command is described.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# What goes to the server as it is typed is the protocol's own command: a line for the room,
# a private line, who is there, a ping, leaving, and the operators' requests. Help, Unmute
# (a MUTE of 0 seconds, shown as its own command) and Usage are the chat's own.
from labchat.protocol import DEFAULT_MUTE_SECONDS, Kick, Mute, Ping, Quit, Say, Tell, Unlock, Who
from labchat.protocol import ListThrottled as Throttled

__all__ = [
    "COMMANDS",
    "Action",
    "Command",
    "Help",
    "Kick",
    "Mute",
    "Ping",
    "Quit",
    "Say",
    "Tell",
    "Throttled",
    "Unlock",
    "Unmute",
    "Usage",
    "Who",
    "complete",
    "help_lines",
    "parse",
]


@dataclass(frozen=True)
class Help:
    """Show the commands."""


@dataclass(frozen=True)
class Unmute:
    """Operators: let a muted user speak again."""

    user: str


@dataclass(frozen=True)
class Usage:
    """The line could not be understood; ``message`` says how to write it."""

    message: str


Action = Say | Tell | Who | Ping | Help | Quit | Kick | Mute | Unmute | Unlock | Throttled


@dataclass(frozen=True)
class Command:
    """One slash command: its name, how it is written, what it does, who may use it."""

    name: str
    usage: str
    help: str
    operator: bool = False
    #: The command's first argument is a user name (Tab completes it).
    takes_user: bool = False


#: Every slash command, in the order ``/help`` lists them.
COMMANDS: tuple[Command, ...] = (
    Command("help", "/help", "this list"),
    Command("who", "/who", "who is in the room"),
    Command("tell", "/tell NAME text", "a private line to NAME", takes_user=True),
    Command("ping", "/ping", "the round trip to the server, in ms"),
    Command("quit", "/quit", "leave (Ctrl-D and Ctrl-C too)"),
    Command("kick", "/kick NAME [reason]", "disconnect NAME", operator=True, takes_user=True),
    Command(
        "mute",
        "/mute NAME [seconds]",
        f"refuse NAME's lines (for {DEFAULT_MUTE_SECONDS} s unless said)",
        operator=True,
        takes_user=True,
    ),
    Command("unmute", "/unmute NAME", "let NAME speak again", operator=True, takes_user=True),
    Command(
        "unlock",
        "/unlock NAME|@ADDRESS",
        "end the login cool-downs of an account or an address",
        operator=True,
        takes_user=True,
    ),
    Command("throttled", "/throttled", "what is in a login cool-down", operator=True),
)
_BY_NAME = {c.name: c for c in COMMANDS}


def _usage(name: str) -> Usage:
    return Usage(f"usage: {_BY_NAME[name].usage}")


def parse(text: str) -> Action | Usage | None:
    """What a typed line asks for.

    A line not starting with ``/`` is said to the room; ``//text`` says ``/text``.

    Args:
        text: The line as typed (no line ending).

    Returns:
        The action, a `Usage` to show instead, or None for a blank line.
    """
    if not text.strip():
        return None
    if not text.startswith("/") or text.startswith("//"):
        return Say(text[1:] if text.startswith("//") else text)
    verb, _, rest = text[1:].partition(" ")
    rest = rest.strip()
    name, _, more = rest.partition(" ")
    more = more.strip()
    if verb in ("who", "ping", "help", "quit", "throttled") and rest:
        return _usage(verb)
    if verb == "throttled":
        return Throttled()
    if verb == "who":
        return Who()
    if verb == "ping":
        return Ping()
    if verb == "help":
        return Help()
    if verb == "quit":
        return Quit()
    if verb == "tell":
        return Tell(name, more) if name and more else _usage(verb)
    if verb == "kick":
        return Kick(name, more) if name else _usage(verb)
    if verb == "unlock":
        return Unlock(name) if name and not more else _usage(verb)
    if verb == "unmute":
        return Unmute(name) if name and not more else _usage(verb)
    if verb == "mute":
        if not name:
            return _usage(verb)
        if not more:
            return Mute(name)
        try:
            seconds = float(more)
        except ValueError:
            return _usage(verb)
        return Mute(name, seconds) if seconds > 0 else _usage(verb)
    return Usage(f"unknown command /{verb}; /help lists them (start a line with // to say /...)")


def help_lines(operator: bool = True) -> list[str]:
    """What ``/help`` shows: one line per command, then the keys worth knowing.

    Args:
        operator: Include the operator commands (the server refuses them to others).
    """
    shown = [c for c in COMMANDS if operator or not c.operator]
    width = max(len(c.usage) for c in shown)
    lines = ["commands:"]
    for c in shown:
        who = " (operators)" if c.operator else ""
        lines.append(f"  {c.usage:<{width}}  {c.help}{who}")
    lines.append("keys: Up/Down history, Tab completes /commands and names, Ctrl-A/E/K/W/U edit,")
    lines.append("      Ctrl-L redraws, Ctrl-D or Ctrl-C leaves")
    return lines


def complete(before_cursor: str, names: Iterable[str]) -> list[str]:
    """Completions for the word before the cursor: a /command, or a user name.

    Args:
        before_cursor: The input line up to the cursor.
        names: The user names known to be in the room.

    Returns:
        Full words (``/tell``, ``bob``) that start with the word being typed, sorted.
    """
    words = before_cursor.split(" ")
    word = words[-1]
    if len(words) == 1 and word.startswith("/"):
        return sorted(f"/{c.name}" for c in COMMANDS if f"/{c.name}".startswith(word))
    if len(words) == 1:
        return sorted(n for n in set(names) if n.startswith(word) and word)
    command = _BY_NAME.get(words[0][1:]) if words[0].startswith("/") else None
    if command is not None and not command.takes_user:
        return []
    if command is not None and len(words) > 2:
        return []  # past the NAME argument: free text
    return sorted(n for n in set(names) if n.startswith(word) and (word or command))
