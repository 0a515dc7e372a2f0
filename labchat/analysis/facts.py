"""The facts a capture yields: segments, RTT samples, handshake, teardown, TLS messages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .tcpoptions import decode_options, options_dict

__all__ = [
    "C2S",
    "LINUX_RTO_MIN",
    "MOD",
    "S2C",
    "Handshake",
    "RTTSample",
    "Segment",
    "TLSMessage",
    "Teardown",
    "endpoint",
    "estimate_rtt",
]

C2S = "c->s"
S2C = "s->c"
MOD = 1 << 32


def endpoint(addr: tuple[str, int]) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::1]:5050``), as Wireshark writes it."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(slots=True)
class Segment:
    """One captured TCP segment of a connection.

    ``index`` counts segments within the connection (0-based); ``frame`` is the 1-based packet
    number in the capture file (Wireshark's "No."). ``seq``/``ack`` are absolute,
    ``rel_seq``/``rel_ack`` relative to each side's ISN. ``payload_len`` comes from the IP
    length, so it is right even when the capture was truncated (``truncated``); when the IP
    length was 0 (TCP segmentation offload) it comes from the frame (``length_from_frame``).

    The payload and the options are read from the capture file when asked for, so a segment
    costs a few hundred bytes however large its payload. Segments are facts: treat them as
    read-only (``dataclasses.replace`` makes a changed copy).
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
    #: The window field as sent (raw); see ``scaled_window`` for the window in bytes.
    window: int
    frame: int = 0
    truncated: bool = False
    #: Wireshark's TCP analysis of this segment, by the names of its ``tcp.analysis.*``
    #: fields: ``retransmission``, ``fast_retransmission``, ``spurious_retransmission``,
    #: ``out_of_order``, ``duplicate_ack``, ``lost_segment`` (a gap before it),
    #: ``ack_lost_segment`` (it acknowledges data never seen), ``zero_window``,
    #: ``zero_window_probe``, ``zero_window_probe_ack``, ``window_update``, ``window_full``,
    #: ``keep_alive``, ``keep_alive_ack``, ``reused_ports``.
    analysis: frozenset = field(default=frozenset(), compare=False)
    #: For a duplicate ACK: which one in the row (Wireshark's ``duplicate_ack_num``).
    dup_ack_num: int = field(default=0, compare=False)
    #: SACK blocks as (left, right) edges relative to the peer's ISN (RFC 2018).
    sack: tuple = field(default=(), compare=False)
    #: The advertised window in bytes (window field << the sender's window scale), or None
    #: when the scale is unknown (no SYN captured); Wireshark's ``tcp.window_size``.
    scaled_window: int | None = field(default=None, compare=False)
    #: The IP length was 0 (TCP segmentation offload): ``payload_len`` is the frame's.
    length_from_frame: bool = field(default=False, compare=False)
    #: The whole frame's length on the wire (all headers included).
    frame_len: int = field(default=0, repr=False, compare=False)
    #: TCP header fields for the header diagram: data offset (bytes), the 12 bits after it
    #: (4 reserved, RFC 9293 section 3.1, then CWR ... FIN),
    #: checksum, urgent pointer and ports (source, destination).
    header_len: int = field(default=20, repr=False, compare=False)
    flag_bits: int = field(default=0, repr=False, compare=False)
    checksum: int = field(default=0, repr=False, compare=False)
    urgent: int = field(default=0, repr=False, compare=False)
    ports: tuple = field(default=(0, 0), repr=False, compare=False)
    #: Where the bytes are: the capture's Source and the TCP header's offset in it.
    source: Any = field(default=None, repr=False, compare=False)
    tcp_offset: int = field(default=0, repr=False, compare=False)
    captured: int = field(default=0, repr=False, compare=False)

    def __hash__(self) -> int:
        return hash((self.frame, self.index, self.seq, self.direction))

    @property
    def option_bytes(self) -> bytes:
        """The raw TCP options (as captured; fewer when the snaplen cut the header)."""
        if self.source is None or self.header_len <= 20:
            return b""
        return self.source.read(self.tcp_offset + 20, self.header_len - 20)

    @property
    def payload(self) -> bytes:
        """The payload bytes that were captured (all of them unless ``truncated``)."""
        if self.source is None or not self.captured:
            return b""
        return self.source.read(self.tcp_offset + self.header_len, self.captured)

    @property
    def options(self) -> dict:
        """The TCP options as a dict: ``mss``, ``wscale``, ``sack_perm``, ``timestamps``, ..."""
        return options_dict(self.option_bytes)

    @property
    def option_list(self) -> list[tuple[str, Any]]:
        """The TCP options in header order as (name, value), NOP and EOL included."""
        return decode_options(self.option_bytes)

    @property
    def raw(self) -> Any:
        """The whole frame dissected by scapy (imports scapy: slow; for exploring only)."""
        return None if self.source is None else self.source.scapy_packet(self.frame)

    @property
    def retransmission(self) -> bool:
        """Wireshark's ``tcp.analysis.retransmission`` (set for fast and spurious ones too)."""
        return "retransmission" in self.analysis

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
                out.append(
                    f"dup ACK #{self.dup_ack_num}"
                    if name == "duplicate_ack"
                    else name.replace("_", " ")
                )
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
    "ack_lost_segment",
    "duplicate_ack",
    "window_update",
    "window_full",
    "keep_alive",
    "keep_alive_ack",
    "zero_window",
    "zero_window_probe",
    "zero_window_probe_ack",
    "reused_ports",
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


#: Linux's smallest RTO term, TCP_RTO_MIN (include/net/tcp.h): 200 ms.
LINUX_RTO_MIN = 0.2
_RULES = ("rfc6298", "linux")


def estimate_rtt(
    samples: Iterable[float],
    *,
    alpha: float = 1 / 8,
    beta: float = 1 / 4,
    k: int = 4,
    granularity: float = 0.0,
    min_rto: float = 1.0,
    rule: str = "rfc6298",
) -> list[dict[str, float]]:
    """The smoothed RTT, its variation and the RTO after each sample (RFC 6298 section 2).

    First sample R: SRTT = R, RTTVAR = R/2. Then, for each R' in order::

        RTTVAR = (1 - beta) * RTTVAR + beta * |SRTT - R'|     (DevRTT in Kurose & Ross)
        SRTT   = (1 - alpha) * SRTT + alpha * R'              (EstimatedRTT)

    RFC 6298 updates RTTVAR with the *old* SRTT; some textbooks update EstimatedRTT first.
    The RTO depends on ``rule``:

    * ``"rfc6298"``: RTO = max(min_rto, SRTT + max(granularity, k * RTTVAR)); the RFC's
      ``min_rto`` is 1 s (section 2.4).
    * ``"linux"``: RTO = SRTT + max(k * RTTVAR, 200 ms) (tcp_set_rto() and
      tcp_rtt_estimator() in the kernel): Linux puts its 200 ms floor, `LINUX_RTO_MIN`, on
      the variance term, not on the sum, so on a fast link the RTO is SRTT + 200 ms, a little
      over 200 ms. ``granularity`` and ``min_rto`` do not apply.

    Args:
        samples: RTT samples in seconds, in the order they were taken.
        alpha, beta, k: RFC 6298's gains and multiplier.
        granularity: the clock granularity G of RFC 6298 section 2.
        min_rto: the RFC rule's lower bound on the RTO.
        rule: ``"rfc6298"`` or ``"linux"``.

    Returns:
        One dict per sample: ``sample``, ``srtt``, ``rttvar``, ``rto`` (seconds).

    Raises:
        ValueError: an unknown ``rule``.
    """
    if rule not in _RULES:
        raise ValueError(f"unknown RTO rule {rule!r}; choose one of {', '.join(_RULES)}")
    out: list[dict[str, float]] = []
    srtt = rttvar = 0.0
    for i, r in enumerate(samples):
        if i == 0:
            srtt, rttvar = r, r / 2
        else:
            rttvar = (1 - beta) * rttvar + beta * abs(srtt - r)
            srtt = (1 - alpha) * srtt + alpha * r
        if rule == "linux":
            rto = srtt + max(k * rttvar, LINUX_RTO_MIN)
        else:
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
                    self.syn_ack.ack == (self.client_isn + 1) % MOD,
                )
            )
        out.append(("final ACK seen", self.ack is not None))
        if self.ack is not None and self.server_isn is not None:
            out.append(("ACK seq = client ISN + 1", self.ack.seq == (self.client_isn + 1) % MOD))
            out.append(("ACK ack = server ISN + 1", self.ack.ack == (self.server_isn + 1) % MOD))
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
    log let us read it anyway. ``segment`` is the connection's segment index, and ``frame``
    the capture's frame number, where the message was complete: a record split over several
    segments, or a handshake message split over several records, belongs to the segment that
    carried its last byte (as Wireshark shows it). ``record_type`` is the record's content
    type as sent (``application_data`` for every TLS 1.3 encrypted record); ``name`` is the
    handshake message type (RFC 8446 section 4, RFC 5246 section 7.4), ``ChangeCipherSpec``,
    ``Alert``, ``ApplicationData``, ``Heartbeat``, or ``EncryptedHandshake`` for an encrypted
    TLS 1.2 handshake record that no key opened: its type is never guessed.
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
    frame: int | None = None
    #: The record's length on the wire (header excluded).
    record_length: int = 0
