"""Every limit and timeout the labchat server enforces, with the reason for each default.

`Limits` is a frozen dataclass: each field is also a `labchat serve` option (generated from
the fields, so they cannot drift apart) and a keyword of `labchat.Server`. docs/security.md
has the table with each default's precedent.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Every limit and timeout the server enforces. docs/security.md says why each default.

    Attributes:
        max_clients: Connections served at once; the next one gets `ERR busy` (Redis maxclients).
        handshake_timeout: Seconds for the TLS handshake (Apache's RequestReadTimeout idea).
        login_timeout: Seconds from connect to a successful LOGIN.
        idle_timeout: Quiet seconds before the server sends `PING` (IRC servers do the same).
        ping_timeout: Seconds to answer that PING (any line counts) before `ERR timeout`.
        line_timeout: Seconds a partial line may stay unfinished (against slowloris).
        outbox_bytes: Bytes queued for one client before it is dropped as a slow consumer
            (Ergo IRCd uses a 96 KiB send queue; Redis has client-output-buffer-limit).
        write_timeout: Seconds one blocked write may take before the client counts as gone.
        flood_burst: Lines a client may send back to back...
        flood_rate: ...and lines per second after that; faster lines wait (fake lag, as in IRC).
    """

    max_clients: int = 512
    handshake_timeout: float = 10.0
    login_timeout: float = 30.0
    idle_timeout: float = 300.0
    ping_timeout: float = 30.0
    line_timeout: float = 30.0
    outbox_bytes: int = 96 * 1024
    write_timeout: float = 10.0
    flood_burst: int = 10
    flood_rate: float = 5.0

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
