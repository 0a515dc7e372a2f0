"""Losses and the sender's recovery from them, as a capture shows them.

A *recovery* starts with the first retransmission after a stretch without any (a fast
retransmission after duplicate ACKs, or a resend when a timer fired) and ends with the first
ACK that covers everything the sender had sent when it started: RFC 6582's *recovery point*
(RFC 6675 calls it ``RecoveryPoint``). Retransmissions until then belong to the same
recovery; the originals they resend are the segments that were (most likely) lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .facts import MOD, Segment

__all__ = ["Recovery", "find_recoveries", "lost_originals"]


@dataclass(frozen=True)
class Recovery:
    """One loss episode of one direction, from its first retransmission to its recovery point.

    Attributes:
        direction: the data's direction (``c->s`` or ``s->c``).
        start: time of the first retransmission (seconds since the first packet).
        end: time of the ACK that reached the recovery point, or None if none was captured.
        recovery_point: the relative sequence number just after the highest byte sent before
            ``start``: the recovery is over once the peer acknowledges up to it.
        retransmissions: the segments sent again in this recovery, in order.
        lost: the original segments they resend (sent before ``start``).
        trigger: ``duplicate ACKs`` when duplicate ACKs (or SACK blocks) came back between
            the lost segment and its first resend, ``timer`` when nothing did (a
            retransmission timeout, or a tail loss probe). tshark calls a resend a
            ``fast_retransmission`` only after two duplicate ACKs; Linux's RACK often resends
            after the first one, so its resends can be ``duplicate ACKs`` without being
            "fast" to tshark.
    """

    direction: str
    start: float
    end: float | None
    recovery_point: int
    retransmissions: tuple[Segment, ...]
    lost: tuple[Segment, ...]
    trigger: str

    @property
    def duration(self) -> float | None:
        """Seconds from the first retransmission to the recovery point's ACK."""
        return None if self.end is None else self.end - self.start


def lost_originals(segments: Sequence[Segment], direction: str | None = None) -> list[Segment]:
    """Segments whose data was sent again later: the copies that were (most likely) lost.

    The capture point saw them; the receiver evidently did not (or its ACK got lost).

    Args:
        segments: a connection's segments, in capture order.
        direction: only this direction (default: both).
    """
    resent: dict[tuple[str, int], int] = {}
    for s in segments:
        if s.retransmission and s.seq_len:
            resent.setdefault((s.direction, s.seq), s.index)
    out = []
    for s in segments:
        if s.seq_len == 0 or s.retransmission or s.rst:
            continue
        if direction is not None and s.direction != direction:
            continue
        later = resent.get((s.direction, s.seq))
        if later is not None and later > s.index:
            out.append(s)
    return out


def _after(a: int, b: int) -> bool:
    """a at or after b in sequence space (RFC 9293 section 3.4: modulo 2**32)."""
    return (a - b) % MOD < 1 << 31


def find_recoveries(segments: Sequence[Segment], direction: str) -> list[Recovery]:
    """Each loss episode of ``direction`` (see the module docstring), in time order.

    Args:
        segments: a connection's segments, in capture order.
        direction: the data's direction.
    """
    originals = {s.seq: s for s in lost_originals(segments, direction)}
    episodes: list[dict] = []
    high: int | None = None
    current: dict | None = None
    for s in segments:
        if s.direction == direction:
            if s.seq_len and s.retransmission:
                if current is None:
                    point = high if high is not None else s.rel_seq + s.seq_len
                    current = {"start": s.time, "end": None, "point": point, "rtx": [],
                               "trigger": _trigger(segments, originals.get(s.seq), s)}  # fmt: skip
                    episodes.append(current)
                current["rtx"].append(s)
            if s.seq_len:
                end = s.rel_seq + s.seq_len
                high = end if high is None or _after(end, high) else high
        elif current is not None and s.has_ack and _after(s.rel_ack, current["point"]):
            current["end"] = s.time
            current = None
    out = []
    for e in episodes:
        lost = tuple(originals[r.seq] for r in e["rtx"] if r.seq in originals)
        out.append(
            Recovery(
                direction,
                e["start"],
                e["end"],
                e["point"],
                tuple(e["rtx"]),
                tuple(dict.fromkeys(lost)),
                e["trigger"],
            )  # fmt: skip
        )
    return out


def _trigger(segments: Sequence[Segment], original: Segment | None, resend: Segment) -> str:
    """``duplicate ACKs`` if the peer sent any (or SACK blocks) after ``original``, else
    ``timer``."""
    if original is None:
        return "timer"
    for s in segments[original.index + 1 : resend.index]:
        if s.direction != resend.direction and ("duplicate_ack" in s.analysis or s.sack):
            return "duplicate ACKs"
    return "timer"
