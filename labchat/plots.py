"""Facts -> matplotlib figures: ladder diagram, time-sequence graph, TLS comparison, TCP header,
and the room's broadcast latency and live view (numbers measured by `labchat.lab`).

Every function takes facts from :mod:`labchat.analysis`, draws on ``ax`` when given (else on
a new :class:`matplotlib.figure.Figure`, which needs no pyplot and no display) and returns the
Figure. Drawn objects carry a ``gid`` so tests and notebooks can find them: ``segment-N`` for a
ladder arrow, ``phase-NAME`` for a shaded phase, ``field-NAME`` for a header field.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .analysis import Connection, Segment
    from .lab import RoomStats, RoomView

__all__ = [
    "FLAG_NAMES",
    "broadcast_latency",
    "flag_words",
    "in_flight",
    "ladder",
    "lines_by_segment",
    "lost_originals",
    "mask_password",
    "room_view",
    "rtt",
    "tcp_header",
    "time_sequence",
    "tls_comparison",
]

#: Flag letters as a learner reads them in Wireshark.
FLAG_NAMES = {
    "S": "SYN",
    "F": "FIN",
    "R": "RST",
    "P": "PSH",
    "A": "ACK",
    "U": "URG",
    "E": "ECE",
    "C": "CWR",
}
_PHASE_COLOURS = {
    "handshake": "#dbe9f6",
    "data": "#e6f4e0",
    "teardown": "#fbe3d6",
    "reset": "#f6d0d0",
}
_DIR_COLOURS = {"c->s": "#1f5fa8", "s->c": "#b5461a"}


def flag_words(flags: str) -> str:
    """``"SA"`` -> ``"SYN, ACK"``; ``"PA"`` -> ``"PSH, ACK"``."""
    return ", ".join(FLAG_NAMES.get(ch, ch) for ch in flags if ch != ".") or "none"


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _time_axes(ax: Axes, ylabel: str, title: str, *, from_zero: bool = False) -> None:
    """The finish every time-based plot shares: labels, title, grid and a legend if any."""
    ax.set_xlabel("time since first packet (ms)")
    ax.set_ylabel(ylabel)
    if from_zero:
        ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")


def _compressed_times(times: list[float]) -> tuple[list[float], list[tuple[float, float]]]:
    """Map real times to ladder rows: one row per segment, longer gaps get a little more room.

    A gap much longer than the typical one is capped (log scale) and reported as a break, so a
    20 ms pause between chat lines does not push the next arrows off the page.
    """
    if not times:
        return [], []
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    positive = sorted(g for g in gaps if g > 0)
    typical = positive[len(positive) // 2] if positive else 1e-3
    ys = [0.0]
    breaks: list[tuple[float, float]] = []
    for gap in gaps:
        extra = min(1.5, 0.5 * math.log10(1 + gap / max(typical, 1e-6)))
        y = ys[-1] + 1.0 + extra
        if gap > 10 * typical and gap > 0.005:
            breaks.append(((ys[-1] + y) / 2, gap))
        ys.append(y)
    return ys, breaks


# LOGIN is the one labchat/1 line that carries a secret (docs/protocol.md): LOGIN NAME PASSWORD.
_LOGIN_RE = re.compile(r"^(LOGIN +\S+ +)\S.*$")
#: How much of a chat line a ladder label shows; the rest is "…".
LABEL_LINE_CHARS = 40


def mask_password(line: str) -> str:
    """``LOGIN alice hunter2`` -> ``LOGIN alice ****``; any other labchat/1 line unchanged.

    For pictures people look at (a README, slides): the password is on the wire, and
    notebook 04 shows exactly that, but a figure has no need to repeat it.

    Args:
        line: One labchat/1 line (no line ending).

    Returns:
        The line with the password of a LOGIN replaced by ``****``.
    """
    return _LOGIN_RE.sub(r"\1****", line)


def lines_by_segment(conn: Connection) -> dict[int, list[str]]:
    """The labchat/1 lines each segment completes: segment index -> lines, in order.

    A line belongs to the segment that carried its last byte (as `TLSMessage.segment` does
    for records). Decrypted TLS application data where the key log was known, else the
    plaintext payload; an encrypted connection without keys gives ``{}``. The lines are the
    same as ``conn.app_lines()``, with their place on the wire.

    Args:
        conn: a connection from :func:`labchat.analysis.load`.

    Returns:
        Segment index -> the lines (decoded as UTF-8, passwords not masked).
    """
    if conn.tls:
        chunks = [
            (m.segment, m.direction, m.data)
            for m in conn.tls_messages()
            if m.name == "ApplicationData" and m.decrypted and m.segment is not None
        ]
    else:
        chunks = [
            (s.index, s.direction, s.payload)
            for s in conn.segments
            if s.payload_len and not s.retransmission and s.payload
        ]
    buffers: dict[str, bytes] = {}
    out: dict[int, list[str]] = {}
    for index, direction, data in chunks:
        buffers[direction] = buffers.get(direction, b"") + data
        *complete, buffers[direction] = buffers[direction].split(b"\n")
        for raw in complete:
            out.setdefault(index, []).append(raw.rstrip(b"\r").decode("utf-8", "replace"))
    return out


def _short(line: str) -> str:
    line = mask_password(line)
    if len(line) > LABEL_LINE_CHARS:
        return line[: LABEL_LINE_CHARS - 1] + "…"
    return line


def _segment_label(seg: Segment, tls_names: list[str], lines: list[str] = ()) -> str:
    text = f"{flag_words(seg.flags)}  seq={seg.rel_seq}"
    if seg.has_ack:
        text += f" ack={seg.rel_ack}"
    text += f" len={seg.payload_len}"
    if lines:
        # What the data says beats what it is called: `MSG bob hi`, not `ApplicationData`.
        names = [n for n in tls_names if n != "ApplicationData"]
        shown = [_short(line) for line in lines[:2]] + (["…"] if len(lines) > 2 else [])
        text += "\n" + ", ".join(names + shown)
    elif tls_names:
        shown = tls_names[:3] + (["…"] if len(tls_names) > 3 else [])
        text += "\n" + ", ".join(shown)
    notes = seg.notes() if hasattr(seg, "notes") else []
    if seg.retransmission and not any("retransmission" in n for n in notes):
        notes.insert(0, "retransmission")
    if notes:
        text += "  [" + ", ".join(notes) + "]"
    return text


def lost_originals(conn: Connection) -> list[Segment]:
    """Segments whose data was sent again later: the copies that were (most likely) lost.

    The capture point sees them; the receiver evidently did not (or its ACK got lost).
    """
    out = []
    for i, seg in enumerate(conn.segments):
        if seg.seq_len == 0 or seg.retransmission or seg.rst:
            continue
        if any(
            later.direction == seg.direction and later.retransmission and later.seq == seg.seq
            for later in conn.segments[i + 1 :]
        ):
            out.append(seg)
    return out


def _phase_spans(
    conn: Connection, segs: list[Segment], ys: list[float]
) -> list[tuple[str, float, float]]:
    spans: list[tuple[str, float, float]] = []
    for seg, y in zip(segs, ys, strict=False):
        phase = conn.phase(seg)
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], y)
        else:
            spans.append((phase, y, y))
    return spans


def ladder(
    conn: Connection,
    ax: Axes | None = None,
    *,
    max_segments: int = 60,
    title: str | None = None,
    lines: bool = True,
) -> Figure:
    """Draw a ladder (sequence) diagram: client and server lanes, one arrow per segment.

    Args:
        conn: a connection from :func:`labchat.analysis.load`.
        ax: where to draw; a new Figure sized to the segment count when None.
        max_segments: draw at most this many segments (the title says how many were left out).
        title: the axes title (default: the two endpoints).
        lines: label data segments with the labchat/1 lines they carry (decrypted TLS where
            the key log is known, plaintext otherwise), passwords masked (`mask_password`).

    Returns:
        The Figure drawn on.
    """
    from matplotlib.patches import FancyArrowPatch

    segs = conn.segments[:max_segments]
    n = len(segs)
    fig, ax = _new_axes(ax, (8.0, max(3.0, 0.42 * n + 1.5)))
    ys, breaks = _compressed_times([s.time for s in segs])
    names: dict[int, list[str]] = {}
    for m in conn.tls_messages():
        if m.segment is not None:
            names.setdefault(m.segment, []).append(m.name)
    carried = lines_by_segment(conn) if lines else {}
    x_client, x_server = 0.0, 1.0
    slope = 0.6  # rows an arrow drops from sender to receiver: the segment is in flight
    bottom = (ys[-1] if ys else 0) + slope + 0.8

    for phase, y0, y1 in _phase_spans(conn, segs, ys):
        span = ax.axhspan(
            y0 - 0.35, y1 + slope + 0.35, color=_PHASE_COLOURS[phase], alpha=0.8, zorder=0, lw=0
        )
        span.set_gid(f"phase-{phase}")
        ax.text(
            1.02, (y0 + y1 + slope) / 2, phase, transform=ax.get_yaxis_transform(),
            rotation=90, va="center", ha="left", fontsize=8, color="#555555",
        )  # fmt: skip
    for x in (x_client, x_server):
        ax.plot([x, x], [-0.8, bottom], color="#333333", lw=1.5, zorder=1)

    for seg, y in zip(segs, ys, strict=False):
        start, end = (x_client, x_server) if seg.direction == "c->s" else (x_server, x_client)
        colour = "#c0392b" if seg.rst else _DIR_COLOURS[seg.direction]
        arrow = FancyArrowPatch(
            (start, y), (end, y + slope), arrowstyle="-|>", mutation_scale=11,
            color=colour, lw=1.3, linestyle="--" if seg.retransmission else "-", zorder=3,
        )  # fmt: skip
        arrow.set_gid(f"segment-{seg.index}")
        ax.add_patch(arrow)
        ax.text(
            0.5, y + slope / 2,
            _segment_label(seg, names.get(seg.index, []), carried.get(seg.index, [])),
            ha="center", va="center", fontsize=7, zorder=4, color=colour,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
        )  # fmt: skip
        ax.text(-0.04, y, f"{seg.time * 1000:.3f} ms", ha="right", va="center", fontsize=6.5,
                color="#444444")  # fmt: skip
    # Loss and recovery, marked so they can be found at a glance (and by gid in tests).
    lost = {s.index for s in lost_originals(conn)}
    for seg, y in zip(segs, ys, strict=False):
        end = 1.0 if seg.direction == "c->s" else 0.0
        if seg.index in lost:
            (mark,) = ax.plot([0.5 + (end - 0.5) * 0.8], [y + slope * 0.9], marker="X",
                              ms=9, color="#c0392b", zorder=5, ls="none")  # fmt: skip
            mark.set_gid(f"lost-{seg.index}")
        if seg.retransmission:
            start = 1.0 - end
            (mark,) = ax.plot([start], [y], marker="o", ms=7, mfc="none", mec="#c0392b",
                              mew=1.6, zorder=5, ls="none")  # fmt: skip
            mark.set_gid(f"retransmission-{seg.index}")
        if "duplicate_ack" in getattr(seg, "analysis", ()):
            start = 1.0 - end
            (mark,) = ax.plot([start], [y], marker="D", ms=5, color="#8e44ad", zorder=5,
                              ls="none")  # fmt: skip
            mark.set_gid(f"dupack-{seg.index}")
    for y, gap in breaks:
        ax.text(-0.04, y, f"⋯ {gap * 1000:.0f} ms pause", ha="right", va="center",
                fontsize=6.5, color="#888888", style="italic")  # fmt: skip

    ax.set_xlim(-0.32, 1.12)
    ax.set_ylim(bottom, -1.6)
    ax.set_xticks([x_client, x_server])
    ax.set_xticklabels(
        [
            f"client\n{conn.client[0]}:{conn.client[1]}",
            f"server\n{conn.server[0]}:{conn.server[1]}",
        ],
        fontsize=8,
    )
    ax.xaxis.set_ticks_position("top")
    ax.set_yticks([])
    ax.set_ylabel("time (down; long pauses compressed)", fontsize=8)
    for side in ("right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title is None:
        title = f"TCP connection #{conn.stream}: {n} segments"
    if len(conn.segments) > n:
        title += f" (first {n} of {len(conn.segments)} shown)"
    ax.set_title(title, fontsize=10)
    return fig


def time_sequence(conn: Connection, ax: Axes | None = None) -> Figure:
    """Draw a Stevens time-sequence graph: relative sequence number against time.

    Each data segment is a vertical bar from its first to its last byte; the line of the same
    colour (lighter, stepped) is the peer's cumulative ACK for that direction. Retransmissions
    are red crosses (gid ``retransmissions-client``/``-server``), segments sent again later
    red ``X`` (``lost-...``), duplicate ACKs purple diamonds (``duplicate-acks-...``) and SACK
    blocks short purple bars at the ACK's time (``sack-...``).
    """
    fig, ax = _new_axes(ax, (8.0, 4.5))
    lost = {s.index for s in lost_originals(conn)}
    for direction, peer, name in (("c->s", "s->c", "client"), ("s->c", "c->s", "server")):
        colour = _DIR_COLOURS[direction]
        data = [s for s in conn.segments if s.direction == direction]
        bars = [s for s in data if s.payload_len > 0 or s.syn or s.fin]
        if bars:
            ax.vlines(
                [s.time * 1000 for s in bars],
                [s.rel_seq for s in bars],
                [s.rel_seq + max(s.seq_len, 1) for s in bars],
                colors=colour, lw=2.5, label=f"{name} data (seq .. seq+len)",
            )  # fmt: skip
            rt = [s for s in bars if s.retransmission]
            if rt:
                (line,) = ax.plot([s.time * 1000 for s in rt], [s.rel_seq for s in rt], "x",
                                  color="#c0392b", ms=9, mew=2,
                                  label=f"{name} retransmission")  # fmt: skip
                line.set_gid(f"retransmissions-{name}")
            gone = [s for s in bars if s.index in lost]
            if gone:
                (line,) = ax.plot([s.time * 1000 for s in gone], [s.rel_seq for s in gone], "X",
                                  color="#c0392b", ms=8, mfc="none",
                                  label=f"{name} segment sent again later")  # fmt: skip
                line.set_gid(f"lost-{name}")
        acks = [s for s in conn.segments if s.direction == peer and s.has_ack]
        if acks:
            ax.step(
                [s.time * 1000 for s in acks], [s.rel_ack for s in acks], where="post",
                color=colour, alpha=0.45, lw=1.2, label=f"ACKs of {name} data",
            )  # fmt: skip
            dup = [s for s in acks if "duplicate_ack" in getattr(s, "analysis", ())]
            if dup:
                (line,) = ax.plot([s.time * 1000 for s in dup], [s.rel_ack for s in dup], "D",
                                  color="#8e44ad", ms=4,
                                  label=f"duplicate ACKs of {name} data")  # fmt: skip
                line.set_gid(f"duplicate-acks-{name}")
            sacked = [(s, blk) for s in acks for blk in getattr(s, "sack", ())]
            if sacked:
                coll = ax.vlines([s.time * 1000 for s, _ in sacked], [b[0] for _, b in sacked],
                                 [b[1] for _, b in sacked], colors="#8e44ad", lw=5, alpha=0.5,
                                 label=f"SACK blocks ({name} data received)")  # fmt: skip
                coll.set_gid(f"sack-{name}")
    _time_axes(
        ax, "relative sequence number (bytes)", f"Time-sequence graph, connection #{conn.stream}"
    )
    return fig


def in_flight(conn: Connection, direction: str | None = None, ax: Axes | None = None) -> Figure:
    """Bytes in flight of one direction against time, under the receiver's advertised window.

    Args:
        conn: the connection.
        direction: ``c->s`` or ``s->c``; default: the direction that sent more data.
        ax: where to draw.
    """
    fig, ax = _new_axes(ax, (8.0, 3.8))
    direction = direction or conn.data_direction()
    points = conn.bytes_in_flight(direction)
    if points:
        (line,) = ax.plot([t * 1000 for t, _ in points], [b for _, b in points], ".-",
                          color=_DIR_COLOURS[direction], lw=1, ms=3,
                          label=f"bytes in flight ({direction})")  # fmt: skip
        line.set_gid("bytes-in-flight")
    wins = [s for s in conn.segments if s.direction != direction and s.has_ack
            and s.scaled_window is not None]  # fmt: skip
    if wins:
        (line,) = ax.step([s.time * 1000 for s in wins], [s.scaled_window for s in wins],
                          where="post", color="#555555", lw=1.2,
                          label="receiver's advertised window")  # fmt: skip
        line.set_gid("receive-window")
    _time_axes(
        ax, "bytes", f"Bytes in flight, connection #{conn.stream} ({direction})", from_zero=True
    )
    return fig


def rtt(conn: Connection, direction: str | None = None, ax: Axes | None = None,
        **kwargs: Any) -> Figure:  # fmt: skip
    """SampleRTT, EstimatedRTT and EstimatedRTT + 4 DevRTT against time (RFC 6298).

    Keyword arguments go to :func:`labchat.analysis.estimate_rtt` (``alpha``, ``beta``).
    """
    from .analysis import estimate_rtt

    fig, ax = _new_axes(ax, (8.0, 3.8))
    samples = conn.rtt_samples(direction)
    est = estimate_rtt([s.rtt for s in samples], **kwargs)
    t = [s.acked * 1000 for s in samples]
    series = (
        ("sample-rtt", [e["sample"] for e in est], "o", "SampleRTT", "#1f5fa8"),
        ("estimated-rtt", [e["srtt"] for e in est], "-", "EstimatedRTT (alpha 1/8)", "#b5461a"),
        ("rtt-bound", [e["srtt"] + 4 * e["rttvar"] for e in est], "--",
         "EstimatedRTT + 4 DevRTT (beta 1/4)", "#555555"),
    )  # fmt: skip
    for gid, ys, style, label, colour in series:
        if ys:
            (line,) = ax.plot(t, [y * 1000 for y in ys], style, ms=3, color=colour, label=label)
            line.set_gid(gid)
    _time_axes(ax, "RTT (ms)", f"Round-trip time, connection #{conn.stream}", from_zero=True)
    return fig


def tls_comparison(conn12: Connection, conn13: Connection) -> Figure:
    """Two ladders side by side, TLS 1.2 and TLS 1.3, each with its round trips annotated."""
    from matplotlib.figure import Figure

    from .analysis import first_application_data, tls_round_trips

    n = max(len(conn12.segments), len(conn13.segments))
    fig = Figure(figsize=(14.0, max(4.0, 0.42 * min(n, 60) + 2.0)), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, conn, label in ((axes[0], conn12, "TLS 1.2"), (axes[1], conn13, "TLS 1.3")):
        trips = tls_round_trips(conn)
        s = "" if trips == 1 else "s"
        ladder(conn, ax, title=f"{label}: {trips} round trip{s} before the first application data")
        first = first_application_data(conn)
        if first is not None and first.segment is not None:
            seg = conn.segments[first.segment]
            ys, _ = _compressed_times([x.time for x in conn.segments[:60]])
            if seg.index < len(ys):
                ax.annotate(
                    f"first client data\nafter {trips} RTT{s}",
                    xy=(0.0, ys[seg.index]), xytext=(-0.3, ys[seg.index] - 1.2),
                    fontsize=8, color="#1f5fa8", fontweight="bold",
                    arrowprops={"arrowstyle": "->", "color": "#1f5fa8"},
                )  # fmt: skip
    fig.suptitle("Handshake round trips: TLS 1.2 vs TLS 1.3", fontsize=12)
    return fig


# --- TCP header (RFC 9293 section 3.1) -----------------------------------------------------

_FLAG_BITS = [("CWR", 0x80), ("ECE", 0x40), ("URG", 0x20), ("ACK", 0x10),
              ("PSH", 0x08), ("RST", 0x04), ("SYN", 0x02), ("FIN", 0x01)]  # fmt: skip


def _fmt_options(opts: list[Any]) -> str:
    parts = []
    for opt in opts or []:
        try:
            name, value = opt
        except (TypeError, ValueError):
            continue
        if name in ("NOP", "EOL"):
            parts.append(name)
        elif name == "Timestamp":
            parts.append(f"TS val={value[0]} ecr={value[1]}")
        elif name == "SAckOK":
            parts.append("SACK permitted")
        elif name == "WScale":
            parts.append(f"WScale={value} (x{2 ** int(value)})")
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


def tcp_header(segment: Segment, ax: Axes | None = None) -> Figure:
    """Draw the TCP header of one captured segment, 32 bits per row, with its real values."""
    from matplotlib.patches import Rectangle

    fields: dict[str, Any] = {
        "sport": segment.ports[0],
        "dport": segment.ports[1],
        "dataofs": segment.header_len // 4,
        "reserved": (segment.flag_bits >> 8) & 0xF,
        "flags": segment.flag_bits & 0xFF,
        "chksum": segment.checksum,
        "urgptr": segment.urgent,
        "options": segment.option_list,
    }
    opt_text = _fmt_options(fields["options"])
    rows = 6 if opt_text else 5
    fig, ax = _new_axes(ax, (10.0, 0.9 * rows + 1.4))

    def box(row: int, bit0: int, nbits: int, name: str, value: str, gid: str, fc="#f4f7fb"):
        rect = Rectangle((bit0, row), nbits, 1, fc=fc, ec="#333333", lw=1)
        rect.set_gid(f"field-{gid}")
        ax.add_patch(rect)
        ax.text(bit0 + nbits / 2, row + 0.33, name, ha="center", va="center", fontsize=8,
                color="#555555")  # fmt: skip
        ax.text(bit0 + nbits / 2, row + 0.68, value, ha="center", va="center", fontsize=9,
                fontweight="bold")  # fmt: skip

    box(0, 0, 16, "Source Port", str(fields["sport"]), "sport")
    box(0, 16, 16, "Destination Port", str(fields["dport"]), "dport")
    box(1, 0, 32, "Sequence Number", f"{segment.seq}  (relative {segment.rel_seq})", "seq")
    ack_text = f"{segment.ack}" + (f"  (relative {segment.rel_ack})" if segment.has_ack else
                                   "  (ACK flag not set: ignored)")  # fmt: skip
    box(2, 0, 32, "Acknowledgment Number", ack_text, "ack")
    doff = fields["dataofs"]
    box(3, 0, 4, "Data Off.", f"{doff} ({(doff or 0) * 4} B)", "dataofs")
    box(3, 4, 4, "Rsrvd", str(fields["reserved"]), "reserved")
    for i, (name, bit) in enumerate(_FLAG_BITS):
        on = bool(fields["flags"] & bit)
        box(
            3, 8 + i, 1, name, "1" if on else "0", f"flag-{name}", fc="#ffd27f" if on else "#f4f7fb"
        )
    box(3, 16, 16, "Window", str(segment.window), "window")
    chk = fields["chksum"]
    box(4, 0, 16, "Checksum", f"0x{chk:04x}" if isinstance(chk, int) else str(chk), "chksum")
    box(4, 16, 16, "Urgent Pointer", str(fields["urgptr"]), "urgptr")
    if opt_text:
        opt_len = (doff or 5) * 4 - 20
        box(5, 0, 32, f"Options ({opt_len} bytes)", opt_text, "options")
    for bit in range(0, 33, 8):
        ax.text(bit, -0.12, str(bit), ha="center", va="bottom", fontsize=7, color="#777777")
    ax.set_xlim(-0.5, 32.5)
    ax.set_ylim(rows + 0.1, -0.6)
    ax.set_axis_off()
    ax.set_title(
        f"TCP header of segment #{segment.index} ({segment.direction}, {flag_words(segment.flags)},"
        f" {segment.payload_len} payload bytes)",
        fontsize=10,
    )
    return fig


# --- A chat room: broadcast latency, live view (measured by labchat.lab) ---------------------


def broadcast_latency(stats: Sequence[RoomStats], ax: Axes | None = None) -> Figure:
    """Broadcast latency against room size: median receiver and last receiver.

    Args:
        stats: from `labchat.lab.measure_broadcast_latency`, one per room size.
        ax: where to draw; a new Figure when None.

    Returns:
        The Figure drawn on.
    """
    fig, ax = _new_axes(ax, (7.5, 4.2))
    xs = [s.clients for s in stats]
    ax.plot(xs, [s.median_receiver for s in stats], "o-",
            label="median receiver (median over messages)")  # fmt: skip
    ax.plot(xs, [s.last_receiver for s in stats], "s-",
            label="last receiver (median over messages)")  # fmt: skip
    ax.plot(xs, [s.worst for s in stats], "^:", color="#999999",
            label="last receiver, worst message")  # fmt: skip
    ax.set_xlabel("clients in the room")
    ax.set_ylabel("SAY -> MSG received (ms)")
    ax.set_title("Broadcast latency as the room grows (one server, thread per client)")
    ax.set_xticks(xs)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def room_view(view: RoomView) -> Figure:
    """One frame of the live room view, readable on a projector.

    Who is in the room (left, top), messages per second and the PING round trip over time
    (left, bottom) and the newest segments as a ladder (right), or why there are none.

    Args:
        view: from `labchat.lab.live_room_view`, at one refresh (at least one measured).

    Returns:
        A new Figure (13 x 7 inches, four axes).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.0, 7.0), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.3])
    ax_who = fig.add_subplot(grid[0, 0])
    ax_rate = fig.add_subplot(grid[1, 0])
    ax_ladder = fig.add_subplot(grid[:, 1])
    fig.suptitle(
        f"labchat room on {view.host}:{view.port}  (t = {view.times[-1]:.0f} s)", fontsize=15
    )

    members = view.members
    ax_who.set_axis_off()
    ax_who.set_title(f"In the room: {len(members)}", fontsize=14, loc="left")
    shown = members[:24]
    cols = 3 if len(shown) > 8 else 1
    per_col = -(-len(shown) // cols) if shown else 1
    for i, name in enumerate(shown):
        ax_who.text(i // per_col / cols, 1 - (i % per_col + 1) / (per_col + 1), name,
                    fontsize=13 if cols == 1 else 11, transform=ax_who.transAxes)  # fmt: skip
    if len(members) > len(shown):
        ax_who.text(0, 0, f"... and {len(members) - len(shown)} more", fontsize=11,
                    transform=ax_who.transAxes)  # fmt: skip

    times, rates, rtts = view.times, view.rates, view.rtts
    ax_rate.plot(times, rates, "o-", color="#1f5fa8", label="messages/s")
    ax_rate.set_xlabel("seconds watched", fontsize=11)
    ax_rate.set_ylabel("messages per second", fontsize=11, color="#1f5fa8")
    ax_rate.set_ylim(bottom=0, top=max(rates + [1]) * 1.25)
    ax_rate.grid(True, alpha=0.3)
    ax_rtt = ax_rate.twinx()
    ax_rtt.plot(times, rtts, "s--", color="#b5461a", label="server round trip (ms)")
    ax_rtt.set_ylabel("PING round trip (ms)", fontsize=11, color="#b5461a")
    ax_rtt.set_ylim(bottom=0, top=max(rtts + [1]) * 1.25)
    ax_rate.set_title(f"{rates[-1]:.0f} msg/s, round trip {rtts[-1]:.1f} ms", fontsize=13,
                      loc="left")  # fmt: skip

    if view.newest is not None:
        ladder(view.newest, ax_ladder, title=f"Newest {len(view.newest.segments)} segments")
    else:
        ax_ladder.set_axis_off()
        why = view.no_capture
        text = "no segments captured yet" if why is None else f"no live capture:\n{why}"
        ax_ladder.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11,
                       transform=ax_ladder.transAxes)  # fmt: skip
        ax_ladder.set_title("Newest segments", fontsize=13)
    return fig
