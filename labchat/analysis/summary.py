"""TLS summaries: round trips before the first data, and one row per message."""

from __future__ import annotations

from .connection import Connection
from .facts import C2S, S2C, TLSMessage
from .table import Table

__all__ = [
    "first_application_data",
    "message_details",
    "tls_round_trips",
    "tls_summary",
    "wire_state",
]

# Server messages the client waits for before it may continue (so each server flight holding
# one completes a round trip). A TLS 1.3 NewSessionTicket alone is post-handshake: not waited for.
_WAITED_FOR = {
    "ServerHello",
    "HelloRetryRequest",
    "ServerHelloDone",
    "Finished",
    "ChangeCipherSpec",
}


# The expected TLS 1.3 client Finished record without keys: the Finished message (4-byte
# header and a hash-sized verify_data), the inner content type byte and a 16-byte AEAD tag
# (RFC 8446 sections 4.4.4 and 5.2).
_FINISHED_13 = {"SHA256": 4 + 32 + 1 + 16, "SHA384": 4 + 48 + 1 + 16}


def _client_finished(conn: Connection, msgs: list[TLSMessage]) -> int | None:
    """Index in ``msgs`` of the client's Finished, decrypted or not (None: not found)."""
    for i, m in enumerate(msgs):
        if m.direction == C2S and m.name == "Finished":
            return i
    info = conn.tls_info
    if info is not None and info.version == "TLS 1.3":
        hello = next((i for i, m in enumerate(msgs) if m.name == "ServerHello"), None)
        if hello is None:
            return None
        opaque = [
            i
            for i, m in enumerate(msgs)
            if i > hello and m.direction == C2S and m.name == "ApplicationData" and not m.decrypted
        ]
        want = _FINISHED_13.get(info.cipher_suite.rsplit("_", 1)[-1])
        sized = [i for i in opaque if msgs[i].record_length == want]
        # A record of exactly a Finished's size is the Finished; otherwise the client sent
        # its Finished first (no client certificate), so its first encrypted record.
        return sized[0] if sized else (opaque[0] if opaque else None)
    ccs = next(
        (i for i, m in enumerate(msgs) if m.direction == C2S and m.name == "ChangeCipherSpec"), None
    )
    if ccs is None:
        return None
    return next(
        (
            i
            for i, m in enumerate(msgs)
            if i > ccs and m.direction == C2S and m.name == "EncryptedHandshake"
        ),
        None,
    )


def first_application_data(conn: Connection) -> TLSMessage | None:
    """The client's first record that really carries application data (issue 13).

    With keys: the first decrypted ApplicationData from the client. Without them: the first
    client application_data record after the client's Finished, which in TLS 1.3 is itself an
    opaque application_data record (found by its size, see ``_FINISHED_13``), so it is not
    counted as data.
    """
    msgs = conn.tls_messages()
    for m in msgs:
        if m.direction == C2S and m.name == "ApplicationData" and m.decrypted:
            return m
    fin = _client_finished(conn, msgs)
    if fin is None:
        return None
    return next(
        (m for m in msgs[fin + 1 :] if m.direction == C2S and m.name == "ApplicationData"), None
    )


def tls_round_trips(conn: Connection) -> int:
    """Round trips the client spends before its first application data.

    Counts the client->server flights that are answered by a server flight the client must
    wait for (one holding ServerHello, HelloRetryRequest, ServerHelloDone, ChangeCipherSpec
    or Finished), up to the record :func:`first_application_data` finds. Full TLS 1.2
    handshake: 2; TLS 1.3: 1 (2 after a HelloRetryRequest). Works without a key log too.
    """
    first = first_application_data(conn)
    trips = 0
    waiting = False  # the client sent a flight and waits for the server's answer
    counted_this_flight = False
    last_dir = None
    for m in conn.tls_messages():
        if m is first:
            break
        if m.direction == C2S:
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


def message_details(m: TLSMessage) -> str:
    """A message's fields on one line: ``"version: TLS 1.3; cipher_suite: ..."``."""
    details = []
    for k, v in m.fields.items():
        if isinstance(v, (list, tuple)):
            v = ", ".join(str(x) for x in v[:6]) + (" ..." if len(v) > 6 else "")
        details.append(f"{k}: {v}")
    return "; ".join(details)


def wire_state(m: TLSMessage) -> str:
    """``"clear"``, ``"encrypted"`` or ``"decrypted"``: how the message travelled and was read."""
    if not m.encrypted:
        return "clear"
    return "decrypted" if m.decrypted else "encrypted"


def tls_summary(conn: Connection) -> Table:
    """One row per TLS message: when, which way, what, and the fields worth knowing."""
    rows = []
    for m in conn.tls_messages():
        state = wire_state(m)
        rows.append(
            {
                "time": round(m.time, 6),
                "segment": m.segment,
                "dir": m.direction,
                "record": m.record_type,
                "message": m.name,
                "on the wire": state,
                "details": message_details(m),
            }
        )
    return Table(rows, ["time", "segment", "dir", "record", "message", "on the wire", "details"])
