"""Each direction's byte stream, reassembled by sequence number from the captured segments.

Retransmitted bytes are delivered once; a segment that overlaps what was delivered gives only
its new bytes; a segment that arrives before the bytes in front of it waits until they come,
and is then delivered by the segment that filled the hole (that is the segment where whatever
ends in those bytes became complete, which is where Wireshark shows it once it reassembles
out-of-order segments). A hole the capture never fills (the receiver acknowledged bytes that
were not captured, or the stream ended first) is skipped and reported as a gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .facts import C2S, Segment

__all__ = ["Chunk", "reassemble"]

_MOD = 1 << 32
# A hole with this many bytes queued behind it is given up on: no receive window is that
# large in a capture, so the bytes were lost by the capture, not by the network.
_MAX_PENDING = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes delivered in order: ``data`` starts at ``offset`` in its direction's stream.

    ``segment`` is the index of the segment whose arrival delivered them. ``gap`` > 0 means
    that many bytes before ``offset`` are missing from the capture.
    """

    direction: str
    offset: int
    data: bytes
    segment: int
    gap: int = 0


class _Direction:
    __slots__ = ("next", "pending", "pending_bytes", "started")

    def __init__(self) -> None:
        self.next = 0  # stream offset of the next byte to deliver
        # offset -> (bytes, segment index) waiting for a hole to fill
        self.pending: dict[int, tuple[bytes, int]] = {}
        self.pending_bytes = 0
        self.started = False


def _unwrap(rel: int, near: int) -> int:
    """The 64-bit stream offset closest to ``near`` whose low 32 bits are ``rel``."""
    delta = (rel - near) % _MOD
    if delta >= 1 << 31:
        delta -= _MOD
    return near + delta


def reassemble(segments: Iterable[Segment], limit: int | None = None,
               direction: str | None = None) -> Iterator[Chunk]:  # fmt: skip
    """The chunks of both directions (or of one) in capture order.

    Args:
        segments: a connection's segments, in capture order.
        limit: stop once each direction has delivered this many bytes (None: the whole stream).
        direction: only this direction's chunks (the other's ACKs are still looked at).
    """
    dirs = {C2S: _Direction(), "s->c": _Direction()}
    for seg in segments:
        d = dirs[seg.direction]
        peer = dirs["s->c" if seg.direction == C2S else C2S]
        if seg.has_ack and peer.started:
            # The peer acknowledged bytes we never delivered: the capture missed them.
            acked = _unwrap((seg.rel_ack - 1) % _MOD, peer.next)
            if acked > peer.next and peer.pending:
                name = "s->c" if seg.direction == C2S else C2S
                if direction is None or name == direction:
                    yield from _skip_to(peer, name, acked, seg.index)
        if not seg.payload_len or (direction is not None and seg.direction != direction):
            continue
        if limit is not None and d.started and d.next >= limit:
            if direction is not None:
                return
            if all(x.started and x.next >= limit for x in dirs.values()):
                return
            continue  # enough of this direction: do not even read its bytes
        data = seg.payload
        start_rel = (seg.rel_seq + (1 if seg.syn else 0) - 1) % _MOD
        start = _unwrap(start_rel, d.next) if d.started else start_rel
        if not d.started:
            d.started, d.next = True, start
        yield from _add(d, seg.direction, start, data, seg.index)
        if d.pending_bytes > _MAX_PENDING:
            yield from _skip_to(d, seg.direction, min(d.pending), seg.index)
    for name, d in dirs.items():
        if d.pending:
            yield from _skip_to(d, name, min(d.pending), -1)


def _add(d: _Direction, direction: str, start: int, data: bytes, index: int) -> Iterator[Chunk]:
    end = start + len(data)
    if start == d.next and not d.pending:  # the usual case: the next bytes, in order
        d.next = end
        yield Chunk(direction, start, data, index)
        return
    if end <= d.next or not data:
        return  # all of it already delivered: a retransmission
    if start > d.next:
        old = d.pending.get(start)
        if old is None or len(old[0]) < len(data):
            d.pending_bytes += len(data) - (len(old[0]) if old else 0)
            d.pending[start] = (data, index)
        return
    yield Chunk(direction, d.next, data[d.next - start :], index)
    d.next = end
    yield from _drain(d, direction, index)


def _drain(d: _Direction, direction: str, index: int) -> Iterator[Chunk]:
    while d.pending:
        first = min(d.pending)
        if first > d.next:
            return
        data, own = d.pending.pop(first)
        d.pending_bytes -= len(data)
        end = first + len(data)
        if end > d.next:
            yield Chunk(direction, d.next, data[d.next - first :], own if index < 0 else index)
            d.next = end


def _skip_to(d: _Direction, direction: str, offset: int, index: int) -> Iterator[Chunk]:
    """Give up on the bytes before ``offset`` (or before the first queued chunk)."""
    first = min(d.pending) if d.pending else offset
    target = min(offset, first)
    if target <= d.next:
        return
    gap = target - d.next
    d.next = target
    if d.pending and min(d.pending) == target:
        data, own = d.pending.pop(target)
        d.pending_bytes -= len(data)
        yield Chunk(direction, target, data, own if index < 0 else index, gap)
        d.next = target + len(data)
        yield from _drain(d, direction, index)
    else:
        yield Chunk(direction, target, b"", index, gap)
