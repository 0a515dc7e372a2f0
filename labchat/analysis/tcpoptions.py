"""TCP options: raw option bytes -> (name, value) pairs and the dict analysis uses.

Kinds (IANA "TCP Option Kind Numbers"): 0 EOL, 1 NOP, 2 MSS (RFC 9293), 3 window scale
(RFC 7323), 4 SACK permitted and 5 SACK (RFC 2018), 8 timestamps (RFC 7323), 28 user timeout
(RFC 5482), 29 TCP-AO (RFC 5925), 30 MPTCP (RFC 8684), 34 Fast Open cookie (RFC 7413).
The names are those scapy gives them, which labchat used before it parsed options itself.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["decode_options", "options_dict", "sack_edges"]

_NAMES = {
    0: "EOL",
    1: "NOP",
    2: "MSS",
    3: "WScale",
    4: "SAckOK",
    5: "SAck",
    8: "Timestamp",
    28: "UTO",
    29: "AO",
    30: "MPTCP",
    34: "TFO",
}
_DICT_KEYS = {
    "MSS": "mss",
    "WScale": "wscale",
    "SAckOK": "sack_perm",
    "Timestamp": "timestamps",
    "SAck": "sack",
}


def decode_options(raw: bytes) -> list[tuple[str, Any]]:
    """The options in header order as (name, value); a malformed tail ends the list.

    Values: MSS and WScale an int, Timestamp a (TSval, TSecr) pair, SAck the edges as a flat
    tuple (left, right, left, right ...), SAckOK ``b""``, NOP and EOL None, others raw bytes.
    """
    out: list[tuple[str, Any]] = []
    pos, end = 0, len(raw)
    while pos < end:
        kind = raw[pos]
        if kind == 0:
            out.append(("EOL", None))
            break
        if kind == 1:
            out.append(("NOP", None))
            pos += 1
            continue
        if pos + 1 >= end:
            break
        length = raw[pos + 1]
        if length < 2 or pos + length > end:
            break  # malformed: Wireshark stops here too
        body = raw[pos + 2 : pos + length]
        name = _NAMES.get(kind, f"Kind{kind}")
        value: Any = body
        if kind == 2 and len(body) == 2:
            value = struct.unpack("!H", body)[0]
        elif kind == 3 and len(body) == 1:
            value = body[0]
        elif kind == 8 and len(body) == 8:
            value = struct.unpack("!II", body)
        elif kind == 5 and len(body) % 8 == 0:
            value = struct.unpack(f"!{len(body) // 4}I", body)
        out.append((name, value))
        pos += length
    return out


def options_dict(raw: bytes) -> dict[str, Any]:
    """``{"mss": 1460, "wscale": 7, "sack_perm": True, "timestamps": (a, b), "sack": (...)}``."""
    out: dict[str, Any] = {}
    for name, value in decode_options(raw):
        if name in ("NOP", "EOL"):
            continue
        key = _DICT_KEYS.get(name, name)
        out[key] = True if name == "SAckOK" else value
    return out


def sack_edges(raw: bytes) -> tuple[int, ...]:
    """The SACK option's edges (absolute sequence numbers), or () without one. Fast path."""
    if len(raw) < 10 or 5 not in raw:
        return ()
    for name, value in decode_options(raw):
        if name == "SAck" and isinstance(value, tuple):
            return value
    return ()
