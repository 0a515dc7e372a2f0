"""Every limit and timeout the labchat server enforces, with the reason for each default.

`Limits` is a frozen dataclass: each field is also a `labchat serve` option (generated from
the fields, so they cannot drift apart) and a keyword of `labchat.Server`. docs/security.md
has the table with each default's precedent.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .throttle import LoginThrottle

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
        max_pending_per_source: Connections from one address that have not logged in yet
            (handshakes included); more are closed at once (nginx limit_conn, IRC clone
            limits). Logged-in users never count and are never evicted.
        max_handshakes_per_source: TLS handshakes from one address in progress at once;
            more wait their turn within their handshake_timeout.
        close_linger: Seconds the server waits for the client's FIN after a goodbye it sent
            before TLS (the plaintext hint) or without TLS, so the line is not lost to a RST.
        login_failures: Failed logins for one account from one address within login_window
            that start a cool-down for that pair (OWASP: throttle, never lock the account).
        login_window: Seconds over which those failures are counted.
        login_cooldown: First cool-down of a pair, in seconds; each next one doubles...
        login_max_cooldown: ...up to this, which is also the quiet time that resets it.
        source_failures: Failed logins one address may make in a burst, any accounts...
        source_interval: ...then one more per this many seconds (the longest a correct login
            from that address is refused).
        max_hashes: scrypt checks running at once (16 MiB each).
        hashes_per_source: Of those, how many one address may hold; the next free one goes to
            the waiting address that holds fewest.
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
    max_pending_per_source: int = 32
    max_handshakes_per_source: int = 4
    close_linger: float = 1.0
    login_failures: int = 5
    login_window: float = 60.0
    login_cooldown: float = 30.0
    login_max_cooldown: float = 900.0
    source_failures: int = 100
    source_interval: float = 3.0
    max_hashes: int = 4
    hashes_per_source: int = 1

    @classmethod
    def names(cls) -> list[str]:
        """The field names, in order (the CLI makes one option of each)."""
        return [f.name for f in fields(cls)]

    def throttle(self) -> LoginThrottle:
        """A `LoginThrottle` with these login limits."""
        return LoginThrottle(
            max_failures=self.login_failures,
            window=self.login_window,
            cooldown=self.login_cooldown,
            max_cooldown=self.login_max_cooldown,
            source_max_failures=self.source_failures,
            source_interval=self.source_interval,
        )
