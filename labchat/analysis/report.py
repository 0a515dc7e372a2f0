"""What ``labchat inspect`` shows: a capture as text lines, or as one JSON document.

The JSON document's schema is documented in docs/inspect.md and kept stable: scripts and
graders read it. The text is for people: payloads shown as text only when they are text
(otherwise a hex and ASCII excerpt with the byte count), lines cut at a width.
"""

from __future__ import annotations

import base64
import textwrap
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from .capture import Capture
from .connection import Connection
from .facts import C2S, S2C, Segment, endpoint
from .summary import message_details, tls_round_trips, wire_state

__all__ = ["SCHEMA", "describe", "flag_counts", "json_document", "payload_lines"]

#: The JSON document's schema name; a change that is not backward compatible bumps it.
SCHEMA = "labchat-inspect/1"
_HEX_BYTES = 64  # bytes shown of a binary payload without --full
_TEXT_LINES = 40  # lines shown of a text payload without --full
# Summary counts: the tcp.analysis flags in the order a learner reads them.
_SUMMARY = (
    ("retransmission", "retransmissions"),
    ("fast_retransmission", "fast retransmissions"),
    ("spurious_retransmission", "spurious retransmissions"),
    ("out_of_order", "out of order"),
    ("duplicate_ack", "duplicate ACKs"),
    ("lost_segment", "previous segment not captured"),
    ("ack_lost_segment", "ACKed segment not captured"),
    ("zero_window", "zero windows"),
    ("zero_window_probe", "zero-window probes"),
    ("zero_window_probe_ack", "zero-window probe ACKs"),
    ("window_update", "window updates"),
    ("window_full", "window full"),
    ("keep_alive", "keep-alives"),
    ("keep_alive_ack", "keep-alive ACKs"),
    ("reused_ports", "reused ports"),
)


def flag_counts(conn: Connection) -> dict[str, int]:
    """How many segments carry each tcp.analysis flag (the summary counts come from here)."""
    counts: Counter[str] = Counter()
    for seg in conn.segments:
        if seg.analysis:
            counts.update(seg.analysis)
    return {name: counts[name] for name, _ in _SUMMARY if counts[name]}


def _cut(line: str, width: int | None) -> str:
    if width is None or len(line) <= width:
        return line
    return line[: max(1, width - 1)] + "…"


def _is_text(data: bytes) -> bool:
    """UTF-8 and almost only printable characters (tabs and line ends allowed)."""
    sample = data[:4096]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not just a character cut at the sample's end
            return False
        text = sample[: exc.start].decode("utf-8")
    if not text:
        return False
    bad = sum(1 for ch in text if not ch.isprintable() and ch not in "\r\n\t")
    return bad <= len(text) // 100


def payload_lines(data: bytes, *, full: bool = False) -> list[str]:
    """A payload as lines a terminal can show: text lines, or a hex and ASCII excerpt.

    Args:
        data: the bytes.
        full: every line (or every byte in hex); otherwise an excerpt and what was left out.
    """
    if not data:
        return []
    if _is_text(data):
        lines = data.decode("utf-8", "replace").splitlines()
        shown = lines if full else lines[:_TEXT_LINES]
        out = [line.replace("\t", "    ") for line in shown]
        if len(lines) > len(shown):
            out.append(f"… {len(lines) - len(shown)} more lines (--full shows them)")
        return out
    shown_bytes = data if full else data[:_HEX_BYTES]
    out = [f"{len(data)} bytes, not text" + ("" if full else f"; the first {len(shown_bytes)}:")]
    for off in range(0, len(shown_bytes), 16):
        chunk = shown_bytes[off : off + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.append(f"{off:08x}  {hexes:<47}  |{ascii_}|")
    return out


def _segment_lines(conn: Connection, raw_window: bool, width: int | None) -> Iterator[str]:
    """The segment table, streamed: 200,000 rows need not all be in memory at once."""
    names: dict[int, str] = {}
    for m in conn.tls_messages():
        if m.segment is not None:
            names[m.segment] = names[m.segment] + ", " + m.name if m.segment in names else m.name
    segs = conn.segments

    def win(s: Segment) -> int:
        return s.window if raw_window or s.scaled_window is None else s.scaled_window

    def note(s: Segment) -> str:
        parts = s.notes() if s.analysis or s.sack else []
        if s.truncated:
            parts.append("truncated")
        if s.length_from_frame:
            parts.append("IP length 0: length from the frame (TSO)")
        return ", ".join(parts)

    # Column widths from the largest values, so rows can be written as they are made.
    head = ["#", "frame", "time", "dir", "flags", "seq", "ack", "len", "win", "tls", "note"]
    w = [len(h) for h in head]
    if segs:
        w[0] = max(w[0], len(str(len(segs) - 1)))
        w[1] = max(w[1], len(str(max(s.frame for s in segs))))
        w[2] = max(w[2], len(f"{max(s.time for s in segs):.6f}"))
        w[3] = max(w[3], 4)
        w[4] = max(w[4], max(len(s.flags) for s in segs))
        w[5] = max(w[5], len(str(max(s.rel_seq for s in segs))))
        w[6] = max(w[6], len(str(max(s.rel_ack for s in segs))))
        w[7] = max(w[7], len(str(max(s.payload_len for s in segs))))
        w[8] = max(w[8], len(str(max(win(s) for s in segs))))
        w[9] = max([w[9], *(len(v) for v in names.values())])
    fmt = "  ".join(f"{{:<{n}}}" for n in w[:10]) + "  {}"
    yield _cut(fmt.format(*head).rstrip(), width)
    yield _cut("  ".join("-" * n for n in w[:10]) + "  ----", width)
    for s in segs:
        line = fmt.format(
            s.index, s.frame, f"{s.time:.6f}", s.direction, s.flags, s.rel_seq,
            s.rel_ack if s.has_ack else "", s.payload_len, win(s), names.get(s.index, ""),
            note(s) if s.analysis or s.sack or s.truncated or s.length_from_frame else "",
        ).rstrip()  # fmt: skip
        yield line if width is None or len(line) <= width else line[: max(1, width - 1)] + "…"


def _table(head: list[str], rows: list[list[str]], width: int | None) -> Iterator[str]:
    widths = [len(h) for h in head]
    for row in rows:
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    yield _cut(fmt.format(*head).rstrip(), width)
    yield _cut("  ".join("-" * w for w in widths), width)
    if width is None:
        for row in rows:
            yield fmt.format(*row).rstrip()
    else:
        for row in rows:
            line = fmt.format(*row).rstrip()
            yield line if len(line) <= width else line[: max(1, width - 1)] + "…"


def describe(conn: Connection, *, width: int | None = 100, full: bool = False,
             raw_window: bool = False) -> Iterator[str]:  # fmt: skip
    """The text ``labchat inspect`` prints for one connection, line by line.

    Args:
        width: cut every line to this many characters (None: never; ``--full`` does that).
        full: every payload line or byte instead of an excerpt.
        raw_window: the window field as sent instead of the scaled window.
    """
    extra = []
    if conn.tls and conn.tls_info is not None and conn.tls_info.version:
        extra.append(conn.tls_info.version)
    if conn.tunnel:
        extra.append(f"inside {conn.tunnel}")
    if conn.proxy:
        extra.append(f"through a {conn.proxy} proxy")
    if conn.starttls:
        extra.append("after STARTTLS")
    if conn.client_guessed:
        extra.append("no SYN captured: client guessed")
    tail = f" ({'; '.join(extra)})" if extra else ""
    yield _cut(
        f"== connection #{conn.stream}: client {endpoint(conn.client)} -> server "
        f"{endpoint(conn.server)}, {len(conn.segments)} segments{tail}",
        width,
    )
    yield from _tcp_facts(conn, width)
    yield from _segment_lines(conn, raw_window, width)
    if conn.tls:
        yield from _tls_lines(conn, width)
    yield from _payload_section(conn, width, full)
    yield ""


def _tcp_facts(conn: Connection, width: int | None) -> Iterator[str]:
    hs = conn.handshake()
    if hs is None:
        yield "handshake: not captured"
    else:
        yield f"handshake: {'ok' if hs.ok else 'INCOMPLETE'}"
        for text, passed in hs.checks():
            yield f"  [{'x' if passed else ' '}] {text}"
    td = conn.teardown()
    if td is not None:
        notes = []
        if td.merged:
            notes.append("FIN+ACK piggybacked (3 segments)")
        if td.half_close:
            notes.append("half-close: data after the first FIN")
        if not td.complete:
            notes.append("not complete")
        yield f"teardown: {td.first_closer} closed first" + (
            f" ({'; '.join(notes)})" if notes else ""
        )
    for seg in conn.resets():
        who = "client" if seg.direction == C2S else "server"
        yield f"reset: segment #{seg.index} (frame {seg.frame}, {seg.flags}) sent by the {who}"
    if td is None and not conn.resets():
        yield "teardown: none captured (connection still open at the end)"
    counts = flag_counts(conn)
    if counts:
        parts = [f"{label} {counts[name]}" for name, label in _SUMMARY if name in counts]
        text = "tcp analysis (tshark's flags): " + ", ".join(parts)
        # Wrapped, not cut: every count matters.
        yield from textwrap.wrap(text, width or len(text), subsequent_indent="  ")


def _tls_lines(conn: Connection, width: int | None) -> Iterator[str]:
    info = conn.tls_info
    if info is None:
        return
    what = ", ".join(x for x in (info.version, info.cipher_suite) if x) or "TLS"
    keys = {
        None: "",
        True: "; decrypted with the key log",
        False: "; no keys for it in the key log",
    }
    yield _cut(f"{what}: {tls_round_trips(conn)} round trip(s) before the first client data"
               f"{keys[info.keys]}", width)  # fmt: skip
    head = ["frame", "time", "dir", "record", "message", "on the wire", "details"]
    rows = []
    for m in conn.tls_messages():
        rows.append([str(m.frame), f"{m.time:.6f}", m.direction, m.record_type, m.name,
                     wire_state(m), message_details(m)])  # fmt: skip
    yield from _table(head, rows, width)


def _payload_section(conn: Connection, width: int | None, full: bool) -> Iterator[str]:
    limit = None if full else 64 * 1024
    shown = False
    for direction in (C2S, S2C):
        data = conn.app_data(direction, limit)
        if not data:
            continue
        if not shown:
            yield "application data:"
            shown = True
        if conn.tls:
            total = sum(len(m.data) for m in conn.tls_messages()
                        if m.direction == direction and m.decrypted)  # fmt: skip
        else:
            total = conn.transfer(direction).unique_bytes
        yield f"  {direction} ({total} bytes)"
        for line in payload_lines(data, full=full):
            yield _cut("    " + line, width)


# ---- JSON -----------------------------------------------------------------------------------


def _segment_json(s: Segment) -> dict[str, Any]:
    return {
        "frame": s.frame,
        "time": round(s.time, 9),
        "dir": s.direction,
        "flags": s.flags,
        "seq": s.rel_seq,
        "ack": s.rel_ack if s.has_ack else None,
        "len": s.payload_len,
        "win": s.scaled_window if s.scaled_window is not None else s.window,
        "win_raw": s.window,
        "analysis": sorted(s.analysis),
    }


def _frames(segments: Iterable[Segment]) -> list[int]:
    return [s.frame for s in segments]


def _connection_json(conn: Connection) -> dict[str, Any]:
    hs, td = conn.handshake(), conn.teardown()
    out: dict[str, Any] = {
        "stream": conn.stream,
        "client": endpoint(conn.client),
        "server": endpoint(conn.server),
        "client_guessed": conn.client_guessed,
        "tunnel": conn.tunnel,
        "proxy": conn.proxy,
        "starttls": conn.starttls,
        "segments": [_segment_json(s) for s in conn.segments],
        "handshake": None if hs is None else {
            "ok": hs.ok,
            "checks": [{"check": text, "passed": ok} for text, ok in hs.checks()],
            "client_isn": hs.client_isn,
            "server_isn": hs.server_isn,
            "frames": _frames(hs.segments),
        },
        "teardown": None if td is None else {
            "first_closer": td.first_closer,
            "complete": td.complete,
            "merged": td.merged,
            "half_close": td.half_close,
            "frames": _frames(td.segments),
        },
        "resets": _frames(conn.resets()),
        "analysis": flag_counts(conn),
        "transfer": {},
        "tls": None,
        "warnings": list(conn.warnings),
    }  # fmt: skip
    for direction in (C2S, S2C):
        t = conn.transfer(direction)
        out["transfer"][direction] = {
            "segments": t.segments, "payload_bytes": t.payload_bytes,
            "unique_bytes": t.unique_bytes, "retransmitted_bytes": t.retransmitted_bytes,
            "start": round(t.start, 9), "end": round(t.end, 9),
            "throughput_bps": round(t.throughput, 3), "goodput_bps": round(t.goodput, 3),
        }  # fmt: skip
    info = conn.tls_info
    if conn.tls and info is not None:
        out["tls"] = {
            "version": info.version,
            "cipher_suite": info.cipher_suite,
            "sni": info.sni,
            "alpn_offered": info.alpn_offered,
            "alpn": info.alpn,
            "hello_retry": info.hello_retry,
            "resumed": info.resumed,
            "keys": info.keys,
            "round_trips": tls_round_trips(conn),
            "messages": [
                {"frame": m.frame, "time": round(m.time, 9), "dir": m.direction,
                 "record": m.record_type, "type": m.name, "encrypted": m.encrypted,
                 "decrypted": m.decrypted, "fields": m.fields}
                for m in conn.tls_messages()
            ],
            "application_data": {
                d: base64.b64encode(conn.app_data(d)).decode("ascii")
                for d in (C2S, S2C) if info.keys
            },
        }  # fmt: skip
    return out


def json_document(cap: Capture, streams: Iterable[int] | None = None) -> dict[str, Any]:
    """The ``labchat inspect --json`` document (schema in docs/inspect.md).

    Args:
        cap: a loaded capture.
        streams: only these connections (by stream number); None for all.
    """
    wanted = None if streams is None else set(streams)
    return {
        "schema": SCHEMA,
        "file": cap.path.name,
        "packets": cap.packet_count,
        "warnings": list(cap.warnings),
        "connections": [
            _connection_json(c) for c in cap.connections() if wanted is None or c.stream in wanted
        ],  # fmt: skip
    }
