"""Wireshark's TCP analysis (epan/dissectors/packet-tcp.c, tcp_analyze_sequence_number)."""

from __future__ import annotations

from dataclasses import replace

from .connection import Connection
from .facts import C2S, MOD, S2C, Segment

__all__ = ["analyse_tcp"]


def _lt(a: int, b: int) -> bool:
    """a before b in sequence space (RFC 9293 3.4: comparisons are modulo 2**32)."""
    return ((a - b) % MOD) >= (1 << 31)


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


def analyse_tcp(conn: Connection) -> None:
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
            bases[seg.direction] = (seg.seq - seg.rel_seq) % MOD
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
            if seglen <= 1 and seq == (fwd.nextseq - 1) % MOD and not control:
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
            if seglen > 1 and (fwd.nextseq - 1) % MOD == seq:
                not_advanced = False
            extra = 1 if (seg.syn or seg.fin) else 0
            if seglen > 0 and rev.lastack and not _lt(rev.lastack, (seq + seglen) % MOD):
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
                and fwd.nextseq != (seq + seglen + extra) % MOD
            ):
                ta.add("out_of_order")
            elif not_advanced:
                ta.add("retransmission")
        nextseq = (seq + seglen + (1 if (seg.syn or seg.fin) else 0)) % MOD
        if (not fwd.nextseq or _lt(fwd.nextseq, nextseq)) and "zero_window_probe" not in ta:
            fwd.nextseq, fwd.nextseqtime = nextseq, t
        fwd.window, fwd.lastack, fwd.lastacktime = window, ack, t
        fwd.lastflags = frozenset(ta)
        sack = ()
        raw = seg.options.get("sack")
        if raw:
            peer = S2C if seg.direction == C2S else C2S
            base = bases.get(peer, (ack - 1) % MOD)
            edges = [(int(v) - base) % MOD for v in raw]
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
