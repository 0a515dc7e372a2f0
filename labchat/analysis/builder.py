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

    __slots__ = ("conn", "tracker", "client", "directions", "ports")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.tracker = TCPTracker()
        self.client = conn.client
        self.directions = (C2S, S2C)
        # The (source, destination) ports of each direction, shared by its segments.
        self.ports = ((conn.client[1], conn.server[1]), (conn.server[1], conn.client[1]))


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
        self._ints: dict[int, int] = {}

    def add(self, frame: Frame) -> None:
        """Add one frame (ignored unless it holds a TCP segment)."""
        number, seconds, fraction, resolution, linktype, offset, caplen, wirelen = frame
        if self._t0 is None:
            self._t0 = (seconds, fraction, resolution)
        data = self.source.data
        dec = decode_frame(data, offset, caplen, wirelen, linktype, self.skipped)
        if dec is None:
            return
        sec0, frac0, res0 = self._t0
        t = (seconds - sec0) + (fraction / resolution - frac0 / res0)
        (src, dst, sport, dport, seq, ack, bits, raw_window, hlen, checksum, urgent, toff,
         plen, captured, from_frame, tunnel) = dec  # fmt: skip
        entry = self._by_key.get((src, sport, dst, dport))
        reused = False
        if entry is None or bits & 0x12 == _SYN:
            entry, reused = self._entry(dec)
        d = 0 if sport == entry.client[1] and src == entry.client[0] else 1
        opts = b""
        wscale = None
        sack: tuple = ()
        if hlen > 20:
            start = toff + 20
            # The usual layout, NOP NOP timestamps, holds no SACK: skip reading it.
            if bits & _SYN or not (hlen == 32 and data[start + 2] == 8 and data[start] == 1):
                opts = bytes(data[start : min(start + hlen - 20, offset + caplen)])
                if 3 in opts:  # maybe a window-scale option (kind 3)
                    wscale = options_dict(opts).get("wscale")
        tracker = entry.tracker
        rel_seq, rel_ack, scaled, analysis, dup = tracker.segment(
            d, t, seq, ack, plen, bits, raw_window, wscale
        )
        if reused:
            analysis = analysis | {"reused_ports"}
        if opts and bits & _ACK:
            edges = sack_edges(opts)
            if edges:
                base = tracker.flows[1 - d].base_seq
                rel = [(e - base) % MOD for e in edges]
                sack = tuple(zip(rel[0::2], rel[1::2], strict=False))
        truncated = captured < plen
        if truncated:
            self.truncated += 1
        if from_frame:
            self.tso += 1
        ints = self._ints  # share the int objects that repeat (lengths, windows)
        segs = entry.conn.segments
        segs.append(
            Segment(
                len(segs),
                t,
                entry.directions[d],
                flag_letters(bits & 0x1FF),
                seq,
                ack,
                rel_seq,
                rel_ack,
                ints.setdefault(plen, plen),
                ints.setdefault(raw_window, raw_window),
                number,
                truncated,
                analysis,
                dup,
                sack,
                None if scaled is None else ints.setdefault(scaled, scaled),
                from_frame,
                ints.setdefault(wirelen, wirelen),
                hlen,
                bits,
                checksum,
                urgent,
                entry.ports[d],
                self.source,
                toff,
                ints.setdefault(captured, captured),
            )
        )

    def _entry(self, dec: Decoded) -> tuple[_Entry, bool]:
        """The connection of a segment that is new, or a SYN (maybe a reused 4-tuple)."""
        src, dst = (dec.src, dec.sport), (dec.dst, dec.dport)
        key = (dec.src, dec.sport, dec.dst, dec.dport)
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
            self._by_key[key] = self._by_key[(dec.dst, dec.dport, dec.src, dec.sport)] = entry
        return entry, reused
