"""Wireshark's TCP analysis, one segment at a time (packet-tcp.c, tcp_analyze_sequence_number).

Each captured segment gets the ``tcp.analysis.*`` judgements tshark 4.0 gives it, decided the
way tshark decides them, in tshark's order, from the same per-direction state (the names of
:class:`Flow`'s fields are packet-tcp.c's). The rules:

* zero_window_probe: 1 byte at the next expected sequence number while the peer's window is 0
  (and nothing else is checked for it);
* zero_window: window 0 on a segment without SYN, FIN or RST;
* lost_segment: it starts beyond the next expected byte (a gap; not for RST);
* keep_alive: 0 or 1 byte starting one byte before the next expected one (no SYN/FIN/RST);
* window_update: no data, same seq and ack as before, a new non-zero window;
* window_full: data reaching exactly the right edge of the peer's advertised window (only
  when the window scale is known);
* keep_alive_ack, zero_window_probe_ack: the repeated ACK that answers one of those;
* duplicate_ack: no data, same seq, ack and window as the previous segment of that side;
* ack_lost_segment: it acknowledges bytes of the peer that were never captured;
* then, for a segment with data (or SYN/FIN) that does not advance the sequence number:
  spurious_retransmission (the data was already acknowledged), fast_retransmission (two or
  more duplicate ACKs asked for exactly this byte, less than 20 ms ago), out_of_order (within
  the handshake's RTT, or 3 ms, of the highest segment, not ending where it ends), otherwise
  retransmission. tshark marks fast and spurious retransmissions as retransmissions too.

Windows are compared as sent, as tshark compares them; window_full scales the peer's
window when both SYNs carried the option (RFC 7323 section 2.2).
"""

from __future__ import annotations

__all__ = ["MOD", "Flow", "TCPTracker", "flag_letters"]

MOD = 1 << 32
_HALF = 1 << 31
_SYN, _FIN, _RST, _PSH, _ACK, _URG, _ECE, _CWR, _NS = 2, 1, 4, 8, 16, 32, 64, 128, 256
# Order as learners read them: S, F, R, P, A, then U, E, C, N -> "SA", "PA", "FA", "RA" ...
_LETTERS = (
    (_SYN, "S"),
    (_FIN, "F"),
    (_RST, "R"),
    (_PSH, "P"),
    (_ACK, "A"),
    (_URG, "U"),
    (_ECE, "E"),
    (_CWR, "C"),
    (_NS, "N"),
)
_letter_cache: dict[int, str] = {}
# Out-of-order threshold without a handshake RTT: 3 ms (packet-tcp.c, ooo_thres).
_DEFAULT_OOO = 0.003
_FAST_RTX_WINDOW = 0.020  # a fast retransmission follows the duplicate ACKs within 20 ms


def flag_letters(bits: int) -> str:
    """``0x12`` -> ``"SA"``; no flag at all -> ``"."``."""
    text = _letter_cache.get(bits)
    if text is None:
        text = "".join(ch for bit, ch in _LETTERS if bits & bit) or "."
        _letter_cache[bits] = text
    return text


def _gt(a: int, b: int) -> bool:
    """a after b in sequence space (RFC 9293 section 3.4: comparisons modulo 2**32)."""
    return 0 < (a - b) % MOD < _HALF


def _lt(a: int, b: int) -> bool:
    return 0 < (b - a) % MOD < _HALF


class Flow:
    """One direction's state, named as in packet-tcp.c (``tcp_flow_t``)."""

    __slots__ = (
        "base_seq",
        "base_set",
        "win_scale",
        "window",
        "nextseq",
        "nextseqtime",
        "lastack",
        "lastacktime",
        "dupacknum",
        "maxseqtobeacked",
        "lastflags",
        "seen",
    )

    def __init__(self) -> None:
        self.base_seq = 0
        self.base_set = False
        self.win_scale = -1  # -1 unknown (no SYN seen), -2 not used, else the shift
        # Not 0: a flow not yet seen must not make its peer's 1-byte segments zero-window
        # probes (packet-tcp.c initialises it to G_MAXUINT32 for that reason).
        self.window = 0xFFFFFFFF
        self.nextseq = 0  # 0: nothing seen yet (as in Wireshark)
        self.nextseqtime = 0.0
        self.lastack = 0
        self.lastacktime = 0.0
        self.dupacknum = 0
        self.maxseqtobeacked = 0
        self.lastflags: frozenset = frozenset()
        self.seen = False


_EMPTY: frozenset = frozenset()
_frozen: dict[tuple, frozenset] = {}


def _freeze(flags: list[str]) -> frozenset:
    """One shared frozenset per combination: 200,000 segments, a handful of distinct sets."""
    key = tuple(flags)
    value = _frozen.get(key)
    if value is None:
        value = _frozen[key] = frozenset(flags)
    return value


class TCPTracker:
    """The analysis state of one connection; feed it every segment in capture order."""

    __slots__ = ("flows", "first_rtt", "last_syn")

    def __init__(self) -> None:
        self.flows = (Flow(), Flow())  # index 0: client -> server, 1: server -> client
        self.first_rtt = 0.0
        self.last_syn: float | None = None

    def segment(
        self,
        d: int,
        t: float,
        seq: int,
        ack: int,
        seglen: int,
        bits: int,
        raw_window: int,
        wscale: int | None,
    ) -> tuple[int, int, int | None, frozenset, int]:
        """Take one segment: (rel_seq, rel_ack, window in bytes or None, flags, dup-ACK number).

        Args:
            d: 0 for client -> server, 1 for server -> client.
            t: capture time in seconds; seq, ack: absolute numbers; seglen: payload bytes.
            bits: the TCP flag bits; raw_window: the window field as sent.
            wscale: the window-scale option (None: not there). Outside a SYN it applies to the
                sender's later segments, as packet-tcp.c applies it.

        The window in bytes is None while the sender's scale is unknown (no SYN seen).
        """
        fwd, rev = self.flows[d], self.flows[1 - d]
        # Relative numbers: a side whose SYN was not captured counts from first seq - 1
        # (Wireshark bug 1542); the peer's base comes from the first ACK when needed.
        if not fwd.base_set:
            fwd.base_seq = seq if bits & _SYN else (seq - 1) % MOD
            fwd.base_set = True
        if bits & _ACK:
            if not rev.base_set:
                rev.base_seq, rev.base_set = (ack - 1) % MOD, True
            rel_ack = (ack - rev.base_seq) % MOD
        else:
            rel_ack = 0
        # Window scale (RFC 7323 2.2; packet-tcp.c verify_tcp_window_scaling): the SYNs say.
        if bits & _SYN:
            if wscale is not None:
                fwd.win_scale = min(wscale, 14)  # RFC 7323 2.3: larger shifts mean 14
            if fwd.win_scale == -1:  # this SYN has no option: nobody scales
                fwd.win_scale = rev.win_scale = -2
            elif bits & _ACK and rev.win_scale == -2:
                fwd.win_scale = -2
            window, scaled = raw_window, raw_window
        else:
            shift = fwd.win_scale
            window = raw_window << shift if shift > 0 else raw_window
            scaled = None if shift == -1 else window
            if wscale is not None:  # the option outside a SYN (nmap's probes) counts from now
                fwd.win_scale = min(wscale, 14)
        # tshark compares the window fields as sent, not scaled (packet-tcp.c passes th_win).
        flags, dup = self._analyse(fwd, rev, t, seq, ack, seglen, bits, raw_window)
        return (seq - fwd.base_seq) % MOD, rel_ack, scaled, flags, dup

    def _analyse(
        self,
        fwd: Flow,
        rev: Flow,
        t: float,
        seq: int,
        ack: int,
        seglen: int,
        bits: int,
        window: int,
    ) -> tuple[frozenset, int]:
        """The tcp.analysis flags of one segment (see the module docstring)."""
        syn, fin, rst = bits & _SYN, bits & _FIN, bits & _RST
        control = bits & (_SYN | _FIN | _RST)
        ta: list[str] = []
        dup = 0
        if syn and not bits & _ACK:
            self.last_syn = t
        elif bits == _ACK and not self.first_rtt and self.last_syn is not None:
            self.first_rtt = t - self.last_syn  # ts_first_rtt: SYN to the handshake's ACK
        nextseq_f = fwd.nextseq
        probe = seglen == 1 and seq == nextseq_f and rev.window == 0
        if probe:
            ta.append("zero_window_probe")
        else:
            if window == 0 and not control:
                ta.append("zero_window")
            if nextseq_f and _gt(seq, nextseq_f) and not rst:
                ta.append("lost_segment")
            if seglen <= 1 and seq == (nextseq_f - 1) % MOD and not control:
                ta.append("keep_alive")
            same = not seglen and not control and seq == nextseq_f and ack == fwd.lastack
            if same and window and window != fwd.window:
                ta.append("window_update")
            if (
                seglen
                and not control
                and rev.win_scale != -1
                and (seq + seglen) % MOD
                == (rev.lastack + (rev.window << max(rev.win_scale, 0))) % MOD
            ):
                ta.append("window_full")
            if same and window and window == fwd.window and "keep_alive" in rev.lastflags:
                ta.append("keep_alive_ack")
            elif same and window == 0 and fwd.window == 0 and "zero_window_probe" in rev.lastflags:
                ta.append("zero_window_probe_ack")
            elif same and window and window == fwd.window:
                fwd.dupacknum = 1 if fwd.dupacknum < 0 else fwd.dupacknum + 1
                ta.append("duplicate_ack")
                dup = fwd.dupacknum
        if ack != fwd.lastack:
            fwd.dupacknum = 0
        if bits & _ACK and rev.maxseqtobeacked and _gt(ack, rev.maxseqtobeacked):
            # Acknowledges bytes never captured. Flagged once per run of such ACKs: again only
            # after the peer sent more, or after one of the peer's ACKs moved (as tshark 4.0).
            if _lt(rev.maxseqtobeacked, rev.nextseq):
                rev.maxseqtobeacked = rev.nextseq
                ta.append("ack_lost_segment")
            else:
                if rev.dupacknum == 0:
                    ta.append("ack_lost_segment")
                rev.dupacknum = -1
        if (seglen or syn or fin) and "keep_alive" not in ta:
            not_advanced = bool(nextseq_f) and _lt(seq, nextseq_f)
            if seglen > 1 and (nextseq_f - 1) % MOD == seq:
                not_advanced = False  # new data after a zero-window probe's byte
            end = (seq + seglen) % MOD
            if seglen and rev.lastack and not _gt(end, rev.lastack):
                ta += ("spurious_retransmission", "retransmission")
            elif (
                not_advanced
                and rev.dupacknum >= 2
                and rev.lastack == seq
                and t - rev.lastacktime < _FAST_RTX_WINDOW
            ):
                ta += ("fast_retransmission", "retransmission")
            elif (
                not_advanced
                and t - fwd.nextseqtime < (self.first_rtt or _DEFAULT_OOO)
                and nextseq_f != (end + (1 if syn or fin else 0)) % MOD
            ):
                ta.append("out_of_order")
            elif not_advanced:
                ta.append("retransmission")
        nextseq = (seq + seglen + (1 if syn or fin else 0)) % MOD
        if (not nextseq_f or _gt(nextseq, nextseq_f)) and not probe:
            fwd.nextseq, fwd.nextseqtime = nextseq, t
        if (seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked) and not probe:
            fwd.maxseqtobeacked = fwd.nextseq
        fwd.window, fwd.lastack, fwd.lastacktime = window, ack, t
        flags = _freeze(ta) if ta else _EMPTY
        fwd.lastflags = flags
        return flags, dup
