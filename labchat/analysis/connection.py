"""One TCP connection and the facts read from its segments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .congestion import Recovery, find_recoveries
from .facts import C2S, MOD, S2C, Handshake, RTTSample, Segment, Teardown, TLSMessage, estimate_rtt
from .reassembly import reassemble
from .table import Table
from .tlsinfo import TLSInfo

__all__ = ["Connection", "Transfer"]


@dataclass(frozen=True)
class Transfer:
    """How fast one direction moved its data (issue 14: throughput and goodput).

    ``start`` is the first data segment's time, ``end`` the time of the ACK that covered the
    direction's last byte (or of the last data segment when no such ACK was captured).
    ``payload_bytes`` counts every payload byte sent, retransmissions included;
    ``unique_bytes`` each stream byte once. ``wire_bytes`` counts whole frames (headers
    included) of the data segments. Rates are in bits per second.
    """

    direction: str
    start: float
    end: float
    segments: int
    payload_bytes: int
    unique_bytes: int
    retransmitted_bytes: int
    wire_bytes: int

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def throughput(self) -> float:
        """Payload bits per second, retransmissions included."""
        return self.payload_bytes * 8 / self.duration if self.duration else 0.0

    @property
    def goodput(self) -> float:
        """Bits per second of data the application received once (RFC 6349's goodput)."""
        return self.unique_bytes * 8 / self.duration if self.duration else 0.0


class Connection:
    """One TCP connection: both endpoints, its segments, and what can be read from them."""

    def __init__(self, stream: int, client: tuple[str, int], server: tuple[str, int]):
        self.stream = stream
        self.client = client
        self.server = server
        self.client_guessed = False
        self.segments: list[Segment] = []
        self.tls: bool = False
        #: What the TLS decoder found (None for a connection that is not TLS).
        self.tls_info: TLSInfo | None = None
        #: The encapsulation its packets came in ("" for none; "GRE", "VXLAN" ...).
        self.tunnel = ""
        #: "HTTP CONNECT", "SOCKS5" or "SOCKS4" when the TLS ran through a proxy tunnel.
        self.proxy = ""
        #: The TLS began after a STARTTLS upgrade of a plaintext protocol (SMTP, IMAP ...).
        self.starttls = False
        #: With a proxy: the frame that carried the first tunnelled byte (0: none).
        self.tls_reply_frame = 0
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
        syn = next(
            (s for s in self.segments if s.syn and not s.has_ack and s.direction == C2S), None
        )
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
                    and s.ack == (syn_ack.seq + 1) % MOD
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
            want = (fin.seq + fin.seq_len) % MOD
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
                sent.setdefault((s.seq + s.seq_len) % MOD, []).append(s)
        ranges = [
            (s.seq, s.seq + s.seq_len)
            for s in self.segments
            if s.direction == direction and s.retransmission
        ]
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
            if len(copies) > 1 or any(
                lo < seg.seq + seg.seq_len and seg.seq < hi for lo, hi in ranges
            ):
                continue  # Karn: ambiguous
            out.append(RTTSample(seg.index, a.index, seg.time, a.time))
        return out

    def rtt_table(self, direction: str | None = None, **kwargs: Any) -> Table:
        """Each RTT sample with EstimatedRTT, DevRTT and the RTO after it, in milliseconds.

        Keyword arguments go to `estimate_rtt` (``alpha``, ``beta``, ``rule="linux"`` for
        the RTO Linux computes, ...).
        """
        samples = self.rtt_samples(direction)
        rows = []
        for smp, est in zip(samples, estimate_rtt([x.rtt for x in samples], **kwargs), strict=True):
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

    def bytes_in_flight(
        self, direction: str | None = None, *, acks: bool = True
    ) -> list[tuple[float, int]]:
        """(time, bytes sent but not yet acknowledged) of ``direction``, at each change.

        Sequence-based: highest sequence number sent minus the highest ACK received so far,
        less what SACK blocks report as received (Wireshark's ``bytes_in_flight``, RFC 6675's
        "pipe" without the retransmission bookkeeping). A point after each data segment (the
        value tshark shows on it) and, unless ``acks`` is False, after each ACK from the peer
        (data leaving the network), so the curve goes back down to zero when the transfer
        ends instead of stopping at the last send.
        """
        direction = direction or self.data_direction()
        high = acked = None
        sacked: tuple = ()
        out: list[tuple[float, int]] = []

        def flight() -> int:
            gone = sum(b - a for a, b in sacked if a >= acked)
            return max(0, high - acked - gone)

        for s in self.segments:
            if s.direction == direction:
                if s.seq_len:
                    end = s.rel_seq + s.seq_len
                    high = end if high is None else max(high, end)
                    if s.payload_len and acked is not None:
                        out.append((s.time, flight()))
            elif s.has_ack:
                acked = s.rel_ack if acked is None else max(acked, s.rel_ack)
                sacked = s.sack
                if acks and high is not None and out:
                    out.append((s.time, flight()))
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
            # After a half-close the other side may go on sending: its data, and the ACKs
            # of that data, are data, not teardown (RFC 9293 section 3.6, "half-closed").
            if not seg.fin and self._after_fin_data(td, seg):
                return "data"
            return "teardown"
        if seg.syn:
            return "handshake"
        return "data"

    def _after_fin_data(self, td: Teardown, seg: Segment) -> bool:
        """Whether ``seg`` (after the first FIN) is data, or an ACK of such data."""
        if seg.payload_len:
            return True
        ends = {
            (s.seq + s.payload_len) % MOD
            for s in self.segments
            if s.index > td.fins[0].index and s.payload_len and s.direction != seg.direction
        }
        return seg.has_ack and seg.ack in ends

    def recoveries(self, direction: str | None = None) -> list[Recovery]:
        """The losses of ``direction`` (default: the data's) and the recovery from each one.

        See `labchat.analysis.congestion.Recovery`: from the first retransmission to the
        ACK that covers everything sent before it (RFC 6582's recovery point).
        """
        return find_recoveries(self.segments, direction or self.data_direction())

    def segment_table(self, *, raw_window: bool = False) -> Table:
        """One row per segment, the way Wireshark's packet list would show them.

        Args:
            raw_window: show the window field as sent; by default the window in bytes
                (scaled by the factor the handshake announced, when it was captured).
        """
        names = self._tls_names_by_segment()
        rows = []
        for s in self.segments:
            note = s.notes()
            if s.retransmission and not any("retransmission" in n for n in note):
                note.insert(0, "retransmission")
            if s.truncated:
                note.append("truncated")
            if s.length_from_frame:
                note.append("IP length 0 (TSO): length from the frame")
            rows.append(
                {
                    "#": s.index,
                    "time": round(s.time, 6),
                    "dir": s.direction,
                    "flags": s.flags,
                    "seq": s.rel_seq,
                    "ack": s.rel_ack if s.has_ack else None,
                    "len": s.payload_len,
                    "win": s.window if raw_window or s.scaled_window is None else s.scaled_window,
                    "tls": ", ".join(names.get(s.index, [])),
                    "note": ", ".join(note),
                }
            )
        return Table(rows, ["#", "time", "dir", "flags", "seq", "ack", "len", "win", "tls", "note"])

    # ---- TLS and application data --------------------------------------------------------

    def tls_messages(self) -> list[TLSMessage]:
        """TLS messages in capture order (empty for a plaintext connection)."""
        return list(self.tls_info.messages) if self.tls_info is not None else []

    def certificates(self, direction: str = S2C) -> list[bytes]:
        """The certificate chain one side sent, as DER, its own certificate first.

        Args:
            direction: ``"s->c"`` for the server's chain, ``"c->s"`` for a client's (mutual
                TLS).

        Returns:
            The DER certificates (load them with ``cryptography.x509.load_der_x509_certificate``);
            empty if that side sent none, or its Certificate was encrypted and no key opened it.
        """
        from .tls.handshake import certificate_list

        tls13 = self.tls_info is not None and self.tls_info.version == "TLS 1.3"
        for m in self.tls_messages():
            if m.direction == direction and m.name == "Certificate" and m.data:
                return certificate_list(m.data, tls13)
        return []

    def _tls_names_by_segment(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for m in self.tls_messages():
            if m.segment is not None:
                out.setdefault(m.segment, []).append(m.name)
        return out

    def app_data(self, direction: str, limit: int | None = None) -> bytes:
        """The application bytes one direction sent, in order, each byte once.

        For TLS, the decrypted application data (empty without keys); otherwise the
        reassembled TCP stream (bytes the capture missed are left out).

        Args:
            direction: ``"c->s"`` or ``"s->c"``.
            limit: stop after about this many bytes (None: all of them).
        """
        out = bytearray()
        for _, d, data in self._app_chunks(limit, direction):
            if d == direction:
                out += data
                if limit is not None and len(out) >= limit:
                    break
        return bytes(out)

    def _app_chunks(self, limit: int | None = None, direction: str | None = None):
        """(segment index, direction, bytes) of application data in capture order: the
        segment is the one that delivered the bytes (its TLS record's, when decrypted)."""
        if self.tls:
            for m in self.tls_messages():
                if m.name == "ApplicationData" and m.decrypted and m.data:
                    yield m.segment, m.direction, m.data
            return
        for chunk in reassemble(self.segments, limit, direction):
            if chunk.data:
                yield chunk.segment, chunk.direction, chunk.data

    def _lines(self):
        """(segment index, direction, text) of each labchat/1 line, in order; a line belongs
        to the segment that delivered its last byte. Unfinished lines come last, with
        segment None."""
        buffers = {C2S: b"", S2C: b""}
        for segment, direction, data in self._app_chunks():
            *complete, buffers[direction] = (buffers[direction] + data).split(b"\n")
            for raw in complete:
                yield segment, direction, raw.rstrip(b"\r").decode("utf-8", "replace")
        for direction, rest in buffers.items():
            if rest:
                yield None, direction, rest.decode("utf-8", "replace")

    def app_lines(self) -> list[tuple[str, str]]:
        """labchat/1 lines as (direction, text): the plaintext stream, or decrypted TLS data.

        An encrypted connection without keys gives no lines (see ``tls_messages()``).
        """
        return [(direction, text) for _, direction, text in self._lines()]

    def lines_by_segment(self) -> dict[int, list[str]]:
        """The complete labchat/1 lines each segment delivered: segment index -> lines.

        The same lines as `app_lines` (reassembled, or decrypted where the key log was
        known), with their place on the wire; an encrypted connection without keys gives
        ``{}``. A ladder labels its arrows with them (`labchat.plots.ladder`).
        """
        out: dict[int, list[str]] = {}
        for segment, _, text in self._lines():
            if segment is not None:
                out.setdefault(segment, []).append(text)
        return out

    def transfer(self, direction: str | None = None) -> Transfer:
        """Throughput and goodput of one direction (default: the one that sent more)."""
        direction = direction or self.data_direction()
        data = [s for s in self.segments if s.direction == direction and s.payload_len]
        if not data:
            return Transfer(direction, 0.0, 0.0, 0, 0, 0, 0, 0)
        payload = sum(s.payload_len for s in data)
        retrans = sum(s.payload_len for s in data if s.retransmission)
        first = min(s.rel_seq for s in data)
        last = max(s.rel_seq + s.payload_len for s in data)
        end = data[-1].time
        for s in self.segments:
            if s.direction != direction and s.has_ack and s.time >= data[-1].time:
                if (s.rel_ack - last) % MOD < 1 << 31:
                    end = s.time
                    break
        wire = sum(s.frame_len for s in data)
        return Transfer(
            direction, data[0].time, end, len(data), payload, last - first, retrans, wire
        )
