"""Packets -> facts a learner can read: connections, segments, handshake, teardown, TLS messages.

Everything here works on a capture file (pcap or pcapng) and returns plain dataclasses and
:class:`Table` objects (which render as HTML in Jupyter and as fixed-width text elsewhere).
Odd input never raises anything but :class:`AnalysisError` (for a file that is not a capture
at all); everything else that looks wrong lands in ``Capture.warnings``.

Sequence numbers follow Wireshark's conventions so a learner can compare both side by side:
relative numbers count from each side's ISN, and a side whose SYN was not captured gets the
base ``first seq - 1`` (Wireshark's packet-tcp.c does the same), so its first byte shows as 1.
"""

from __future__ import annotations

import html
import io
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .capture.pcapng import strip_secrets

__all__ = [
    "AnalysisError",
    "Capture",
    "Connection",
    "Handshake",
    "RTTSample",
    "Segment",
    "TLSMessage",
    "Table",
    "Teardown",
    "estimate_rtt",
    "load",
    "tls_round_trips",
    "tls_summary",
]

C2S = "c->s"
S2C = "s->c"
_MOD = 1 << 32
# Ports decoded as TLS even without a hint: HTTPS, the lab's default TLS port, and the fixture's.
DEFAULT_TLS_PORTS = (443, 8443)
# TLS record content types (RFC 8446 section 5.1) and legacy versions seen in record headers.
_TLS_CONTENT_TYPES = {20, 21, 22, 23}


class AnalysisError(Exception):
    """The file cannot be analysed at all (missing, unreadable, not a pcap/pcapng capture)."""


# --------------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------------


class Table:
    """A small list-of-dicts table: ``.rows``, ``.columns``, text via ``str()``, HTML in Jupyter."""

    def __init__(self, rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None):
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]
        if columns is None:
            cols: list[str] = []
            for r in self.rows:
                cols.extend(k for k in r if k not in cols)
            columns = cols
        self.columns: list[str] = list(columns)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]

    def column(self, name: str) -> list[Any]:
        """All values of one column, in row order."""
        return [r.get(name) for r in self.rows]

    @staticmethod
    def _cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.6f}"
        if isinstance(v, (list, tuple)):
            return ", ".join(str(x) for x in v)
        return str(v)

    def __str__(self) -> str:
        cells = [[self._cell(r.get(c)) for c in self.columns] for r in self.rows]
        widths = [len(c) for c in self.columns]
        for row in cells:
            widths = [max(w, len(x)) for w, x in zip(widths, row, strict=False)]
        out = io.StringIO()
        out.write(
            "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=False)).rstrip()
            + "\n"
        )
        out.write("  ".join("-" * w for w in widths) + "\n")
        for row in cells:
            out.write(
                "  ".join(x.ljust(w) for x, w in zip(row, widths, strict=False)).rstrip() + "\n"
            )
        return out.getvalue().rstrip("\n")

    def __repr__(self) -> str:
        return f"<Table {len(self.rows)} rows x {len(self.columns)} columns>\n{self}"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(self._cell(r.get(c)))}</td>" for c in self.columns)
            + "</tr>"
            for r in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------------------------
# Facts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One captured TCP segment of a connection.

    ``index`` counts segments within the connection (0-based); ``frame`` is the 1-based packet
    number in the capture file (Wireshark's "No."). ``seq``/``ack`` are absolute,
    ``rel_seq``/``rel_ack`` relative to each side's ISN. ``payload_len`` comes from the IP
    length, so it is right even when the capture was truncated (``truncated``).
    """

    index: int
    time: float
    direction: str
    flags: str
    seq: int
    ack: int
    rel_seq: int
    rel_ack: int
    payload_len: int
    window: int
    options: dict = field(default_factory=dict, compare=False)
    raw: Any = field(default=None, repr=False, compare=False)
    frame: int = 0
    payload: bytes = field(default=b"", repr=False, compare=False)
    retransmission: bool = False
    truncated: bool = False
    #: Wireshark's TCP analysis of this segment, by the names of its ``tcp.analysis.*``
    #: fields: ``retransmission``, ``fast_retransmission``, ``spurious_retransmission``,
    #: ``out_of_order``, ``duplicate_ack``, ``window_update``, ``keep_alive``,
    #: ``lost_segment`` (a gap before it), ``zero_window``.
    analysis: frozenset = field(default=frozenset(), compare=False)
    #: For a duplicate ACK: which one in the row (Wireshark's ``duplicate_ack_num``).
    dup_ack_num: int = field(default=0, compare=False)
    #: SACK blocks as (left, right) edges relative to the peer's ISN (RFC 2018).
    sack: tuple = field(default=(), compare=False)
    #: The advertised window in bytes (window field << the sender's window scale).
    scaled_window: int | None = field(default=None, compare=False)

    @property
    def fast_retransmission(self) -> bool:
        return "fast_retransmission" in self.analysis

    @property
    def duplicate_ack(self) -> bool:
        return "duplicate_ack" in self.analysis

    @property
    def syn(self) -> bool:
        return "S" in self.flags

    @property
    def fin(self) -> bool:
        return "F" in self.flags

    @property
    def rst(self) -> bool:
        return "R" in self.flags

    @property
    def has_ack(self) -> bool:
        return "A" in self.flags

    @property
    def seq_len(self) -> int:
        """Sequence space consumed: payload plus one for SYN and for FIN (RFC 9293 3.4)."""
        return self.payload_len + int(self.syn) + int(self.fin)

    def label(self) -> str:
        """Short human label, e.g. ``"PA seq=1 ack=1 len=15"``."""
        text = f"{self.flags} seq={self.rel_seq}"
        if self.has_ack:
            text += f" ack={self.rel_ack}"
        return text + f" len={self.payload_len}"

    def notes(self) -> list[str]:
        """Wireshark-style remarks, e.g. ``["dup ACK #2", "SACK 4345-5793"]``."""
        out = []
        for name in _NOTE_ORDER:
            if name == "retransmission" and self.analysis & {
                "fast_retransmission",
                "spurious_retransmission",
            }:
                continue  # already said, more precisely
            if name in self.analysis:
                out.append(f"dup ACK #{self.dup_ack_num}" if name == "duplicate_ack" else
                           name.replace("_", " "))  # fmt: skip
        if self.sack:
            out.append("SACK " + " ".join(f"{a}-{b}" for a, b in self.sack))
        return out


# The order a learner reads them in (and no duplicates when several apply).
_NOTE_ORDER = (
    "fast_retransmission",
    "spurious_retransmission",
    "retransmission",
    "out_of_order",
    "lost_segment",
    "duplicate_ack",
    "window_update",
    "keep_alive",
    "zero_window",
)


@dataclass(frozen=True)
class RTTSample:
    """One round-trip time measured from a capture (RFC 6298 section 3, Karn's algorithm).

    ``segment`` was sent at ``sent``; ``ack`` (the first ACK to cover exactly its last byte)
    came back at ``acked``. Segments sent more than once give no sample: which copy would the
    ACK belong to?
    """

    segment: int
    ack: int
    sent: float
    acked: float

    @property
    def rtt(self) -> float:
        return self.acked - self.sent


def estimate_rtt(
    samples: Iterable[float], *, alpha: float = 1 / 8, beta: float = 1 / 4, k: int = 4,
    granularity: float = 0.0, min_rto: float = 1.0,
) -> list[dict[str, float]]:  # fmt: skip
    """The smoothed RTT, its variation and the RTO after each sample (RFC 6298 section 2).

    First sample R: SRTT = R, RTTVAR = R/2. Then, for each R' in order::

        RTTVAR = (1 - beta) * RTTVAR + beta * |SRTT - R'|     (DevRTT in Kurose & Ross)
        SRTT   = (1 - alpha) * SRTT + alpha * R'              (EstimatedRTT)
        RTO    = max(min_rto, SRTT + max(granularity, k * RTTVAR))

    RFC 6298 updates RTTVAR with the *old* SRTT; some textbooks update EstimatedRTT first.
    ``min_rto`` is the RFC's 1 s; Linux uses 200 ms.

    Returns:
        One dict per sample: ``sample``, ``srtt``, ``rttvar``, ``rto`` (seconds).
    """
    out: list[dict[str, float]] = []
    srtt = rttvar = 0.0
    for i, r in enumerate(samples):
        if i == 0:
            srtt, rttvar = r, r / 2
        else:
            rttvar = (1 - beta) * rttvar + beta * abs(srtt - r)
            srtt = (1 - alpha) * srtt + alpha * r
        rto = max(min_rto, srtt + max(granularity, k * rttvar))
        out.append({"sample": r, "srtt": srtt, "rttvar": rttvar, "rto": rto})
    return out


@dataclass
class Handshake:
    """The three-way handshake (RFC 9293 section 3.5), as far as it was captured."""

    syn: Segment
    syn_ack: Segment | None
    ack: Segment | None
    client_isn: int
    server_isn: int | None

    def checks(self) -> list[tuple[str, bool]]:
        """(description, passed) for each rule of the three-way handshake."""
        out = [("SYN carries no ACK flag", not self.syn.has_ack)]
        out.append(("SYN-ACK seen", self.syn_ack is not None))
        if self.syn_ack is not None:
            out.append(
                (
                    "SYN-ACK ack = client ISN + 1",
                    self.syn_ack.ack == (self.client_isn + 1) % _MOD,
                )
            )
        out.append(("final ACK seen", self.ack is not None))
        if self.ack is not None and self.server_isn is not None:
            out.append(("ACK seq = client ISN + 1", self.ack.seq == (self.client_isn + 1) % _MOD))
            out.append(("ACK ack = server ISN + 1", self.ack.ack == (self.server_isn + 1) % _MOD))
        return out

    @property
    def ok(self) -> bool:
        return all(passed for _, passed in self.checks())

    @property
    def segments(self) -> list[Segment]:
        return [s for s in (self.syn, self.syn_ack, self.ack) if s is not None]


@dataclass
class Teardown:
    """How the connection was closed with FINs (RFC 9293 section 3.6)."""

    first_closer: str
    fins: list[Segment]
    acks: list[Segment]
    merged: bool
    half_close: bool

    @property
    def segments(self) -> list[Segment]:
        return sorted({s.index: s for s in self.fins + self.acks}.values(), key=lambda s: s.index)

    @property
    def complete(self) -> bool:
        """Both FINs were sent and acknowledged."""
        return len(self.fins) == 2 and len(self.acks) == 2


@dataclass
class TLSMessage:
    """One TLS message (or opaque record) as a learner sees it.

    ``encrypted`` says whether it travelled encrypted on the wire; ``decrypted`` whether a key
    log let us read it anyway. ``segment`` is the connection's segment index where the record
    was complete (a record split over several segments belongs to the last one).
    """

    time: float
    direction: str
    record_type: str
    name: str
    fields: dict = field(default_factory=dict)
    encrypted: bool = False
    segment: int | None = None
    decrypted: bool = False
    data: bytes = field(default=b"", repr=False)


# --------------------------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------------------------


class Connection:
    """One TCP connection: both endpoints, its segments, and what can be read from them."""

    def __init__(self, stream: int, client: tuple[str, int], server: tuple[str, int]):
        self.stream = stream
        self.client = client
        self.server = server
        self.client_guessed = False
        self.segments: list[Segment] = []
        self.tls: bool = False
        self._tls_messages: list[TLSMessage] = []
        self.warnings: list[str] = []

    def __repr__(self) -> str:
        guess = " (client guessed)" if self.client_guessed else ""
        return (
            f"<Connection #{self.stream} {self.client[0]}:{self.client[1]} -> "
            f"{self.server[0]}:{self.server[1]}, {len(self.segments)} segments{guess}>"
        )

    # ---- TCP -----------------------------------------------------------------------------

    def handshake(self) -> Handshake | None:
        """The three-way handshake, or None when no SYN was captured."""
        syn = next((s for s in self.segments if s.flags == "S" and s.direction == C2S), None)
        if syn is None:
            return None
        syn_ack = next(
            (s for s in self.segments if s.direction == S2C and s.syn and s.has_ack), None
        )
        ack = None
        if syn_ack is not None:
            ack = next(
                (
                    s
                    for s in self.segments
                    if s.index > syn_ack.index
                    and s.direction == C2S
                    and s.has_ack
                    and not s.syn
                    and s.ack == (syn_ack.seq + 1) % _MOD
                ),
                None,
            )
        return Handshake(syn, syn_ack, ack, syn.seq, syn_ack.seq if syn_ack else None)

    def teardown(self) -> Teardown | None:
        """The FIN exchange, or None when nobody sent a FIN."""
        fins: list[Segment] = []
        for s in self.segments:
            if s.fin and not s.retransmission and all(f.direction != s.direction for f in fins):
                fins.append(s)
        if not fins:
            return None
        first = fins[0]
        acks: list[Segment] = []
        for fin in fins:
            want = (fin.seq + fin.seq_len) % _MOD
            a = next(
                (
                    s
                    for s in self.segments
                    if s.index > fin.index
                    and s.direction != fin.direction
                    and s.has_ack
                    and s.ack == want
                ),
                None,
            )
            if a is not None:
                acks.append(a)
        merged = len(fins) == 2 and any(a.index == fins[1].index for a in acks)
        second_fin_index = fins[1].index if len(fins) == 2 else len(self.segments)
        half_close = any(
            s.direction != first.direction and s.payload_len > 0 and not s.retransmission
            for s in self.segments[first.index + 1 : second_fin_index + 1]
        )
        closer = "client" if first.direction == C2S else "server"
        return Teardown(closer, fins, acks, merged, half_close)

    def resets(self) -> list[Segment]:
        """Every segment with the RST flag."""
        return [s for s in self.segments if s.rst]

    def retransmissions(self) -> list[Segment]:
        """Segments whose data (or SYN/FIN) had already been sent."""
        return [s for s in self.segments if s.retransmission]

    def fast_retransmissions(self) -> list[Segment]:
        """Retransmissions that followed duplicate ACKs at once (Wireshark's definition)."""
        return [s for s in self.segments if s.fast_retransmission]

    def duplicate_acks(self) -> list[Segment]:
        """ACKs that repeat the previous ACK number and window, with no data (RFC 5681 2)."""
        return [s for s in self.segments if s.duplicate_ack]

    def sack_blocks(self) -> list[tuple[Segment, tuple]]:
        """(segment, its SACK blocks) for every segment carrying the SACK option."""
        return [(s, s.sack) for s in self.segments if s.sack]

    def data_direction(self) -> str:
        """The direction that carried more payload bytes (``c->s`` on a tie)."""
        sent = {C2S: 0, S2C: 0}
        for s in self.segments:
            sent[s.direction] += s.payload_len
        return S2C if sent[S2C] > sent[C2S] else C2S

    def rtt_samples(self, direction: str | None = None) -> list[RTTSample]:
        """Round-trip times of the segments sent in ``direction`` (default: the data's).

        A sample is taken when an ACK first acknowledges exactly up to the end of a segment
        (as Wireshark's ``tcp.analysis.ack_rtt``), except for a segment sent twice (Karn).
        The capture point matters: at the sender, this is the path's RTT; at the receiver, it
        is only the receiver's own delay in acknowledging.
        """
        direction = direction or self.data_direction()
        sent: dict[int, list[Segment]] = {}
        for s in self.segments:
            if s.direction == direction and s.seq_len > 0 and not s.rst:
                sent.setdefault((s.seq + s.seq_len) % _MOD, []).append(s)
        ranges = [(s.seq, s.seq + s.seq_len) for s in self.segments
                  if s.direction == direction and s.retransmission]  # fmt: skip
        out: list[RTTSample] = []
        used: set[int] = set()
        for a in self.segments:
            if a.direction == direction or not a.has_ack or a.ack in used:
                continue
            copies = [s for s in sent.get(a.ack, []) if s.index < a.index]
            if not copies:
                continue
            used.add(a.ack)
            seg = copies[0]
            if len(copies) > 1 or any(lo < seg.seq + seg.seq_len and seg.seq < hi
                                      for lo, hi in ranges):  # fmt: skip
                continue  # Karn: ambiguous
            out.append(RTTSample(seg.index, a.index, seg.time, a.time))
        return out

    def rtt_table(self, direction: str | None = None, **kwargs: Any) -> Table:
        """Each RTT sample with EstimatedRTT, DevRTT and the RTO after it, in milliseconds.

        Keyword arguments go to `estimate_rtt` (``alpha``, ``beta``, ``min_rto`` ...).
        """
        samples = self.rtt_samples(direction)
        rows = []
        for smp, est in zip(samples, estimate_rtt([x.rtt for x in samples], **kwargs),
                            strict=True):  # fmt: skip
            rows.append(
                {
                    "time": round(smp.acked * 1000, 3),
                    "segment": smp.segment,
                    "ack": smp.ack,
                    "SampleRTT ms": round(est["sample"] * 1000, 3),
                    "EstimatedRTT ms": round(est["srtt"] * 1000, 3),
                    "DevRTT ms": round(est["rttvar"] * 1000, 3),
                    "RTO ms": round(est["rto"] * 1000, 3),
                }
            )
        cols = ["time", "segment", "ack", "SampleRTT ms", "EstimatedRTT ms", "DevRTT ms", "RTO ms"]
        return Table(rows, cols)

    def bytes_in_flight(self, direction: str | None = None) -> list[tuple[float, int]]:
        """(time, bytes sent but not yet acknowledged) after each data segment of ``direction``.

        Sequence-based: highest sequence number sent minus the highest ACK received so far,
        less what SACK blocks report as received (Wireshark's ``bytes_in_flight``, RFC 6675's
        "pipe" without the retransmission bookkeeping).
        """
        direction = direction or self.data_direction()
        high = acked = None
        sacked: tuple = ()
        out: list[tuple[float, int]] = []
        for s in self.segments:
            if s.direction == direction:
                if s.seq_len:
                    end = s.rel_seq + s.seq_len
                    high = end if high is None else max(high, end)
                    if s.payload_len and acked is not None:
                        gone = sum(b - a for a, b in sacked if a >= acked)
                        out.append((s.time, max(0, high - acked - gone)))
            elif s.has_ack:
                acked = s.rel_ack if acked is None else max(acked, s.rel_ack)
                sacked = s.sack
        return out

    def phase(self, seg: Segment) -> str:
        """``"handshake"``, ``"data"``, ``"teardown"`` or ``"reset"`` for one segment."""
        hs = self.handshake()
        if seg.rst:
            return "reset"
        if hs is not None and seg in hs.segments:
            return "handshake"
        td = self.teardown()
        if td is not None and seg.index >= td.fins[0].index:
            return "teardown"
        if seg.syn:
            return "handshake"
        return "data"

    def segment_table(self) -> Table:
        """One row per segment, the way Wireshark's packet list would show them."""
        names = self._tls_names_by_segment()
        rows = []
        for s in self.segments:
            note = s.notes()
            if s.retransmission and not any("retransmission" in n for n in note):
                note.insert(0, "retransmission")
            if s.truncated:
                note.append("truncated")
            rows.append(
                {
                    "#": s.index,
                    "time": round(s.time, 6),
                    "dir": s.direction,
                    "flags": s.flags,
                    "seq": s.rel_seq,
                    "ack": s.rel_ack if s.has_ack else None,
                    "len": s.payload_len,
                    "win": s.window,
                    "tls": ", ".join(names.get(s.index, [])),
                    "note": ", ".join(note),
                }
            )
        return Table(rows, ["#", "time", "dir", "flags", "seq", "ack", "len", "win", "tls", "note"])

    # ---- TLS and application data --------------------------------------------------------

    def tls_messages(self) -> list[TLSMessage]:
        """TLS messages in capture order (empty for a plaintext connection)."""
        return list(self._tls_messages)

    def _tls_names_by_segment(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for m in self._tls_messages:
            if m.segment is not None:
                out.setdefault(m.segment, []).append(m.name)
        return out

    def app_lines(self) -> list[tuple[str, str]]:
        """labchat/1 lines as (direction, text): the plaintext stream, or decrypted TLS data.

        An encrypted connection without keys gives no lines (see ``tls_messages()``).
        """
        chunks: list[tuple[str, bytes]] = []
        if self.tls:
            for m in self._tls_messages:
                if m.name == "ApplicationData" and m.decrypted:
                    chunks.append((m.direction, m.data))
        else:
            for s in self.segments:
                if s.payload_len and not s.retransmission and s.payload:
                    chunks.append((s.direction, s.payload))
        buffers = {C2S: b"", S2C: b""}
        lines: list[tuple[str, str]] = []
        for direction, data in chunks:
            buffers[direction] += data
            while b"\n" in buffers[direction]:
                line, buffers[direction] = buffers[direction].split(b"\n", 1)
                lines.append((direction, line.rstrip(b"\r").decode("utf-8", "replace")))
        for direction, rest in buffers.items():
            if rest:
                lines.append((direction, rest.decode("utf-8", "replace")))
        return lines


# --------------------------------------------------------------------------------------------
# Capture and loading
# --------------------------------------------------------------------------------------------


class Capture:
    """A loaded capture file: its packets, its TCP connections and what looked odd."""

    def __init__(self, path: Path, packets: list, warnings: list[str]):
        self.path = path
        self.packets = packets
        self.warnings = warnings
        self._connections: list[Connection] = []

    def __repr__(self) -> str:
        return (
            f"<Capture {self.path.name}: {len(self.packets)} packets, "
            f"{len(self._connections)} TCP connections, {len(self.warnings)} warnings>"
        )

    def connections(self) -> list[Connection]:
        """TCP connections in order of their first packet (tshark's ``tcp.stream`` order)."""
        return list(self._connections)

    def connection(self, n: int = 0) -> Connection:
        """The n-th TCP connection.

        Raises:
            AnalysisError: there is no such connection.
        """
        if not 0 <= n < len(self._connections):
            raise AnalysisError(
                f"{self.path.name}: no TCP connection #{n} "
                f"({len(self._connections)} connection(s) in the capture)"
            )
        return self._connections[n]

    def connection_table(self) -> Table:
        """One row per connection: endpoints, segment count, how it opened and closed."""
        rows = []
        for c in self._connections:
            hs, td = c.handshake(), c.teardown()
            if c.resets():
                closed = "reset"
            elif td is None:
                closed = "open"
            else:
                closed = f"FIN by {td.first_closer}"
            rows.append(
                {
                    "stream": c.stream,
                    "client": f"{c.client[0]}:{c.client[1]}",
                    "server": f"{c.server[0]}:{c.server[1]}",
                    "segments": len(c.segments),
                    "handshake": "none" if hs is None else ("ok" if hs.ok else "incomplete"),
                    "closed": closed,
                    "tls": "yes" if c.tls else "",
                }
            )
        return Table(rows)


def _scapy():
    """Import scapy lazily and quietly (it is slow to import and chatty on stderr)."""
    import logging

    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    logging.getLogger("scapy.loading").setLevel(logging.ERROR)
    from scapy import all as scapy_all

    scapy_all.load_layer("tls")
    return scapy_all


def _read_packets(path: Path, warnings: list[str]) -> list:
    sc = _scapy()
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read ({exc.strerror or exc})") from None
    known = {
        b"\xd4\xc3\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\x3c\x4d",
        b"\x0a\x0d\x0d\x0a",
    }
    if magic not in known:
        raise AnalysisError(f"{path}: not a pcap or pcapng capture file")
    packets: list = []
    try:
        reader = sc.PcapReader(str(path))
    except Exception as exc:  # scapy raises several kinds for a broken header
        raise AnalysisError(f"{path}: not a readable capture ({exc})") from None
    try:
        while True:
            try:
                pkt = reader.read_packet()
            except EOFError:
                break
            if pkt is None:
                break
            packets.append(pkt)
    except Exception as exc:
        warnings.append(
            f"capture ends early after {len(packets)} packets (truncated or damaged file: {exc})"
        )
    finally:
        try:
            reader.close()
        except Exception:
            pass
    return packets


def _flags(tcp) -> str:
    # Order as learners read it: S, F, R, P, A, U, E, C  -> "SA", "PA", "FA", "RA" ...
    value = int(tcp.flags)
    letters = ""
    for bit, ch in ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x10, "A")):
        if value & bit:
            letters += ch
    for bit, ch in ((0x20, "U"), (0x40, "E"), (0x80, "C")):
        if value & bit:
            letters += ch
    return letters or "."


def _options(tcp) -> dict:
    out: dict[str, Any] = {}
    try:
        opts = tcp.options
    except Exception:
        return out
    for opt in opts or []:
        try:
            name, value = opt
        except (TypeError, ValueError):
            continue
        if name == "MSS":
            out["mss"] = value
        elif name == "SAckOK":
            out["sack_perm"] = True
        elif name == "Timestamp":
            out["timestamps"] = tuple(value)
        elif name == "WScale":
            out["wscale"] = value
        elif name == "SAck":
            out["sack"] = tuple(value)
        elif name not in ("NOP", "EOL"):
            out[str(name)] = value
    return out


def _tcp_payload_len(ip, tcp) -> int:
    """Payload length from the IP header (right even when the capture was cut short)."""
    sc = _scapy()
    doff = (tcp.dataofs or 5) * 4
    if isinstance(ip, sc.IP):
        total = ip.len if ip.len is not None else len(ip)
        return max(0, total - ip.ihl * 4 - doff)
    plen = ip.plen if ip.plen is not None else len(ip.payload)
    ext = len(bytes(ip.payload)) - len(bytes(tcp)) if ip.payload is not tcp else 0
    return max(0, plen - max(0, ext) - doff)


class _Builder:
    """Turns packets into connections (one pass, tshark's stream numbering)."""

    def __init__(self, warnings: list[str]):
        self.warnings = warnings
        self.conns: list[Connection] = []
        self.by_key: dict[tuple, Connection] = {}
        self.base: dict[tuple[int, str], int] = {}  # (stream, direction) -> base seq
        self.next_seq: dict[tuple[int, str], int] = {}  # highest seq+len seen

    def add(self, frame: int, pkt, t0: float) -> None:
        sc = _scapy()
        ip = pkt.getlayer(sc.IP) or pkt.getlayer(sc.IPv6)
        if ip is None or not ip.haslayer(sc.TCP):
            return
        tcp = ip[sc.TCP]
        try:
            src, dst = (ip.src, tcp.sport), (ip.dst, tcp.dport)
            flags = _flags(tcp)
        except Exception:
            self.warnings.append(f"frame {frame}: TCP header cut short, skipped")
            return
        key = tuple(sorted([src, dst]))
        conn = self.by_key.get(key)
        if conn is not None and flags == "S" and conn.segments:
            first = conn.segments[0]
            closed = any(s.fin or s.rst for s in conn.segments)
            if closed and not (first.syn and first.seq == tcp.seq):
                conn = None  # port reuse: a new connection on the same 4-tuple
        if conn is None:
            if flags == "S":
                client, server = src, dst
                guessed = False
            elif flags.startswith("SA") or flags == "SA":
                client, server = dst, src
                guessed = False
            else:
                # No SYN captured: the lower port is most likely the server's (well-known).
                client, server = (src, dst) if src[1] > dst[1] else (dst, src)
                guessed = True
            conn = Connection(len(self.conns), client, server)
            conn.client_guessed = guessed
            self.conns.append(conn)
            self.by_key[key] = conn
        direction = C2S if src == conn.client else S2C
        other = S2C if direction == C2S else C2S
        seq, ack = int(tcp.seq), int(tcp.ack)
        bkey = (conn.stream, direction)
        if bkey not in self.base:
            self.base[bkey] = seq if "S" in flags else (seq - 1) % _MOD
        payload_len = _tcp_payload_len(ip, tcp)
        payload = bytes(tcp.payload)[:payload_len] if payload_len else b""
        truncated = len(payload) < payload_len
        if "A" in flags and (conn.stream, other) not in self.base:
            # Wireshark takes the peer's base from the first ACK it sees for it.
            self.base[(conn.stream, other)] = (ack - 1) % _MOD
        rel_seq = (seq - self.base[bkey]) % _MOD
        rel_ack = (ack - self.base[(conn.stream, other)]) % _MOD if "A" in flags else 0
        seq_len = payload_len + ("S" in flags) + ("F" in flags)
        end = rel_seq + seq_len
        high = self.next_seq.get(bkey)
        retrans = high is not None and seq_len > 0 and end <= high
        self.next_seq[bkey] = max(high or 0, end)
        seg = Segment(
            index=len(conn.segments),
            time=float(pkt.time) - t0,
            direction=direction,
            flags=flags,
            seq=seq,
            ack=ack,
            rel_seq=rel_seq,
            rel_ack=rel_ack,
            payload_len=payload_len,
            window=int(tcp.window),
            options=_options(tcp),
            raw=pkt,
            frame=frame,
            payload=payload,
            retransmission=retrans,
            truncated=truncated,
        )
        conn.segments.append(seg)
        if retrans:
            conn.warnings.append(f"segment {seg.index} (frame {frame}) is a retransmission")
        if truncated and not any("truncated" in w for w in conn.warnings):
            conn.warnings.append(
                "capture truncated (snaplen): payload bytes missing, lengths taken from IP header"
            )


# --------------------------------------------------------------------------------------------
# Wireshark's TCP analysis (epan/dissectors/packet-tcp.c, tcp_analyze_sequence_number)
# --------------------------------------------------------------------------------------------


def _lt(a: int, b: int) -> bool:
    """a before b in sequence space (RFC 9293 3.4: comparisons are modulo 2**32)."""
    return ((a - b) % _MOD) >= (1 << 31)


class _Flow:
    """Per-direction state, named as in packet-tcp.c."""

    def __init__(self) -> None:
        self.nextseq = 0  # 0: nothing seen yet (as in Wireshark)
        self.nextseqtime = 0.0
        self.lastack = 0
        self.lastacktime = 0.0
        self.dupacknum = 0
        self.window: int | None = None
        self.lastflags: frozenset = frozenset()
        self.scale = -1  # -1 unknown (no SYN seen), else the shift this side announced


def _window_scales(conn: Connection) -> dict[str, int]:
    """The window shift each side uses: RFC 7323 2.2, only if both SYNs carried the option."""
    syn = next((s for s in conn.segments if s.syn and not s.has_ack), None)
    synack = next((s for s in conn.segments if s.syn and s.has_ack), None)
    if syn is None or synack is None:
        return {C2S: -1, S2C: -1}
    a, b = syn.options.get("wscale"), synack.options.get("wscale")
    if a is None or b is None:
        return {C2S: 0, S2C: 0}
    return {syn.direction: min(int(a), 14), synack.direction: min(int(b), 14)}


def _analyse_tcp(conn: Connection) -> None:
    """Flag each segment the way Wireshark's ``tcp.analysis.*`` fields do, and add SACK blocks.

    The rules, in Wireshark's order: lost segment (a gap), keep-alive, window update, duplicate
    ACK (no data, same ACK number, same window, seq at the next expected byte); then, for a
    segment carrying data, SYN or FIN whose sequence number does not advance: spurious
    retransmission (already acknowledged), fast retransmission (at least two duplicate ACKs
    asking for exactly this byte, less than 20 ms ago), out-of-order (within one RTT of the
    highest segment, not ending where it does), otherwise retransmission.
    """
    scales = _window_scales(conn)
    flows = {C2S: _Flow(), S2C: _Flow()}
    first_rtt = 0.0
    last_syn = None
    bases: dict[str, int] = {}
    for seg in conn.segments:
        if seg.direction not in bases:
            bases[seg.direction] = (seg.seq - seg.rel_seq) % _MOD
    out: list[Segment] = []
    for seg in conn.segments:
        fwd = flows[seg.direction]
        rev = flows[S2C if seg.direction == C2S else C2S]
        t, seq, ack, seglen = seg.time, seg.seq, seg.ack, seg.payload_len
        control = seg.syn or seg.fin or seg.rst
        shift = scales[seg.direction]
        window = seg.window if seg.syn or shift < 0 else seg.window << shift
        ta: set[str] = set()
        dup_num = 0
        if seg.syn and not seg.has_ack:
            last_syn = t
        elif seg.flags == "A" and not first_rtt and last_syn is not None:
            first_rtt = t - last_syn  # Wireshark's ts_first_rtt: SYN to the handshake's ACK
        skip_dup = False
        if seglen == 1 and seq == fwd.nextseq and rev.window == 0:
            ta.add("zero_window_probe")
            skip_dup = True
        if not skip_dup:
            if window == 0 and not control:
                ta.add("zero_window")
            if fwd.nextseq and _lt(fwd.nextseq, seq) and not seg.rst:
                ta.add("lost_segment")
            if seglen <= 1 and seq == (fwd.nextseq - 1) % _MOD and not control:
                ta.add("keep_alive")
            same = seglen == 0 and seq == fwd.nextseq and ack == fwd.lastack and not control
            if same and window and window != fwd.window:
                ta.add("window_update")
            if same and window and window == fwd.window:
                if "keep_alive" in rev.lastflags:
                    ta.add("keep_alive_ack")
                else:
                    fwd.dupacknum = 1 if fwd.dupacknum < 0 else fwd.dupacknum + 1
                    ta.add("duplicate_ack")
                    dup_num = fwd.dupacknum
        if ack != fwd.lastack:
            fwd.dupacknum = 0
        if (seglen > 0 or seg.syn or seg.fin) and "keep_alive" not in ta:
            not_advanced = bool(fwd.nextseq) and _lt(seq, fwd.nextseq)
            if seglen > 1 and (fwd.nextseq - 1) % _MOD == seq:
                not_advanced = False
            extra = 1 if (seg.syn or seg.fin) else 0
            if seglen > 0 and rev.lastack and not _lt(rev.lastack, (seq + seglen) % _MOD):
                # Data already acknowledged; Wireshark shows it as a retransmission too.
                ta.update(("spurious_retransmission", "retransmission"))
            elif (
                not_advanced
                and rev.dupacknum >= 2
                and rev.lastack == seq
                and t - rev.lastacktime < 0.020
            ):
                # Wireshark shows a fast retransmission as a retransmission too.
                ta.update(("fast_retransmission", "retransmission"))
            elif (
                not_advanced
                and t - fwd.nextseqtime < (first_rtt or 0.003)
                and fwd.nextseq != (seq + seglen + extra) % _MOD
            ):
                ta.add("out_of_order")
            elif not_advanced:
                ta.add("retransmission")
        nextseq = (seq + seglen + (1 if (seg.syn or seg.fin) else 0)) % _MOD
        if (not fwd.nextseq or _lt(fwd.nextseq, nextseq)) and "zero_window_probe" not in ta:
            fwd.nextseq, fwd.nextseqtime = nextseq, t
        fwd.window, fwd.lastack, fwd.lastacktime = window, ack, t
        fwd.lastflags = frozenset(ta)
        sack = ()
        raw = seg.options.get("sack")
        if raw:
            peer = S2C if seg.direction == C2S else C2S
            base = bases.get(peer, (ack - 1) % _MOD)
            edges = [(int(v) - base) % _MOD for v in raw]
            sack = tuple(zip(edges[0::2], edges[1::2], strict=False))
        out.append(
            replace(
                seg,
                analysis=frozenset(ta),
                dup_ack_num=dup_num,
                sack=sack,
                scaled_window=window if shift >= 0 or seg.syn else None,
            )
        )
    conn.segments = out


def _looks_like_tls(data: bytes) -> bool:
    # Record header: content type, major version 3, minor 0..4 (RFC 8446 section 5.1).
    return len(data) >= 3 and data[0] in _TLS_CONTENT_TYPES and data[1] == 3 and data[2] <= 4


def load(
    path: str | Path,
    *,
    keylog: str | Path | None = None,
    tls_ports: Iterable[int] = (),
    embedded_keys: bool = True,
) -> Capture:
    """Read a pcap or pcapng capture and work out its TCP connections and TLS messages.

    Args:
        path: the capture file.
        keylog: an NSS key log (``SSLKEYLOGFILE`` / ``SSLContext.keylog_filename``); when
            given, TLS 1.2 and 1.3 application data is decrypted.
        tls_ports: extra server ports to decode as TLS. Ports 443 and 8443 are always tried,
            and any connection whose first client bytes look like a TLS record is too.
        embedded_keys: use a key log embedded in a pcapng (a Decryption Secrets Block, as
            labchat writes them) the way Wireshark does. False shows what an eavesdropper
            without the keys sees, even in a labchat capture.

    Returns:
        A :class:`Capture`; anything odd in it is listed in ``Capture.warnings``.

    Raises:
        AnalysisError: the file is missing, unreadable or not a pcap/pcapng capture.
    """
    path = Path(path)
    warnings: list[str] = []
    if keylog is not None and not Path(keylog).is_file():
        raise AnalysisError(f"{keylog}: key log file not found")
    packets = _read_packets(path, warnings)
    cap = Capture(path, packets, warnings)
    if not packets:
        warnings.append("the capture holds no packets")
        return cap
    builder = _Builder(warnings)
    t0 = float(packets[0].time)
    for frame, pkt in enumerate(packets, start=1):
        try:
            builder.add(frame, pkt, t0)
        except Exception as exc:  # one odd packet must not spoil the rest
            warnings.append(f"frame {frame}: could not decode TCP ({type(exc).__name__}: {exc})")
    cap._connections = builder.conns
    for conn in builder.conns:
        try:
            _analyse_tcp(conn)
        except Exception as exc:  # the facts above stay usable without the analysis
            warnings.append(
                f"connection #{conn.stream}: TCP analysis failed ({type(exc).__name__}: {exc})"
            )
    if not builder.conns:
        warnings.append("no TCP connections in the capture")
        return cap

    ports = set(DEFAULT_TLS_PORTS) | {int(p) for p in tls_ports}
    for conn in cap._connections:
        first = next((s for s in conn.segments if s.direction == C2S and s.payload), None)
        if conn.server[1] in ports or (first is not None and _looks_like_tls(first.payload)):
            conn.tls = True
    tls_conns = [c for c in cap._connections if c.tls]
    if tls_conns:
        try:
            _attach_tls(cap, tls_conns, keylog, embedded_keys)
        except Exception as exc:
            warnings.append(f"TLS decoding failed: {type(exc).__name__}: {exc}")
    for conn in cap._connections:
        for w in conn.warnings:
            warnings.append(f"connection #{conn.stream}: {w}")
        if conn.client_guessed:
            warnings.append(
                f"connection #{conn.stream}: no SYN captured, client guessed from port numbers"
            )
    return cap


# --------------------------------------------------------------------------------------------
# TLS dissection (scapy's TLS layer over TCPSession reassembly)
# --------------------------------------------------------------------------------------------

_RECORD_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
_NAME_FIXES = {
    "HelloRetryRequest": "HelloRetryRequest",
    "EncryptedExtensions": "EncryptedExtensions",
}


def _msg_name(msg) -> str:
    name = type(msg).__name__
    for prefix in ("TLS13", "TLS"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return _NAME_FIXES.get(name, name)


def _cipher_name(code: int) -> str:
    from scapy.layers.tls.crypto.suites import _tls_cipher_suites

    return _tls_cipher_suites.get(code, f"0x{code:04x}")


def _group_name(code: int) -> str:
    from scapy.layers.tls.crypto.groups import _tls_named_groups

    return _tls_named_groups.get(code, f"0x{code:04x}")


def _version_name(code: int) -> str:
    from scapy.layers.tls.basefields import _tls_version

    return _tls_version.get(code, f"0x{code:04x}")


def _ext(msg, cls_name: str):
    for e in getattr(msg, "ext", None) or []:
        if type(e).__name__ == cls_name:
            return e
    return None


def _cert_fields(der: bytes) -> dict:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    out: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        out["san"] = [str(v.value) for v in san]
    except x509.ExtensionNotFound:
        pass
    return out


def _msg_fields(name: str, msg) -> dict:
    """The few fields of a handshake message a learner should look at."""
    out: dict[str, Any] = {}
    if name == "ClientHello":
        sv = _ext(msg, "TLS_Ext_SupportedVersion_CH")
        versions = list(sv.versions) if sv is not None and sv.versions else [msg.version]
        out["versions"] = [_version_name(v) for v in versions]
        out["cipher_suites"] = [_cipher_name(c) for c in (msg.ciphers or [])]
        sni = _ext(msg, "TLS_Ext_ServerName")
        if sni is not None and sni.servernames:
            out["sni"] = sni.servernames[0].servername.decode("ascii", "replace")
        groups = _ext(msg, "TLS_Ext_SupportedGroups")
        if groups is not None:
            out["groups"] = [_group_name(g) for g in groups.groups or []]
        ks = _ext(msg, "TLS_Ext_KeyShare_CH")
        if ks is not None:
            out["key_share"] = [_group_name(k.group) for k in ks.client_shares or []]
    elif name in ("ServerHello", "HelloRetryRequest"):
        sv = _ext(msg, "TLS_Ext_SupportedVersion_SH")
        out["version"] = _version_name(sv.version if sv is not None else msg.version)
        out["cipher_suite"] = _cipher_name(msg.cipher)
        ks = _ext(msg, "TLS_Ext_KeyShare_SH")
        if ks is not None and getattr(ks, "server_share", None) is not None:
            out["key_share"] = _group_name(ks.server_share.group)
    elif name == "Certificate":
        entries = getattr(msg, "certs", None) or []
        if entries:
            first = entries[0]
            cert = first.cert[1] if hasattr(first, "cert") else first[1]
            out.update(_cert_fields(bytes(cert.der)))
            out["chain_length"] = len(entries)
    elif name == "ClientKeyExchange":
        body = bytes(msg)[4:]
        if body:
            # ECDHE: one length byte then the public point (RFC 8422 section 5.7).
            key = body[1 : 1 + body[0]]
            out["public_key_len"] = len(key)
            out["public_key"] = key.hex()
    elif name == "ServerKeyExchange":
        params = getattr(msg, "params", None)
        curve = getattr(params, "named_curve", None)
        if curve is not None:
            out["group"] = _group_name(curve)
    elif name == "Alert":
        from scapy.layers.tls.record import _tls_alert_description, _tls_alert_level

        out["level"] = _tls_alert_level.get(msg.level, msg.level)
        out["description"] = _tls_alert_description.get(msg.descr, msg.descr)
    return out


def _record_messages(layer, ccs_seen: bool) -> tuple[list[tuple[str, Any]], bool, bool, str]:
    """(name, msg) pairs of one record, whether encrypted on the wire, decrypted, record type."""
    sc = _scapy()
    from scapy.layers.tls.record_tls13 import TLS13

    rtype = int(getattr(layer, "type", 23) or 23)
    if isinstance(layer, TLS13):
        inner = getattr(layer, "inner", None)
        if inner is None or not getattr(inner, "msg", None):
            return [("ApplicationData", None)], True, False, "application_data"
        return [(_msg_name(m), m) for m in inner.msg], True, True, "application_data"
    msgs = list(getattr(layer, "msg", None) or [])
    encrypted = rtype == 23 or (ccs_seen and rtype in (21, 22))
    decrypted = encrypted and bool(getattr(layer, "iv", b"") or getattr(layer, "mac", b""))
    out = []
    for m in msgs:
        if isinstance(m, sc.Raw) or type(m).__name__ == "_TLSEncryptedContent":
            out.append(("EncryptedHandshake" if rtype == 22 else _RECORD_TYPES.get(rtype, "?"), m))
        else:
            out.append((_msg_name(m), m))
    if not out:
        out.append((_RECORD_TYPES.get(rtype, f"type {rtype}"), None))
    return out, encrypted, decrypted, _RECORD_TYPES.get(rtype, str(rtype))


def _attach_tls(cap: Capture, conns: list[Connection], keylog, embedded_keys: bool) -> None:
    """Dissect (and with a key log, decrypt) the TLS records of ``conns``."""
    sc = _scapy()
    from scapy.layers.tls.record import TLS
    from scapy.layers.tls.record_sslv2 import SSLv2
    from scapy.layers.tls.record_tls13 import TLS13

    # scapy only decodes TLS on 443 unless told. The bindings are global, so they are undone
    # below: left in place, every later scapy read of these ports would dissect TLS (and reuse
    # TLS session state), which changes what unrelated code sees as the raw payload.
    bound = sorted({c.server[1] for c in conns} - {443})
    for port in bound:
        sc.bind_layers(sc.TCP, TLS, sport=port)
        sc.bind_layers(sc.TCP, TLS, dport=port)
    by_key = {(c.client, c.server): c for c in conns}
    old = (sc.conf.tls_session_enable, getattr(sc.conf, "tls_nss_filename", None))
    sc.conf.tls_session_enable = keylog is not None
    sc.conf.tls_nss_filename = str(keylog) if keylog is not None else None
    try:
        if embedded_keys:
            pkts = sc.sniff(offline=str(cap.path), session=sc.TCPSession, quiet=True)
        else:  # scapy reads a pcapng's Decryption Secrets Block by itself: read a copy without
            with tempfile.TemporaryDirectory(prefix="labchat-nokeys-") as tmp:
                bare = strip_secrets(cap.path, Path(tmp) / "capture.pcapng")
                pkts = sc.sniff(offline=str(bare), session=sc.TCPSession, quiet=True)
    finally:
        sc.conf.tls_session_enable, sc.conf.tls_nss_filename = old
        # scapy keeps every TLS session it saw (with its keys) in a global registry, keyed by
        # addresses and ports. Captures made in fresh namespaces reuse the same 4-tuples, so
        # a later, unrelated read of "ciphertext" would come back decrypted. Forget them.
        sc.conf.tls_sessions.sessions.clear()
        for port in bound:
            sc.split_layers(sc.TCP, TLS, sport=port)
            sc.split_layers(sc.TCP, TLS, dport=port)
    t0 = float(cap.packets[0].time)
    ccs: dict[tuple[int, str], bool] = {}
    for pkt in pkts:
        ip = pkt.getlayer(sc.IP) or pkt.getlayer(sc.IPv6)
        if ip is None or not ip.haslayer(sc.TCP):
            continue
        tcp = ip[sc.TCP]
        src, dst = (ip.src, tcp.sport), (ip.dst, tcp.dport)
        conn = by_key.get((src, dst)) or by_key.get((dst, src))
        if conn is None:
            continue
        direction = C2S if src == conn.client else S2C
        t = float(pkt.time) - t0
        # TCPSession keeps the time of the segment that completed the record.
        seg = None
        for s in conn.segments:
            if s.direction == direction and abs(s.time - t) < 1e-6 and s.payload_len:
                seg = s
        layer = tcp.payload
        while isinstance(layer, (TLS, TLS13, SSLv2)):
            key = (conn.stream, direction)
            try:
                msgs, encrypted, decrypted, rtype = _record_messages(layer, ccs.get(key, False))
            except Exception as exc:
                conn.warnings.append(f"TLS record at {t:.6f}s not understood: {exc}")
                break
            for name, msg in msgs:
                fields: dict[str, Any] = {}
                data = b""
                if msg is not None and (decrypted or not encrypted):
                    try:
                        fields = _msg_fields(name, msg)
                    except Exception as exc:
                        fields = {"note": f"fields not decoded ({type(exc).__name__})"}
                    if name == "ApplicationData":
                        data = bytes(getattr(msg, "data", b"") or b"")
                if encrypted and not decrypted:
                    name = "ApplicationData" if isinstance(layer, TLS13) else name
                if name == "ChangeCipherSpec":
                    ccs[key] = True
                conn._tls_messages.append(
                    TLSMessage(
                        time=t,
                        direction=direction,
                        record_type=rtype,
                        name=name,
                        fields=fields,
                        encrypted=encrypted,
                        segment=seg.index if seg is not None else None,
                        decrypted=decrypted,
                        data=data,
                    )
                )
            layer = layer.payload
        rest = bytes(layer) if isinstance(layer, (sc.Raw, sc.Padding)) else b""
        while len(rest) >= 5 and _looks_like_tls(rest):
            # Records scapy left undissected (TLS 1.3 without keys): opaque, by header only.
            rlen = int.from_bytes(rest[3:5], "big")
            conn._tls_messages.append(
                TLSMessage(
                    time=t,
                    direction=direction,
                    record_type=_RECORD_TYPES.get(rest[0], str(rest[0])),
                    name="ApplicationData" if rest[0] == 23 else _RECORD_TYPES[rest[0]],
                    encrypted=rest[0] == 23,
                    segment=seg.index if seg is not None else None,
                )
            )
            rest = rest[5 + rlen :]
    for conn in conns:
        if keylog is not None and any(m.encrypted and not m.decrypted for m in conn._tls_messages):
            conn.warnings.append("some TLS records stay encrypted (no matching key in the key log)")


# --------------------------------------------------------------------------------------------
# TLS summaries
# --------------------------------------------------------------------------------------------

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
