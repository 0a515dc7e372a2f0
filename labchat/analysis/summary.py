"""TLS summaries: round trips before the first data, and one row per message."""

from __future__ import annotations

from .connection import Connection
from .facts import C2S, S2C
from .table import Table

__all__ = ["tls_round_trips", "tls_summary"]

# Server messages the client waits for before it may continue (so each server flight holding
# one completes a round trip). A TLS 1.3 NewSessionTicket alone is post-handshake: not waited for.
_WAITED_FOR = {
    "ServerHello",
    "HelloRetryRequest",
    "ServerHelloDone",
    "Finished",
    "ChangeCipherSpec",
}


def tls_round_trips(conn: Connection) -> int:
    """Round trips the client spends before its first ApplicationData.

    Counts the client->server flights that are answered by a server flight the client must
    wait for (one holding ServerHello, ServerHelloDone, ChangeCipherSpec or Finished), up to
    the first client ApplicationData record. Full TLS 1.2 handshake: 2; TLS 1.3: 1 (2 after a
    HelloRetryRequest). Works on opaque records too (no key log needed).
    """
    trips = 0
    waiting = False  # the client sent a flight and waits for the server's answer
    counted_this_flight = False
    last_dir = None
    for m in conn.tls_messages():
        if m.direction == C2S:
            if m.name == "ApplicationData" and (m.decrypted or trips >= 1):
                break
            if last_dir != C2S:
                waiting, counted_this_flight = True, False
        else:
            if last_dir != S2C:
                counted_this_flight = False
            if waiting and not counted_this_flight and m.name in _WAITED_FOR:
                trips += 1
                counted_this_flight = True
                waiting = False
        last_dir = m.direction
    return trips


def tls_summary(conn: Connection) -> Table:
    """One row per TLS message: when, which way, what, and the fields worth knowing."""
    rows = []
    for m in conn.tls_messages():
        details = []
        for k, v in m.fields.items():
            if isinstance(v, (list, tuple)):
                v = ", ".join(str(x) for x in v[:6]) + (" ..." if len(v) > 6 else "")
            details.append(f"{k}: {v}")
        state = "clear"
        if m.encrypted:
            state = "decrypted" if m.decrypted else "encrypted"
        rows.append(
            {
                "time": round(m.time, 6),
                "segment": m.segment,
                "dir": m.direction,
                "record": m.record_type,
                "message": m.name,
                "on the wire": state,
                "details": "; ".join(details),
            }
        )
    return Table(rows, ["time", "segment", "dir", "record", "message", "on the wire", "details"])
