"""Facts -> matplotlib figures: ladder diagram, time-sequence graph, TLS comparison, TCP header,
and the room's broadcast latency and live view (numbers measured by `labchat.lab`).

Every function takes facts from :mod:`labchat.analysis`, draws on ``ax`` when given (else on
a new :class:`matplotlib.figure.Figure`, which needs no pyplot and no display) and returns the
Figure. Drawn objects carry a ``gid`` so tests and notebooks can find them: ``segment-N`` for a
ladder arrow, ``phase-NAME`` for a shaded phase, ``field-NAME`` for a header field.
"""

from __future__ import annotations

import math
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
    "cwnd",
    "flag_words",
    "in_flight",
    "ladder",
    "lost_originals",
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


def _segment_label(seg: Segment, tls_names: list[str]) -> str:
    text = f"{flag_words(seg.flags)}  seq={seg.rel_seq}"
    if seg.has_ack:
        text += f" ack={seg.rel_ack}"
    text += f" len={seg.payload_len}"
    if tls_names:
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
    Same as `labchat.analysis.lost_originals` on ``conn.segments``.
    """
    from .analysis import lost_originals as originals

    return originals(conn.segments)


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
) -> Figure:
    """Draw a ladder (sequence) diagram: client and server lanes, one arrow per segment.

    Args:
        conn: a connection from :func:`labchat.analysis.load`.
        ax: where to draw; a new Figure sized to the segment count when None.
        max_segments: draw at most this many segments (the title says how many were left out).
        title: the axes title (default: the two endpoints).

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
            0.5, y + slope / 2, _segment_label(seg, names.get(seg.index, [])),
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


def _slow_start_spans(samples: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Times (ms) when the sender's kernel was in slow start (`labchat.capture.tcpinfo.phases`)."""
    from .capture.tcpinfo import phases

    return [(p["start"] * 1000, p["end"] * 1000) for p in phases(samples)
            if p["phase"] == "slow start"]  # fmt: skip


def time_sequence(
    conn: Connection,
    ax: Axes | None = None,
    *,
    samples: list[dict[str, Any]] | None = None,
    direction: str | None = None,
    window: bool = False,
) -> Figure:
    """Draw a Stevens time-sequence graph: relative sequence number against time.

    Each data segment is a vertical bar from its first to its last byte; the line of the same
    colour (lighter, stepped) is the peer's cumulative ACK for that direction. Each loss is
    marked: the segment sent again later is a red ``X`` (gid ``lost-client``/``-server``), its
    resend a red cross (``retransmissions-...``), and the recovery, from the first resend to
    the ACK of everything sent before it, a pale red band (``recovery-client-N``, see
    `labchat.analysis.Connection.recoveries`). Duplicate ACKs are purple diamonds
    (``duplicate-acks-...``), SACK blocks short purple bars at the ACK's time (``sack-...``),
    empty probes (tshark's keep-alives and zero-window probes) black dots (``probes-...``).

    Args:
        conn: the connection.
        ax: where to draw.
        samples: the sender's TCP_INFO rows (`labchat.capture.CaptureResult.tcp_info`): the
            times its kernel was in slow start are shaded pale green (``slow-start-N``); the
            rest is congestion avoidance or loss recovery.
        direction: draw only this direction's data and its ACKs (default: both).
        window: also draw the right edge of the receiver's window, ACK + advertised window,
            the highest byte the sender may send (``window-client``), as tcptrace does.
    """
    fig, ax = _new_axes(ax, (8.0, 4.5))
    for i, (a, b) in enumerate(_slow_start_spans(samples or [])):
        span = ax.axvspan(a, b, color="#d9f0d3", alpha=0.8, lw=0, zorder=0,
                          label="slow start (sender's kernel)" if i == 0 else None)  # fmt: skip
        span.set_gid(f"slow-start-{i}")
    lost = {s.index for s in lost_originals(conn)}
    for d, peer, name in (("c->s", "s->c", "client"), ("s->c", "c->s", "server")):
        if direction is None or d == direction:
            _recovery_spans(ax, conn, d, f"{name} loss recovery", gid=f"recovery-{name}")
            _ts_data(ax, conn, d, name, lost)
            _ts_acks(ax, conn, peer, name, window=window)
    _time_axes(
        ax, "relative sequence number (bytes)", f"Time-sequence graph, connection #{conn.stream}"
    )
    return fig


def _ts_data(ax: Axes, conn: Connection, direction: str, name: str, lost: set[int]) -> None:
    """One direction's data bars, resends, lost originals and empty probes."""
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
    marks = (
        ("retransmissions", [s for s in bars if s.retransmission], "x",
         {"color": "#c0392b", "ms": 9, "mew": 2}, f"{name} retransmission"),
        ("lost", [s for s in bars if s.index in lost], "X",
         {"color": "#c0392b", "ms": 8, "mfc": "none"}, f"{name} segment sent again later"),
        ("probes", [s for s in data if not s.seq_len and s.analysis
                    & {"keep_alive", "zero_window_probe"}], "o",
         {"color": "#222222", "ms": 5}, f"{name} probe (no data, old seq)"),
    )  # fmt: skip
    for gid, segs, marker, style, label in marks:
        if segs:
            (line,) = ax.plot([s.time * 1000 for s in segs], [s.rel_seq for s in segs], marker,
                              ls="none", label=label, **style)  # fmt: skip
            line.set_gid(f"{gid}-{name}")


def _ts_acks(ax: Axes, conn: Connection, peer: str, name: str, *, window: bool) -> None:
    """The peer's cumulative ACKs of ``name``'s data, its duplicate ACKs, SACK blocks, window."""
    colour = _DIR_COLOURS["c->s" if peer == "s->c" else "s->c"]
    acks = [s for s in conn.segments if s.direction == peer and s.has_ack]
    if not acks:
        return
    ax.step(
        [s.time * 1000 for s in acks], [s.rel_ack for s in acks], where="post",
        color=colour, alpha=0.45, lw=1.2, label=f"ACKs of {name} data",
    )  # fmt: skip
    if window:
        edge = [(s.time * 1000, s.rel_ack + s.scaled_window) for s in acks
                if s.scaled_window is not None]  # fmt: skip
        (line,) = ax.step([t for t, _ in edge], [y for _, y in edge], where="post",
                          color="#d4a017", lw=1.6,
                          label=f"{name}'s window edge (ACK + window)")  # fmt: skip
        line.set_gid(f"window-{name}")
    dup = [s for s in acks if "duplicate_ack" in s.analysis]
    if dup:
        (line,) = ax.plot([s.time * 1000 for s in dup], [s.rel_ack for s in dup], "D",
                          color="#8e44ad", ms=4, ls="none",
                          label=f"duplicate ACKs of {name} data")  # fmt: skip
        line.set_gid(f"duplicate-acks-{name}")
    sacked = [(s, blk) for s in acks for blk in s.sack]
    if sacked:
        coll = ax.vlines([s.time * 1000 for s, _ in sacked], [b[0] for _, b in sacked],
                         [b[1] for _, b in sacked], colors="#8e44ad", lw=5, alpha=0.5,
                         label=f"SACK blocks ({name} data received)")  # fmt: skip
        coll.set_gid(f"sack-{name}")


def _recovery_spans(ax: Axes, conn: Connection, direction: str, label: str, *, gid: str) -> None:
    """Pale red bands over each recovery of ``direction`` (gid ``<gid>-<n>``)."""
    for i, r in enumerate(conn.recoveries(direction)):
        end = r.end if r.end is not None else conn.segments[-1].time
        span = ax.axvspan(r.start * 1000, max(end, r.start + 1e-4) * 1000, color="#f3c4c4",
                          alpha=0.6, lw=0, zorder=0, label=label if i == 0 else None)  # fmt: skip
        span.set_gid(f"{gid}-{i}")


def cwnd(
    conn: Connection,
    samples: list[dict[str, Any]],
    direction: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The sender's congestion window, from its kernel, over the bytes in flight the capture saw.

    Args:
        conn: the connection (captured at the sender, so the bytes in flight are its own).
        samples: the sender's TCP_INFO rows on the capture's time axis, with ``t``,
            ``snd_cwnd``, ``snd_ssthresh`` and ``snd_mss``
            (`labchat.capture.CaptureResult.tcp_info`).
        direction: the data's direction (default: the one that sent more).
        ax: where to draw.

    Draws cwnd x MSS (gid ``cwnd``) and ssthresh x MSS (``ssthresh``, from the first time it
    is set) as steps, the capture's bytes in flight as dots (``bytes-in-flight``), each loss
    recovery as a pale red band (``recovery-N``), and the same scale in segments on the right.
    """
    fig, ax = _new_axes(ax, (8.0, 4.2))
    direction = direction or conn.data_direction()
    mss = next((r["snd_mss"] for r in samples if r.get("snd_mss")), 1448)
    _recovery_spans(ax, conn, direction, "loss recovery (capture)", gid="recovery")
    # At the data segments only, as tshark shows it: the sender's view when it sends.
    points = conn.bytes_in_flight(direction, acks=False)
    if points:
        (line,) = ax.plot([t * 1000 for t, _ in points], [b for _, b in points], ".",
                          color=_DIR_COLOURS[direction], ms=2.5, alpha=0.6,
                          label="bytes in flight (capture)")  # fmt: skip
        line.set_gid("bytes-in-flight")
    t = [r["t"] * 1000 for r in samples]
    (line,) = ax.step(t, [r["snd_cwnd"] * mss for r in samples], where="post", color="#222222",
                      lw=1.8, label="cwnd (sender's kernel) x MSS")  # fmt: skip
    line.set_gid("cwnd")
    thresh = [(x, r["snd_ssthresh"] * mss) for x, r in zip(t, samples, strict=True)
              if r["snd_ssthresh"] is not None]  # fmt: skip
    if thresh:
        (line,) = ax.step([x for x, _ in thresh], [y for _, y in thresh], where="post",
                          color="#8e44ad", lw=1.6, ls="--", label="ssthresh x MSS")  # fmt: skip
        line.set_gid("ssthresh")
    _time_axes(ax, "bytes", f"Congestion window and bytes in flight ({direction})", from_zero=True)
    right = ax.secondary_yaxis("right", functions=(lambda b: b / mss, lambda n: n * mss))
    right.set_ylabel(f"segments of {mss} bytes")
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


def rtt(conn: Connection, direction: str | None = None, ax: Axes | None = None, *,
        kernel: list[dict[str, Any]] | None = None, **kwargs: Any) -> Figure:  # fmt: skip
    """SampleRTT, EstimatedRTT and EstimatedRTT + 4 DevRTT against time (RFC 6298).

    Args:
        conn: the connection.
        direction: whose segments' round trips (default: the data's).
        ax: where to draw.
        kernel: the sender's TCP_INFO rows (`labchat.capture.CaptureResult.tcp_info`): its
            own SRTT is drawn too (gid ``kernel-srtt``).
        **kwargs: for :func:`labchat.analysis.estimate_rtt` (``alpha``, ``beta``).
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
    if kernel:
        (line,) = ax.step([r["t"] * 1000 for r in kernel], [r["rtt"] / 1000 for r in kernel],
                          where="post", color="#2e8b57", lw=1.4,
                          label="SRTT (the sender's kernel)")  # fmt: skip
        line.set_gid("kernel-srtt")
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
