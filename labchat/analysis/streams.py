"""What a connection's byte streams carry: TLS from the first byte, TLS through a proxy
tunnel (HTTP CONNECT, RFC 9110 section 9.3.6; SOCKS5, RFC 1928 and RFC 1929; SOCKS4), TLS
after a STARTTLS upgrade (SMTP RFC 3207, IMAP RFC 9051, POP3 RFC 2595 "STLS", FTP RFC 4217
"AUTH TLS"), or something else.

Only the first bytes of each direction are looked at, so deciding costs little however long
the connection is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .facts import C2S, S2C, Segment
from .reassembly import reassemble
from .tls.session import looks_like_record

__all__ = ["StreamKind", "classify"]

PREFIX = 16 * 1024  # bytes of each direction looked at
_MAX_SEGMENTS = 256  # data segments of each direction looked at, at most


@dataclass(frozen=True)
class StreamKind:
    """``tls``: the connection carries TLS; ``start``: where it begins in each direction."""

    tls: bool
    proxy: str = ""
    starttls: bool = False
    start: tuple[tuple[str, int], ...] = ()
    note: str = ""


def _prefix(segments: list[Segment]) -> dict[str, bytes]:
    """The first bytes of each direction, reading only the segments that hold them."""
    counts = {C2S: [0, 0], S2C: [0, 0]}  # bytes, data segments
    needed = {C2S: 0, S2C: 0}  # segments up to here hold each direction's prefix
    for i, seg in enumerate(segments):
        if seg.payload_len:
            c = counts[seg.direction]
            if c[0] < PREFIX and c[1] < _MAX_SEGMENTS:
                c[0] += seg.payload_len
                c[1] += 1
                needed[seg.direction] = i + 1
    out = {C2S: bytearray(), S2C: bytearray()}
    for chunk in reassemble(segments[: max(needed.values())], PREFIX):
        if chunk.gap and not out[chunk.direction]:
            break
        out[chunk.direction] += chunk.data
    return {d: bytes(v[:PREFIX]) for d, v in out.items()}


def _tls_at(data: bytes, pos: int) -> bool:
    """A TLS record starts at ``pos``, and what follows it is a record too (or nothing)."""
    if not looks_like_record(data, pos):
        return False
    nxt = pos + 5 + ((data[pos + 3] << 8) | data[pos + 4])
    return nxt >= len(data) or looks_like_record(data, nxt)


def _http_connect(c: bytes, s: bytes) -> tuple[int, int] | None:
    if not c.startswith(b"CONNECT ") or not s.startswith(b"HTTP/1."):
        return None
    c_end, s_end = c.find(b"\r\n\r\n"), s.find(b"\r\n\r\n")
    if c_end < 0 or s_end < 0 or s[9:10] != b"2":  # a 2xx status opens the tunnel
        return None
    return c_end + 4, s_end + 4


def _socks5(c: bytes, s: bytes) -> tuple[int, int] | None:
    if len(c) < 3 or c[0] != 5 or len(s) < 2 or s[0] != 5:
        return None
    ci, si = 2 + c[1], 2
    if s[1] == 2:  # username/password sub-negotiation (RFC 1929)
        if ci + 2 > len(c):
            return None
        ulen = c[ci + 1]
        ci += 2 + ulen + 1 + c[ci + 2 + ulen]
        si += 2
    elif s[1] != 0:
        return None
    if ci + 5 > len(c) or c[ci] != 5 or si + 5 > len(s) or s[si] != 5 or s[si + 1] != 0:
        return None

    def after_address(data: bytes, at: int) -> int:
        atyp = data[at + 3]
        size = {1: 4, 4: 16}.get(atyp, data[at + 4] + 1 if atyp == 3 else -1)
        return at + 4 + size + 2 if size >= 0 else -1

    cs, ss = after_address(c, ci), after_address(s, si)
    return (cs, ss) if cs > 0 and ss > 0 else None


def _socks4(c: bytes, s: bytes) -> tuple[int, int] | None:
    if len(c) < 9 or c[0] != 4 or c[1] != 1 or len(s) < 8 or s[0] != 0 or s[1] != 0x5A:
        return None
    end = c.find(b"\x00", 8)
    if end < 0:
        return None
    if c[4:7] == b"\x00\x00\x00" and c[7]:  # SOCKS4a: a host name follows the user id
        end = c.find(b"\x00", end + 1)
        if end < 0:
            return None
    return end + 1, 8


_UPGRADES = (b"STARTTLS", b"STLS", b"AUTH TLS", b"AUTH SSL")


def _starttls(c: bytes, s: bytes) -> tuple[int, int] | None:
    """After the client's upgrade command line, and after a server line: TLS records."""
    pos = 0
    while (end := c.find(b"\n", pos)) >= 0:
        line = c[pos:end].rstrip(b"\r").upper()
        pos = end + 1
        if any(line == u or line.endswith(b" " + u) for u in _UPGRADES) and _tls_at(c, pos):
            spos = 0
            while (send := s.find(b"\n", spos)) >= 0:
                spos = send + 1
                if _tls_at(s, spos):
                    return pos, spos
            return None
    return None


def classify(segments: list[Segment], tls_port: bool) -> StreamKind:
    """Decide what the connection carries from the first bytes of each direction.

    Args:
        segments: the connection's segments.
        tls_port: the server port is one the caller named as TLS (or 443/8443).
    """
    prefix = _prefix(segments)
    c, s = prefix[C2S], prefix[S2C]
    if _tls_at(c, 0) or _tls_at(s, 0):
        return StreamKind(True)
    for name, finder in (("HTTP CONNECT", _http_connect), ("SOCKS5", _socks5), ("SOCKS4", _socks4)):
        found = finder(c, s)
        if found is not None and (_tls_at(c, found[0]) or _tls_at(s, found[1])):
            return StreamKind(True, name, start=((C2S, found[0]), (S2C, found[1])))
    found = _starttls(c, s)
    if found is not None:
        return StreamKind(True, start=((C2S, found[0]), (S2C, found[1])), starttls=True)
    if tls_port and (c or s):
        return StreamKind(False, note="given as a TLS port, but the stream is not TLS")
    return StreamKind(tls_port)
