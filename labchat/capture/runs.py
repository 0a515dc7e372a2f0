"""What every scripted capture scenario shares: its result, its registry entry, its timing.

`labchat.capture.scenarios` (the chats and TCP lessons) and `labchat.capture.tls_scenarios`
(TLS failures, mutual TLS, resumption, HelloRetryRequest) both build on these; the capture
code (`labchat.capture.loopback`, `labchat.capture.results`) reads a `ScenarioRun` into the
manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PASSWORDS", "PAUSE", "SCENARIO_HASH", "TIMEOUT", "Scenario", "ScenarioRun"]

#: Gap between steps, so the phases of a conversation stand apart on a time axis.
PAUSE = 0.03

#: Throwaway passwords of the throwaway users each scenario creates. They are visible in the
#: plaintext capture on purpose: that is the lesson of ``tcp-chat``.
PASSWORDS = {"alice": "correct horse battery", "bob": "staple tuna lamp"}

#: How long any one step of a scenario may take (connect, accept, a reply). Nothing here waits
#: for a timeout to happen, so this only bounds a hang. On a class server many kernels capture
#: at once: 15 students on 2 cores made the server's scrypt logins answer after more than 5 s
#: (bench/hub.py), which failed every capture; slower is better than failed.
TIMEOUT = 30.0

#: scrypt parameters of the scenarios' throwaway accounts (`labchat.auth.UserStore` keywords).
#: Cheap on purpose: the accounts live for one capture, and at labchat's real cost (N=2**14,
#: r=8, p=5: about 0.2 s a hash on a laptop, more when it is busy) the four hashes of a chat
#: scenario cost a second of every notebook that captures one (issue 13: all notebooks
#: together under 90 s). Nothing of the hash shows on the wire.
SCENARIO_HASH = {"n": 2**10, "r": 8, "p": 1}


@dataclass
class ScenarioRun:
    """What a scenario did, for the capture manifest.

    Attributes:
        transcript: the chat as ``{"from": user, "line": text}`` in the order it was said.
        server: ``{"host", "port", "role", ...}`` of the listening side.
        clients: one dict per client connection, in connect order (``role`` first).
        tls: ``{"version": "TLSv1.3", ...}`` or None for plaintext.
        keylog: NSS key log file the TLS clients wrote, or None.
        notes: one sentence on what to look for in the capture.
        files: more files to keep beside the capture, by the name they get there
            (``{"tcp_info.csv": path}``: the kernel's own samples of a connection).
    """

    transcript: list[dict[str, str]] = field(default_factory=list)
    server: dict[str, Any] = field(default_factory=dict)
    clients: list[dict[str, Any]] = field(default_factory=list)
    tls: dict[str, Any] | None = None
    keylog: Path | None = None
    notes: str = ""
    files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A named scenario: ``func(workdir, *, port, host="127.0.0.1", pause=PAUSE)``."""

    name: str
    func: Callable[..., ScenarioRun]
    description: str
    tls: bool = False
