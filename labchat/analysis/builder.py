"""Frames -> connections and their segments, in one pass, numbered as tshark numbers them.

A connection is a 4-tuple, until a SYN on that 4-tuple carries a different initial sequence
number: then tshark starts a new ``tcp.stream`` (port reuse) and so does this. Roles come
from the SYN (or SYN-ACK); without either, the lower port is taken as the server's and the
connection says ``client_guessed``.
"""

from __future__ import annotations

from .connection import Connection
from .facts import C2S, S2C, Segment
from .packets import Decoded, Skipped, decode_frame
from .pcapfile import Frame, Source
from .tcp import MOD, TCPTracker, flag_letters
from .tcpoptions import options_dict, sack_edges

__all__ = ["Builder"]

_SYN, _ACK = 0x02, 0x10


class _Entry:
    """A connection being built: the facts object plus the analysis state behind it."""

    __slots__ = ("conn", "tracker", "client")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.tracker = TCPTracker()
        self.client = conn.client


class Builder:
    """Feed it every frame in order with :meth:`add`; read ``connections`` at the end."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.connections: list[Connection] = []
        self.skipped = Skipped()
        self.tso = 0
        self.truncated = 0
        self._by_key: dict[tuple, _Entry] = {}
        self._t0: tuple[int, int, int] | None = None

    def add(self, frame: Frame) -> None:
        """Add one frame (ignored unless it holds a TCP segment)."""
        if self._t0 is None:
            self._t0 = (frame.seconds, frame.fraction, frame.resolution)
        data = self.source.data
        dec = decode_frame(
            data, frame.offset, frame.caplen, frame.wirelen, frame.linktype, self.skipped
        )
        if dec is None:
            return
        sec0, frac0, res0 = self._t0
        t = (frame.seconds - sec0) + (frame.fraction / frame.resolution - frac0 / res0)
        self._segment(frame, dec, t)

    def _entry(self, dec: Decoded) -> tuple[_Entry, bool]:
        src, dst = (dec.src, dec.sport), (dec.dst, dec.dport)
        key = (src, dst)
        entry = self._by_key.get(key)
        bits = dec.flags
        reused = False
        if entry is not None and bits & (_SYN | _ACK) == _SYN:
            flow = entry.tracker.flows[0 if src == entry.client else 1]
            if flow.base_set and dec.seq != flow.base_seq:
                entry, reused = None, True  # a new connection on the same 4-tuple
        if entry is None:
            if bits & (_SYN | _ACK) == _SYN:
                client, server, guessed = src, dst, False
            elif bits & _SYN:
                client, server, guessed = dst, src, False
            else:
                # No SYN captured: the lower port is most likely the server's (well-known).
                client, server = (src, dst) if src[1] > dst[1] else (dst, src)
                guessed = True
            conn = Connection(len(self.connections), client, server)
            conn.client_guessed = guessed
            conn.tunnel = dec.tunnel
            if reused:
                conn.warnings.append("a new connection on the 4-tuple of an earlier one")
            entry = _Entry(conn)
            self.connections.append(conn)
            self._by_key[key] = self._by_key[(dst, src)] = entry
        return entry, reused

    def _segment(self, frame: Frame, dec: Decoded, t: float) -> None:
        entry, reused = self._entry(dec)
        conn, tracker = entry.conn, entry.tracker
        d = 0 if (dec.src, dec.sport) == entry.client else 1
        bits, seq, ack = dec.flags, dec.seq, dec.ack
        start = dec.tcp_offset + 20
        stop = min(dec.tcp_offset + dec.header_len, frame.offset + frame.caplen)
        opts = bytes(self.source.data[start:stop]) if stop > start else b""
        wscale = options_dict(opts).get("wscale") if bits & _SYN and opts else None
        shift = tracker.window_scale(d, bits, wscale)
        rel_seq, rel_ack = tracker.bases(d, seq, ack, bits)
        window = dec.window << shift if shift >= 0 else dec.window
        analysis, dup = tracker.analyse(d, t, seq, ack, dec.payload_len, bits, window, shift != -1)
        if reused:
            analysis = analysis | {"reused_ports"}
        sack: tuple = ()
        if bits & _ACK and len(opts) >= 10:
            edges = sack_edges(opts)
            if edges:
                base = tracker.flows[1 - d].base_seq
                rel = [(e - base) % MOD for e in edges]
                sack = tuple(zip(rel[0::2], rel[1::2], strict=False))
        truncated = dec.captured < dec.payload_len
        self.truncated += truncated
        self.tso += dec.length_from_frame
        conn.segments.append(
            Segment(
                len(conn.segments),
                t,
                C2S if d == 0 else S2C,
                flag_letters(bits & 0x1FF),
                seq,
                ack,
                rel_seq,
                rel_ack,
                dec.payload_len,
                dec.window,
                frame.number,
                truncated,
                analysis,
                dup,
                sack,
                window if shift != -1 else None,
                dec.length_from_frame,
                frame.wirelen,
                dec.header_len,
                bits,
                dec.checksum,
                dec.urgent,
                (dec.sport, dec.dport),
                opts,
                self.source,
                dec.tcp_offset,
                dec.captured,
            )
        )
