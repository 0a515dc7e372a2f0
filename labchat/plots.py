"""Facts -> matplotlib figures: ladder diagram, time-sequence graph, TLS comparison, TCP header,
and the room's broadcast latency and live view (numbers measured by `labchat.lab`).

Every function takes facts from :mod:`labchat.analysis`, draws on ``ax`` when given (else on
a new :class:`matplotlib.figure.Figure`, which needs no pyplot and no display) and returns the
Figure. Drawn objects carry a ``gid`` so tests and notebooks can find them: ``segment-N`` for a
ladder arrow, ``phase-NAME`` for a shaded phase, ``field-NAME`` for a header field.

Every figure follows one *style* (`style`): the default, ``"projector"``, sets every text at
14 pt or more and keeps figures at most 9.6 inches wide, so that a notebook shows them at
their own size (a wider figure is shrunk to the cell, and its text with it) and the back row
can read them. ``style("paper")`` draws smaller text for print.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .analysis import Connection, Segment
    from .lab import RoomStats, RoomView
    from .trust import ChainReport

__all__ = [
    "FLAG_NAMES",
    "STYLES",
    "Style",
    "broadcast_latency",
    "certificate_chain",
    "cwnd",
    "distributions",
    "flag_words",
    "in_flight",
    "ladder",
    "lost_originals",
    "mask_password",
    "room_view",
    "rtt",
    "style",
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
#: The same phases in a darker tone, for their names.
_PHASE_INK = {
    "handshake": "#2f5f8a",
    "data": "#3d7a2e",
    "teardown": "#a0522d",
    "reset": "#a02020",
}
_DIR_COLOURS = {"c->s": "#1f5fa8", "s->c": "#b5461a"}


@dataclass(frozen=True)
class Style:
    """Sizes every figure is drawn with.

    Attributes:
        name: ``"projector"`` or ``"paper"``.
        text: every label, tick, legend and annotation (points).
        title: axes and figure titles (points).
        width: the width of a full-width figure (inches). 9.6 in at matplotlib's 100 dpi is
            960 pixels: JupyterLab's and Jupyter Notebook's cells show that unscaled.
        row: the least height of one ladder row (inches).
    """

    name: str
    text: float
    title: float
    width: float
    row: float

    @property
    def line(self) -> float:
        """Height of one line of text, in inches (1.25 times the font size)."""
        return self.text * 1.25 / 72


#: The styles `style` knows. "projector" is the default: 14 pt is the smallest size that
#: stays legible from the back of a classroom on a 1080p projector (and the issue 13 floor).
STYLES = {
    "projector": Style("projector", text=14.0, title=16.0, width=9.6, row=0.5),
    "paper": Style("paper", text=8.0, title=10.0, width=8.0, row=0.3),
}
_current = STYLES["projector"]


def style(name: str | None = None) -> Style:
    """Choose the style of every figure drawn from now on, or return the current one.

    Example::

        plots.style("paper")       # small text, for print
        plots.style("projector")   # the default: 14 pt and up, 9.6 inches wide at most

    Args:
        name: a key of `STYLES`, or None to change nothing.

    Returns:
        The style now in force.

    Raises:
        ValueError: an unknown style name (the message lists the known ones).
    """
    global _current
    if name is not None:
        try:
            _current = STYLES[name]
        except KeyError:
            raise ValueError(f"unknown plot style {name!r}; choose {', '.join(STYLES)}") from None
    return _current


def _finish_axes(ax: Axes) -> None:
    """Style what every plot's axes have: tick labels, axis labels, title, legend."""
    st = _current
    ax.tick_params(labelsize=st.text)
    ax.xaxis.label.set_fontsize(st.text)
    ax.yaxis.label.set_fontsize(st.text)
    ax.title.set_fontsize(st.title)
    legend = ax.get_legend()
    if legend is not None:
        for text in legend.get_texts():
            text.set_fontsize(st.text)


def _text_width(text: str, size: float, *, bold: bool = False) -> float:
    """Width of the widest line of ``text`` at ``size`` points, in inches (the font's own
    advance widths, as matplotlib lays text out; no renderer needed)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties(size=size, weight="bold" if bold else "normal")
    widths = [text_to_path.get_text_width_height_descent(line, prop, ismath=False)[0]
              for line in text.splitlines() if line.strip()]  # fmt: skip
    return max(widths, default=0.0) / 72


def _wrap(text: str, width_in: float, size: float, *, bold: bool = False) -> str:
    """Wrap each line of ``text`` at its spaces so that none is wider than ``width_in`` inches
    at ``size`` points."""
    out: list[str] = []
    for line in text.split("\n"):
        lines: list[str] = []
        for word in line.split(" "):
            if lines and _text_width(f"{lines[-1]} {word}", size, bold=bold) <= width_in:
                lines[-1] += f" {word}"
            else:
                lines.append(word)
        out += lines
    return "\n".join(out)


def flag_words(flags: str) -> str:
    """``"SA"`` -> ``"SYN, ACK"``; ``"PA"`` -> ``"PSH, ACK"``."""
    return ", ".join(FLAG_NAMES.get(ch, ch) for ch in flags if ch != ".") or "none"


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    width, height = figsize
    fig = Figure(figsize=(min(width, _current.width), height), layout="constrained")
    return fig, fig.add_subplot()


def _time_axes(ax: Axes, ylabel: str, title: str, *, from_zero: bool = False) -> None:
    """The finish every time-based plot shares: labels, title, grid and a legend if any."""
    ax.set_xlabel("time since first packet (ms)")
    ax.set_ylabel(ylabel)
    if from_zero:
        ax.set_ylim(bottom=0)
    width = ax.figure.get_figwidth() * ax.get_position().width
    ax.set_title(_wrap(title, width, _current.title))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        # Below the plot, not on it: at 14 pt a legend inside would hide the data.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, frameon=False)
    _finish_axes(ax)


def _pack(items: list[str], max_chars: int, sep: str = ", ") -> list[str]:
    """Greedily join ``items`` into lines of at most ``max_chars`` characters (one item may
    be longer: it gets a line of its own)."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + len(sep) + len(item) <= max_chars:
            lines[-1] += sep + item
        else:
            lines.append(item)
    return lines


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


def _short(line: str) -> str:
    line = mask_password(line)
    if len(line) > LABEL_LINE_CHARS:
        return line[: LABEL_LINE_CHARS - 1] + "…"
    return line


def _segment_label(
    seg: Segment,
    tls_names: list[str],
    *,
    detail: str,
    max_chars: int,
    mark: str | None = None,
    carried: Sequence[str] = (),
) -> list[str]:
    """The lines written on a ladder arrow."""
    head = flag_words(seg.flags)
    if detail == "full":
        head += f"  seq={seg.rel_seq}"
        if seg.has_ack:
            head += f" ack={seg.rel_ack}"
        head += f" len={seg.payload_len}"
    elif seg.payload_len and not tls_names and not carried:
        head += f" len={seg.payload_len}"
    brief = detail != "full" and (tls_names or carried)
    lines = [] if brief else _pack(head.split("  "), max_chars, "  ")
    if carried:
        # What the data says beats what it is called: `MSG bob hi`, not `ApplicationData`.
        names = [n for n in tls_names if n != "ApplicationData"]
        shown = [_short(line) for line in carried[:2]] + (["…"] if len(carried) > 2 else [])
        lines += _pack(names + shown, max_chars)
    elif tls_names:
        shown = tls_names if len(tls_names) <= 9 else [*tls_names[:8], "…"]
        lines += _pack(shown, max_chars)
    notes = seg.notes()
    if seg.retransmission and not any("retransmission" in n for n in notes):
        notes.insert(0, "retransmission")
    if notes:
        lines += _pack([f"[{n}]" for n in notes], max_chars, " ")
    if mark:
        lines += _pack(mark.split(" "), max_chars, " ")
    return lines


def _ladder_rows(
    segs: list[Segment], heights: list[float]
) -> tuple[list[float], list[tuple[int, float]]]:
    """Where each arrow starts (inches down from the first), and the long pauses (after which
    row, how long).

    Each row is at least `Style.row` tall and tall enough that two neighbouring labels (of
    ``heights`` inches) do not touch; a gap much longer than the typical one gets a little more
    room (log scale, capped) and is reported as a break, so a 20 ms pause between chat lines
    does not push the next arrows off the page.
    """
    st = _current
    if not segs:
        return [], []
    times = [s.time for s in segs]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    positive = sorted(g for g in gaps if g > 0)
    typical = positive[len(positive) // 2] if positive else 1e-3
    ys = [0.0]
    breaks: list[tuple[int, float]] = []
    for i, gap in enumerate(gaps):
        pitch = max(st.row, (heights[i] + heights[i + 1]) / 2 + 0.3 * st.line)
        pitch += min(1.5, 0.5 * math.log10(1 + gap / max(typical, 1e-6))) * st.row * 0.5
        if gap > 10 * typical and gap > 0.005:
            # Room for three lines on the left: this row's time, the pause, the next time.
            pitch = max(pitch, 3.2 * st.line)
            breaks.append((i, gap))
        ys.append(ys[-1] + pitch)
    return ys, breaks


def lost_originals(conn: Connection) -> list[Segment]:
    """Segments whose data was sent again later: the copies that were (most likely) lost.

    The capture point sees them; the receiver evidently did not (or its ACK got lost).
    Same as `labchat.analysis.lost_originals` on ``conn.segments``.
    """
    from .analysis import lost_originals as originals

    return originals(conn.segments)


def _phase_spans(conn: Connection, segs: list[Segment]) -> list[tuple[str, int, int]]:
    """(phase, first row, last row) for each run of segments in one phase."""
    spans: list[tuple[str, int, int]] = []
    for i, seg in enumerate(segs):
        phase = conn.phase(seg)
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], i)
        else:
            spans.append((phase, i, i))
    return spans


def _place_without_overlap(centres: list[float], lengths: list[float], gap: float) -> list[float]:
    """Move labels (centre, length along the axis) down as little as needed to not overlap."""
    placed: list[float] = []
    end = -math.inf
    for centre, length in zip(centres, lengths, strict=True):
        centre = max(centre, end + gap + length / 2)
        placed.append(centre)
        end = centre + length / 2
    return placed


def _band_edges(
    ys: list[float], first: int, last: int, slope: float, bottom: float
) -> tuple[float, float]:
    """Top and bottom of the band of rows ``first..last``: halfway to the neighbouring rows."""
    top = (ys[first - 1] + slope + ys[first]) / 2 if first > 0 else ys[0] - 0.5 * _current.row
    end = (ys[last] + slope + ys[last + 1]) / 2 if last + 1 < len(ys) else bottom
    return top, end


def _grow_bands(
    spans: list[tuple[str, int, int]], ys: list[float], slope: float, bottom: float
) -> float:
    """Move rows down (in place) until every band is as tall as its name; return the bottom."""
    for phase, first, last in spans:
        top, end = _band_edges(ys, first, last, slope, bottom)
        short = _text_width(phase, _current.text) + 0.25 - (end - top)
        if short <= 0:
            continue
        # An edge halfway between two rows moves by half of what the rows below it move.
        inner, outer = first > 0, last + 1 < len(ys)
        above = short if inner and outer else 0.0  # rows first.. move: this band +above/2
        below = short if inner and outer else 2 * short if outer else 0.0  # +below/2
        for i in range(first, len(ys)):
            ys[i] += above
        for i in range(last + 1, len(ys)):
            ys[i] += below
        bottom += above + below + (0.0 if outer else short)  # the last band ends at bottom
    return bottom


def ladder(
    conn: Connection,
    ax: Axes | None = None,
    *,
    max_segments: int = 60,
    title: str | None = None,
    detail: str = "full",
    mark: dict[int, str] | None = None,
    time_label: str = "ms since the capture's first packet",
    lines: bool = True,
) -> Figure:
    """Draw a ladder (sequence) diagram: client and server lanes, one arrow per segment.

    Args:
        conn: a connection from :func:`labchat.analysis.load`.
        ax: where to draw; a new Figure sized to the segments (and the style) when None.
        max_segments: draw at most this many segments (the title says how many were left out).
        title: the axes title (default: the connection and its segment count).
        detail: ``"full"`` labels every arrow with flags, seq, ack and len (and the TLS
            messages it carries); ``"brief"`` with the TLS messages only, or the flags where
            there are none (for two ladders side by side).
        mark: segment index -> a line of text to add to that arrow's label; the arrow is
            drawn thicker (gid ``mark-N``).
        time_label: what the segment times count from (the time axis's label).
        lines: label data segments with the labchat/1 lines they carry (decrypted TLS where
            the key log is known, plaintext otherwise), passwords masked (`mask_password`).

    Returns:
        The Figure drawn on.
    """
    from matplotlib.patches import FancyArrowPatch

    from .analysis import endpoint

    st = _current
    mark = mark or {}
    segs = conn.segments[:max_segments]
    names: dict[int, list[str]] = {}
    for m in conn.tls_messages():
        if m.segment is not None:
            # An alert says which one: that is the point of it (close_notify, unknown_ca, ...).
            why = m.fields.get("description") if m.name == "Alert" else None
            names.setdefault(m.segment, []).append(f"Alert {why}" if why else m.name)
    carried = conn.lines_by_segment() if lines else {}
    times = [f"{seg.time * 1000:.3f} ms" for seg in segs]
    # The times are the y tick labels (so the layout makes room for them), left of the axes.
    left = max((_text_width(t, st.text) for t in times), default=1.0) + st.line + 0.3
    # Room right of the server's lane: the rotated phase names, and half of the lane's label
    # (centred on the lane; constrained layout does not always make room for it).
    server_label = endpoint(conn.server)
    right = max(st.line + 0.2, _text_width(server_label, st.text) / 2 + 0.1)
    if ax is None:
        share = st.width
    else:
        spec = ax.get_subplotspec()
        if spec is not None:
            grid = spec.get_gridspec()
            share = ax.figure.get_figwidth() * len(spec.colspan) / grid.ncols
        else:
            share = ax.figure.get_figwidth() * ax.get_position().width + left
    lane_gap = max(1.0, share - left - right - 0.2)  # inches between the two lanes
    max_chars = max(14, int((lane_gap - 0.25) * 72 / (st.text * 0.55)))
    labels = [
        _segment_label(seg, names.get(seg.index, []), detail=detail, max_chars=max_chars,
                       mark=mark.get(seg.index), carried=carried.get(seg.index, ()))
        for seg in segs
    ]  # fmt: skip
    heights = [len(label) * st.line for label in labels]
    ys, breaks = _ladder_rows(segs, heights)
    slope = 0.6 * st.row  # how far an arrow drops from sender to receiver: it is in flight
    bottom = (ys[-1] if ys else 0) + slope + st.row
    title = title if title is not None else f"TCP connection #{conn.stream}: {len(segs)} segments"
    if len(conn.segments) > len(segs):
        title += f" (first {len(segs)} of {len(conn.segments)} shown)"
    # The title sits over the axes, which the times on the left make narrower than ``share``.
    title = _wrap(title, share - left, st.title)
    x_client, x_server = 0.0, 1.0

    # Phases: bands whose edges lie halfway between the rows of two phases, each at least as
    # tall as its (upright) name, so that no name runs into the next band (notebook 07's
    # "reset" and "handshake" did).
    spans = _phase_spans(conn, segs)
    bottom = _grow_bands(spans, ys, slope, bottom)
    if ax is None:
        from matplotlib.figure import Figure

        top = 2 * st.line + (title.count("\n") + 1) * st.title * 1.3 / 72 + 0.3
        fig = Figure(figsize=(st.width, bottom + st.row + top), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    centres, lengths = [], []
    for phase, first, last in spans:
        y0, y1 = _band_edges(ys, first, last, slope, bottom)
        band = ax.axhspan(y0, y1, color=_PHASE_COLOURS[phase], alpha=0.8, zorder=0, lw=0)
        band.set_gid(f"phase-{phase}")
        centres.append((y0 + y1) / 2)
        lengths.append(_text_width(phase, st.text))
    for (phase, _, _), y in zip(spans, _place_without_overlap(centres, lengths, 0.1), strict=True):
        ax.text(
            1.0 + 0.08 / lane_gap, y, phase, rotation=90, va="center", ha="left",
            fontsize=st.text, color=_PHASE_INK[phase], gid=f"phase-label-{phase}",
        )  # fmt: skip
    for x in (x_client, x_server):
        ax.plot([x, x], [-0.5 * st.row, bottom], color="#333333", lw=1.5, zorder=1)

    for seg, y, label in zip(segs, ys, labels, strict=False):
        start, end = (x_client, x_server) if seg.direction == "c->s" else (x_server, x_client)
        colour = "#c0392b" if seg.rst else _DIR_COLOURS[seg.direction]
        marked = seg.index in mark
        arrow = FancyArrowPatch(
            (start, y), (end, y + slope), arrowstyle="-|>", mutation_scale=14,
            color=colour, lw=3.2 if marked else 1.4,
            linestyle="--" if seg.retransmission else "-", zorder=3,
        )  # fmt: skip
        arrow.set_gid(f"segment-{seg.index}")
        ax.add_patch(arrow)
        if marked:
            (line,) = ax.plot([start], [y], marker="*", ms=16, color="#1d8348", zorder=5)
            line.set_gid(f"mark-{seg.index}")
        ax.text(
            0.5, y + slope / 2, "\n".join(label), ha="center", va="center", fontsize=st.text,
            zorder=4, color=colour, linespacing=1.1, fontweight="bold" if marked else "normal",
            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},
        )  # fmt: skip
    # Loss and recovery, marked so they can be found at a glance (and by gid in tests).
    lost = {s.index for s in lost_originals(conn)}
    for seg, y in zip(segs, ys, strict=False):
        end = 1.0 if seg.direction == "c->s" else 0.0
        if seg.index in lost:
            (dot,) = ax.plot([0.5 + (end - 0.5) * 0.8], [y + slope * 0.9], marker="X",
                             ms=11, color="#c0392b", zorder=5, ls="none")  # fmt: skip
            dot.set_gid(f"lost-{seg.index}")
        if seg.retransmission:
            (dot,) = ax.plot([1.0 - end], [y], marker="o", ms=9, mfc="none", mec="#c0392b",
                             mew=1.8, zorder=5, ls="none")  # fmt: skip
            dot.set_gid(f"retransmission-{seg.index}")
        if "duplicate_ack" in getattr(seg, "analysis", ()):
            (dot,) = ax.plot([1.0 - end], [y], marker="D", ms=7, color="#8e44ad", zorder=5,
                             ls="none")  # fmt: skip
            dot.set_gid(f"dupack-{seg.index}")
    ax.set_yticks(ys, times)
    ax.set_yticks([(ys[i] + ys[i + 1]) / 2 for i, _ in breaks],
                  [f"⋯ {gap * 1000:.0f} ms pause" for _, gap in breaks], minor=True)  # fmt: skip
    ax.tick_params(axis="y", which="both", length=0, labelsize=st.text, labelcolor="#444444")
    ax.tick_params(axis="y", which="minor", labelcolor="#888888")
    # 0.8: the lane gap above is an estimate before layout; err on the side of room.
    ax.set_xlim(-0.04, 1.0 + right / (0.8 * lane_gap))
    ax.set_ylim(bottom, -0.5 * st.row)
    ax.set_xticks([x_client, x_server])
    ax.set_xticklabels(
        [
            f"client\n{endpoint(conn.client)}",
            f"server\n{endpoint(conn.server)}",
        ]
    )
    ax.xaxis.set_ticks_position("top")
    ax.set_ylabel(_wrap(f"{time_label} (down; long pauses compressed)",
                        max(1.5, bottom - 0.3), st.text))  # fmt: skip
    for side in ("right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(title)
    _finish_axes(ax)
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
    fig, ax = _new_axes(ax, (_current.width, 8.0))
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
    fig, ax = _new_axes(ax, (_current.width, 5.5))
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

    fig, ax = _new_axes(ax, (_current.width, 5.5))
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
    """Two ladders side by side, TLS 1.2 and TLS 1.3, each with its round trips and its first
    application data marked (`labchat.analysis.first_application_data`: data, never the TLS
    1.3 client's encrypted Finished)."""
    from matplotlib.figure import Figure

    from .analysis import first_application_data, tls_round_trips

    st = _current
    fig = Figure(figsize=(st.width, 4.0), layout="constrained")
    axes = fig.subplots(1, 2)
    needed = 0.0
    for ax, conn, label in ((axes[0], conn12, "TLS 1.2"), (axes[1], conn13, "TLS 1.3")):
        trips = tls_round_trips(conn)
        s = "" if trips == 1 else "s"
        first = first_application_data(conn)
        mark = {}
        shown = 60
        if first is not None and first.segment is not None:
            mark[first.segment] = f"first application data, after {trips} RTT{s}"
            # The handshakes are the point: stop a few segments after the first data.
            shown = min(shown, first.segment + 4)
        title = f"{label}: {trips} round trip{s} before the first application data"
        ladder(conn, ax, detail="brief", mark=mark, max_segments=shown, title=title)
        needed = max(needed, -ax.get_ylim()[1] + ax.get_ylim()[0])
    axes[1].set_ylabel("")  # one time axis label is enough for two ladders side by side
    fig.set_figheight(needed + 2.8)
    fig.suptitle("Handshake round trips: TLS 1.2 vs TLS 1.3", fontsize=st.title)
    return fig


# --- measurements ---------------------------------------------------------------------------


def distributions(
    samples: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
    *,
    unit: str = "ms",
    title: str = "",
    log: bool = False,
) -> Figure:
    """Several sets of measurements, one row each: every sample as a dot, a box from the
    first to the third quartile, a line at the median (written beside the row).

    Args:
        samples: label -> values, drawn top to bottom in the mapping's order.
        ax: where to draw; a new Figure when None.
        unit: the values' unit, for the axis and the medians.
        title: the axes title.
        log: a logarithmic value axis (for sets that differ by orders of magnitude).

    Returns:
        The Figure drawn on (each row's dots have gid ``samples-N``, its box ``box-N``).
    """
    import statistics

    from matplotlib.patches import Rectangle

    st = _current
    labels = list(samples)
    fig, ax = _new_axes(ax, (st.width, 1.2 + 1.1 * max(1, len(labels))))
    colours = ["#1f5fa8", "#b5461a", "#555555", "#1d8348", "#8e44ad"]
    for row, label in enumerate(labels):
        values = sorted(float(v) for v in samples[label])
        if not values:
            continue
        colour = colours[row % len(colours)]
        # Spread the dots up and down a little, the same way every time (no random jitter:
        # a figure redrawn from the same numbers looks the same).
        offsets = [((i * 7) % 11 - 5) * 0.035 for i in range(len(values))]
        (dots,) = ax.plot(values, [row + o for o in offsets], "o", ms=6, alpha=0.6, color=colour)
        dots.set_gid(f"samples-{row}")
        # The box by hand (ax.boxplot's orientation argument changed in matplotlib 3.10).
        q1, median, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        box = Rectangle((q1, row - 0.3), max(q3 - q1, 1e-12), 0.6, fc="none", ec=colour, lw=1.6)
        box.set_gid(f"box-{row}")
        ax.add_patch(box)
        ax.plot([median, median], [row - 0.3, row + 0.3], color=colour, lw=2.6)
        ax.plot([values[0], q1], [row, row], color=colour, lw=1.2)
        ax.plot([q3, values[-1]], [row, row], color=colour, lw=1.2)
        median = statistics.median(values)
        ax.text(1.01, row, f"{median:.3g} {unit}", transform=ax.get_yaxis_transform(),
                va="center", ha="left", fontsize=st.text, color=colour)  # fmt: skip
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"{unit} (box: middle half of the samples; line: median; whiskers: all)")
    ax.grid(True, axis="x", alpha=0.3)
    if title:
        ax.set_title(_wrap(title, st.width - 0.5, st.title))
    _finish_axes(ax)
    return fig


# --- certificate chains (labchat.trust) -----------------------------------------------------

_OK, _BAD = "#1d8348", "#c0392b"


def certificate_chain(report: ChainReport, ax: Axes | None = None) -> Figure:
    """Draw a certificate chain as a client checks it: the CA you trust on top, the
    certificates the peer sent below, each with its checks (✓/✗), arrows for "signed by".

    Boxes carry gids ``cert-0`` (the peer's own certificate), ``cert-1``, ... and
    ``cert-anchor`` (the trusted CA, or a red placeholder when none signed the chain).

    Args:
        report: from `labchat.trust.explain`.
        ax: where to draw; a new Figure when None.

    Returns:
        The Figure drawn on.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    st = _current
    width = st.width - 0.4
    # Text must stay inside the axes: text that pokes out makes the layout shrink the axes.
    inner = width - 1.0
    shown = report.checks  # the certificates that took part, the peer's own first
    blocks: list[tuple[str, str, str, bool]] = []  # (gid, title, body, ok)
    if report.anchor is not None:
        anchor = report.anchor
        cn = anchor.subject.rfc4514_string()
        blocks.append(("cert-anchor", f"{cn}\na CA the checker trusts (its ca.pem)",
                       f"valid until {anchor.not_valid_after_utc:%Y-%m-%d}", True))  # fmt: skip
    else:
        blocks.append(("cert-anchor", "no CA you trust", "nothing in your ca.pem signed this "
                       "chain", False))  # fmt: skip
    for i in reversed(range(len(shown))):
        cert = report.chain[i]
        role = "sent by the peer: its own certificate" if i == 0 else "sent by the peer"
        body = "\n".join(("✓ " if c.ok else "✗ ") + c.detail for c in shown[i])
        blocks.append((f"cert-{i}", f"{cert.subject.rfc4514_string()}\n{role}", body,
                       all(c.ok for c in shown[i])))  # fmt: skip
    wrapped = [(g, _wrap(t, inner, st.text, bold=True), _wrap(b, inner, st.text), ok)
               for g, t, b, ok in blocks]  # fmt: skip
    heights = [(t.count("\n") + b.count("\n") + 2) * st.line + 0.25 for _, t, b, _ in wrapped]
    gap = 3 * st.line
    extra = len(report.chain) - len(shown)
    verdict = f"verdict of cryptography's path validation: {report.verdict}"
    if extra:
        verdict = (f"(and {extra} more certificate{'s' if extra > 1 else ''} sent, not needed: "
                   f"trust comes from your ca.pem, not from the wire)\n" + verdict)  # fmt: skip
    verdict = _wrap(verdict, inner, st.text, bold=True)
    total = sum(heights) + gap * (len(heights) - 1) + (verdict.count("\n") + 1.5) * st.line
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(st.width, total + 0.9), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    y = 0.0
    tops = []
    for (gid, title, body, ok), h in zip(wrapped, heights, strict=True):
        colour = _OK if ok else _BAD
        box = FancyBboxPatch((0.1, y), width - 0.2, h, boxstyle="round,pad=0.02,rounding_size=0.1",
                             fc="#f4f7fb" if ok else "#fbeaea", ec=colour, lw=2,
                             ls="-" if gid != "cert-anchor" or ok else "--")  # fmt: skip
        box.set_gid(gid)
        ax.add_patch(box)
        ax.text(0.3, y + 0.12, title, va="top", ha="left", fontsize=st.text, fontweight="bold",
                color="#222222")  # fmt: skip
        ax.text(0.3, y + 0.12 + (title.count("\n") + 1) * st.line, body, va="top", ha="left",
                fontsize=st.text, color=colour)  # fmt: skip
        tops.append((y, h))
        y += h + gap
    for (y_up, h_up), (y_down, _), checks in zip(tops, tops[1:], reversed(shown), strict=False):
        signed = checks[0]
        colour = _OK if signed.ok else _BAD
        arrow = FancyArrowPatch((width / 2, y_down), (width / 2, y_up + h_up), arrowstyle="-|>",
                                mutation_scale=18, color=colour, lw=2,
                                linestyle="-" if signed.ok else "--")  # fmt: skip
        ax.add_patch(arrow)
        ax.text(width / 2 + 0.2, (y_down + y_up + h_up) / 2,
                "signed by" + (" ✓" if signed.ok else "?  ✗"), va="center", ha="left",
                fontsize=st.text, color=colour)  # fmt: skip
    ax.text(0.1, y - gap + 0.3 * st.line, verdict, va="top", ha="left", fontsize=st.text,
            color=_OK if report.ok else _BAD, fontweight="bold")  # fmt: skip
    ax.set_xlim(0, width)
    ax.set_ylim(total, -0.1)
    ax.set_axis_off()
    if report.host:
        title = f"The certificate chain for {report.host}, as a client checks it"
    else:
        title = "A client's certificate chain, as the server checks it (--client-ca)"
    ax.set_title(_wrap(title, width, st.title))
    _finish_axes(ax)
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
    st = _current
    opt_text = _wrap(_fmt_options(fields["options"]), st.width - 0.8, st.text, bold=True)
    # Row heights in lines of text: a name and a value; the flags' names stand upright in
    # their one-bit boxes; the options may take two lines.
    heights = [2.6, 2.6, 2.6, 4.4, 2.6] + ([2.0 + opt_text.count("\n") + 1.0] if opt_text else [])
    tops = [sum(heights[:i]) for i in range(len(heights) + 1)]
    fig, ax = _new_axes(ax, (st.width, tops[-1] * st.line + 1.2))

    def box(row: int, bit0: int, nbits: int, name: str, value: str, gid: str, fc="#f4f7fb"):
        top, height = tops[row], heights[row]
        rect = Rectangle((bit0, top), nbits, height, fc=fc, ec="#333333", lw=1)
        rect.set_gid(f"field-{gid}")
        ax.add_patch(rect)
        upright = nbits == 1
        ax.text(bit0 + nbits / 2, top + (1.5 if upright else 0.8 + 0.5 * name.count("\n")), name,
                ha="center",
                va="center", fontsize=st.text, color="#555555",
                rotation=90 if upright else 0)  # fmt: skip
        ax.text(bit0 + nbits / 2, top + height - 0.2, value, ha="center", va="bottom",
                fontsize=st.text, fontweight="bold")  # fmt: skip

    box(0, 0, 16, "Source Port", str(fields["sport"]), "sport")
    box(0, 16, 16, "Destination Port", str(fields["dport"]), "dport")
    box(1, 0, 32, "Sequence Number", f"{segment.seq}  (relative {segment.rel_seq})", "seq")
    ack_text = f"{segment.ack}" + (f"  (relative {segment.rel_ack})" if segment.has_ack else
                                   "  (ACK flag not set: ignored)")  # fmt: skip
    box(2, 0, 32, "Acknowledgment Number", ack_text, "ack")
    doff = fields["dataofs"]
    box(3, 0, 4, "Data\nOffset", f"{doff}\n({(doff or 0) * 4} B)", "dataofs")
    box(3, 4, 4, "Reserved", str(fields["reserved"]), "reserved")
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
        ax.text(bit, -0.15, str(bit), ha="center", va="bottom", fontsize=st.text,
                color="#777777")  # fmt: skip
    ax.set_xlim(-0.5, 32.5)
    ax.set_ylim(tops[-1] + 0.1, -1.6)
    ax.set_axis_off()
    title = (f"TCP header of segment #{segment.index} ({segment.direction}, "
             f"{flag_words(segment.flags)}, {segment.payload_len} payload bytes)")  # fmt: skip
    ax.set_title(_wrap(title, st.width - 0.3, st.title), fontsize=st.title)
    _finish_axes(ax)  # also the (hidden) ticks: no text of this figure is small
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
    st = _current
    fig, ax = _new_axes(ax, (st.width, 6.5))
    xs = [s.clients for s in stats]
    ax.plot(xs, [s.median_receiver for s in stats], "o-", ms=8,
            label="median receiver (median over messages)")  # fmt: skip
    ax.plot(xs, [s.last_receiver for s in stats], "s-", ms=8,
            label="last receiver (median over messages)")  # fmt: skip
    ax.plot(xs, [s.worst for s in stats], "^:", ms=8, color="#999999",
            label="last receiver, worst message")  # fmt: skip
    ax.set_xlabel("clients in the room")
    ax.set_ylabel("SAY -> MSG received (ms)")
    ax.set_title(_wrap("Broadcast latency as the room grows (one server, thread per client)",
                       st.width - 0.5, st.title))  # fmt: skip
    ax.set_xticks(xs)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    # Below the plot, not on it: at 14 pt a legend inside would hide the lines.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=1, frameon=False)
    _finish_axes(ax)
    return fig


def room_view(view: RoomView) -> Figure:
    """One frame of the live room view, readable on a projector.

    Who is in the room (left, top), messages per second and the PING round trip over time
    (left, bottom) and the newest segments as a ladder (right), or why there are none. The
    ladder's times are on the view's clock (seconds watched, like the title's t); its seq and
    ack numbers count from the first packet of the window the view keeps, and its title says
    so (a window without the SYN has no better origin).

    Args:
        view: from `labchat.lab.live_room_view`, at one refresh (at least one measured).

    Returns:
        A new Figure (9.6 x 8 inches, four axes).
    """
    from matplotlib.figure import Figure

    st = _current
    fig = Figure(figsize=(st.width, 8.0), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.25])
    ax_who = fig.add_subplot(grid[0, 0])
    ax_rate = fig.add_subplot(grid[1, 0])
    ax_ladder = fig.add_subplot(grid[:, 1])
    fig.suptitle(
        f"labchat room on {view.host}:{view.port}  (t = {view.times[-1]:.0f} s)", fontsize=st.title
    )

    members = view.members
    ax_who.set_axis_off()
    _finish_axes(ax_who)  # its ticks are hidden; still, no text of this figure is small
    ax_who.set_title(f"In the room: {len(members)}", fontsize=st.title, loc="left")
    shown = members[:16]
    cols = 2 if len(shown) > 8 else 1
    per_col = -(-len(shown) // cols) if shown else 1
    for i, name in enumerate(shown):
        ax_who.text(i // per_col / cols, 1 - (i % per_col + 1) / (per_col + 1), name,
                    fontsize=st.text, transform=ax_who.transAxes)  # fmt: skip
    if len(members) > len(shown):
        ax_who.text(0, 0, f"... and {len(members) - len(shown)} more", fontsize=st.text,
                    transform=ax_who.transAxes)  # fmt: skip

    times, rates, rtts = view.times, view.rates, view.rtts
    ax_rate.plot(times, rates, "o-", color="#1f5fa8", label="messages/s")
    ax_rate.set_xlabel("seconds watched")
    ax_rate.set_ylabel("messages per second", color="#1f5fa8")
    ax_rate.set_ylim(bottom=0, top=max(rates + [1]) * 1.25)
    ax_rate.grid(True, alpha=0.3)
    ax_rtt = ax_rate.twinx()
    ax_rtt.plot(times, rtts, "s--", color="#b5461a", label="server round trip (ms)")
    ax_rtt.set_ylabel("PING round trip (ms)", color="#b5461a")
    ax_rtt.set_ylim(bottom=0, top=max(rtts + [1]) * 1.25)
    _finish_axes(ax_rate)
    _finish_axes(ax_rtt)
    ax_rate.set_title(f"{rates[-1]:.0f} msg/s, round trip {rtts[-1]:.1f} ms", fontsize=st.title,
                      loc="left")  # fmt: skip

    if view.newest is not None:
        n = len(view.newest.segments)
        window = f"the last {view.window_packets} packets" if view.window_packets else "a window"
        ladder(view.newest, ax_ladder, detail="brief", time_label="ms since the view started",
               title=f"Newest {n} segments, from {window} captured; seq and ack count from "
                     "the first of those packets")  # fmt: skip
    else:
        ax_ladder.set_axis_off()
        why = view.no_capture
        text = "no segments captured yet" if why is None else f"no live capture:\n{why}"
        ax_ladder.text(0.5, 0.5, _wrap(text, 4.5, st.text), ha="center", va="center",
                       fontsize=st.text, transform=ax_ladder.transAxes)  # fmt: skip
        ax_ladder.set_title("Newest segments", fontsize=st.title)
        _finish_axes(ax_ladder)
    return fig
