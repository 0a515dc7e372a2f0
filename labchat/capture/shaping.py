"""How to make the lab network's link worse than a perfect wire: rate, delay, loss, chosen drops.

`Shaping` says what to do to the link, `Drop` which segments to lose, the same ones every run.
`nft_script` turns the drops into the nftables ruleset `labchat.capture.netns.LabNetwork`
loads on each host: the Nth segment of a kind is chosen by a per-rule counter (``numgen inc``,
which starts at 0), random loss by ``numgen random mod 100 < N``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["C2S", "DEEP_QUEUE", "S2C", "Drop", "Shaping", "nft_match", "nft_script", "tbf_args"]

#: The two directions of the lab network's connection: client to server, server to client.
C2S, S2C = "c->s", "s->c"

# numgen inc counts 0, 1, 2, ... modulo this; large enough never to wrap in a lesson.
_NUMGEN_MOD = 1_000_000_000

_KINDS = ("syn", "data", "fin", "ack", "rst")

#: The rate limit's queue when none is chosen: deep (4 MB), so the link slows TCP down instead
#: of dropping (loss is the drop rules' job, not the shaper's).
DEEP_QUEUE = 4_000_000


@dataclass(frozen=True)
class Drop:
    """Drop chosen segments of one direction, the same ones every run.

    Attributes:
        kind: ``syn`` (SYN, or SYN-ACK for ``s->c``), ``data`` (payload > 0), ``fin``,
            ``ack`` (a pure ACK: no payload, no SYN/FIN/RST) or ``rst``.
        nth: which one, counting from 1 (retransmissions count too); 0 drops every one.
        direction: ``c->s`` or ``s->c``.
        at: ``ingress`` (at the receiving host, after the capture point saw it: a lost
            segment on the wire) or ``egress`` (at the sending host: it never leaves).
    """

    kind: str
    nth: int = 1
    direction: str = C2S
    at: str = "ingress"

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown segment kind {self.kind!r}; choose one of {_KINDS}")
        if self.direction not in (C2S, S2C):
            raise ValueError(f"direction must be {C2S!r} or {S2C!r}")
        if self.at not in ("ingress", "egress"):
            raise ValueError("at must be 'ingress' or 'egress'")
        if self.nth < 0:
            raise ValueError("nth counts from 1 (0 means every one)")

    def describe(self) -> str:
        """``"the 3rd data segment c->s"``."""
        what = {"syn": "SYN", "data": "data segment", "fin": "FIN", "ack": "pure ACK"}.get(
            self.kind, "RST"
        )
        if self.kind == "syn" and self.direction == S2C:
            what = "SYN-ACK"
        which = "every" if self.nth == 0 else _ordinal(self.nth)
        where = "before it reaches the wire" if self.at == "egress" else "on the link"
        return f"{which} {what} {self.direction}, dropped {where}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}" if n != 1 else "first"


@dataclass(frozen=True)
class Shaping:
    """How to make the link worse than a perfect wire.

    Attributes:
        rate: rate limit in each direction, as tc writes it (``"2mbit"``), or None.
        queue_bytes: how many bytes the rate limit's queue holds before it drops (tbf
            ``limit``); None: `DEEP_QUEUE`, which never drops in a lesson.
        delay_ms: one-way delay added in each direction (needs ``sch_netem``), or None.
        loss_percent: random loss in each direction, 0..100.
        drops: deterministic drops (see :class:`Drop`).
    """

    rate: str | None = None
    queue_bytes: int | None = None
    delay_ms: float | None = None
    loss_percent: float = 0.0
    drops: tuple[Drop, ...] = ()

    @property
    def rate_bps(self) -> float | None:
        """The rate limit in bits per second (tc's ``bit``, ``kbit``, ``mbit``, ``gbit``:
        powers of 1000), or None without one.

        Raises:
            ValueError: a rate tc would read in another unit (``mbps`` is bytes to tc).
        """
        if not self.rate:
            return None
        for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)):
            if self.rate.endswith(unit):
                return float(self.rate[: -len(unit)]) * scale
        raise ValueError(f"rate {self.rate!r}: write it in bit, kbit, mbit or gbit")

    def describe(self) -> list[str]:
        """One line per change to the link (a perfect link if none)."""
        out = []
        if self.rate:
            queue = f", a {self.queue_bytes}-byte queue" if self.queue_bytes else ""
            out.append(f"rate limit {self.rate} each way{queue} (tc tbf)")
        if self.delay_ms:
            out.append(f"{self.delay_ms:g} ms delay each way (tc netem)")
        if self.loss_percent:
            out.append(f"{self.loss_percent:g}% random loss each way (nft numgen random)")
        out += [d.describe() + " (nft numgen inc)" for d in self.drops]
        return out or ["a perfect 1500-byte Ethernet link"]


def tbf_args(shaping: Shaping, mtu: int) -> list[str]:
    """The ``tc qdisc ... tbf`` arguments of the rate limit (``shaping.rate`` must be set).

    burst: two full Ethernet frames (tbf needs at least one to send anything); limit: the
    chosen queue, in bytes, or `DEEP_QUEUE`.
    """
    if not shaping.rate:
        raise ValueError("no rate limit to build a tbf qdisc for")
    limit = shaping.queue_bytes or DEEP_QUEUE
    return ["tbf", "rate", shaping.rate, "burst", str(2 * (mtu + 14)), "limit", str(limit)]


def nft_match(drop: Drop, port: int) -> list[str]:
    """nft match expressions (one per alternative) for the segments ``drop`` chooses.

    Args:
        drop: which segments.
        port: the server's port: only its connection is matched.

    Returns:
        One nft match expression per alternative (a segment matching any of them is chosen).
    """
    ports = f"tcp dport {port}" if drop.direction == C2S else f"tcp sport {port}"
    if drop.kind == "syn":
        want = "syn" if drop.direction == C2S else "syn | ack"
        return [f"{ports} tcp flags & (syn | ack) == {want}"]
    if drop.kind == "fin":
        return [f"{ports} tcp flags & fin == fin"]
    if drop.kind == "rst":
        return [f"{ports} tcp flags & rst == rst"]
    # No arithmetic in nft: "payload > 0" is "IP total length > 20 + 4 * data offset", one rule
    # per possible data offset (Linux never sends IP options, so the IP header is 20 bytes).
    out = []
    for doff in range(5, 16):
        header = 20 + 4 * doff
        if drop.kind == "data":
            out.append(f"{ports} tcp doff {doff} ip length > {header}")
        else:
            out.append(
                f"{ports} tcp flags & (syn | fin | rst | ack) == ack "
                f"tcp doff {doff} ip length {header}"
            )
    return out


def nft_script(rules: list[tuple[str, Drop | None]], port: int, loss: float) -> str:
    """The nftables ruleset (``nft -f`` input) of one host.

    Args:
        rules: ``(hook, drop)`` pairs: ``ingress`` or ``egress``, and the `Drop` (None: the
            random loss rule).
        port: the server's port: only its connection is touched.
        loss: random loss in percent (for the None rules).

    Returns:
        A ``table inet labchat`` with one counting chain per drop.
    """
    lines = ["table inet labchat {"]
    body: dict[str, list[str]] = {"ingress": [], "egress": []}
    for i, (at, drop) in enumerate(rules):
        if drop is None:
            body[at].append(
                f'tcp sport {port} numgen random mod 100 < {loss:g} counter drop comment "r{i}"'
            )
            body[at].append(
                f'tcp dport {port} numgen random mod 100 < {loss:g} counter drop comment "r{i}"'
            )
            continue
        # numgen inc is evaluated only for packets that reach it, so it counts just the chosen
        # kind of segment: 0 for the first, 1 for the second, ...
        pick = "" if drop.nth == 0 else f"numgen inc mod {_NUMGEN_MOD} {drop.nth - 1} "
        lines.append(f'  chain pick{i} {{ {pick}counter drop comment "r{i}"; }}')
        for m in nft_match(drop, port):
            body[at].append(f"{m} jump pick{i}")
    hooks = {"ingress": "prerouting priority -300", "egress": "output priority 0"}
    for at, exprs in body.items():
        if exprs:
            lines.append(f"  chain {at} {{")
            lines.append(f"    type filter hook {hooks[at]}; policy accept;")
            lines += [f"    {e}" for e in exprs]
            lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
