"""pcapng writing, with the TLS key log embedded so Wireshark decrypts with no settings.

Scapy writes pcapng but not Decryption Secrets Blocks, so the few blocks labchat needs are
written here by hand (pcapng spec, draft-ietf-opsawg-pcapng: SHB, IDB, DSB, EPB).
"""

from __future__ import annotations

import platform
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["decryption_secrets_block", "read_pcapng_blocks", "strip_secrets", "write_pcapng"]


_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_EPB = 0x00000006
_DSB = 0x0000000A
_TLS_KEY_LOG = 0x544C534B  # "TLSK"


def _pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _options(opts: Sequence[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    body = b"".join(struct.pack("<HH", code, len(v)) + _pad4(v) for code, v in opts)
    return body + struct.pack("<HH", 0, 0)


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def decryption_secrets_block(keylog: bytes) -> bytes:
    """A pcapng Decryption Secrets Block carrying an NSS TLS key log."""
    return _block(_DSB, struct.pack("<II", _TLS_KEY_LOG, len(keylog)) + _pad4(keylog))


def write_pcapng(
    path: str | Path,
    packets: Iterable[Any],
    *,
    keylog: bytes | None = None,
    iface: str = "lo",
    linktype: int | None = None,
    comment: str | None = None,
) -> Path:
    """Write scapy packets as pcapng, with an optional TLS key log embedded as a DSB.

    Layout: Section Header Block, one Interface Description Block, the Decryption Secrets
    Block (before any packet, as the spec asks), then one Enhanced Packet Block per packet
    (microsecond timestamps, the default ``if_tsresol``).

    Args:
        path: file to write.
        packets: scapy packets (their ``original`` bytes and ``time`` are used).
        keylog: NSS key log text to embed, or None.
        iface: interface name recorded in the IDB.
        linktype: DLT of the packets; guessed from the first packet if None.
        comment: section comment (``opt_comment``).

    Returns:
        The path written.
    """
    from scapy.config import conf

    pkts = list(packets)
    if linktype is None:
        linktype = 1  # DLT_EN10MB: what Linux lo looks like through libpcap and AF_PACKET
        if pkts:
            linktype = conf.l2types.layer2num.get(type(pkts[0]), 1)
    shb_opts: list[tuple[int, bytes]] = []
    if comment:
        shb_opts.append((1, comment.encode()))
    shb_opts.append((3, platform.system().encode()))  # shb_os
    shb_opts.append((4, b"labchat capture"))  # shb_userappl
    out = bytearray()
    out += _block(_SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _options(shb_opts))
    idb_opts = [(2, iface.encode())]  # if_name
    out += _block(_IDB, struct.pack("<HHI", linktype, 0, 0) + _options(idb_opts))
    if keylog:
        out += decryption_secrets_block(keylog)
    for p in pkts:
        data = getattr(p, "original", None) or bytes(p)
        ts = int(round(float(p.time) * 1_000_000))
        wirelen = getattr(p, "wirelen", None) or len(data)
        body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), wirelen)
        out += _block(_EPB, body + _pad4(data))
    path = Path(path)
    path.write_bytes(bytes(out))
    return path


def read_pcapng_blocks(path: str | Path) -> list[tuple[int, bytes]]:
    """The (block type, body) pairs of a little-endian pcapng file (for tests and checks)."""
    data = Path(path).read_bytes()
    blocks, pos = [], 0
    while pos + 12 <= len(data):
        btype, total = struct.unpack_from("<II", data, pos)
        blocks.append((btype, data[pos + 8 : pos + total - 4]))
        pos += total
    return blocks


def strip_secrets(src: str | Path, out: str | Path) -> Path:
    """Copy a pcapng without its Decryption Secrets Blocks: the packets an eavesdropper has.

    labchat's captures carry their TLS key log inside the file so Wireshark (and scapy)
    decrypt them with no settings; a lesson about what TLS hides needs the file without it.
    """
    data = Path(src).read_bytes()
    kept, pos = bytearray(), 0
    while pos + 12 <= len(data):
        btype, total = struct.unpack_from("<II", data, pos)
        if total < 12:
            break
        if btype != _DSB:
            kept += data[pos : pos + total]
        pos += total
    out = Path(out)
    out.write_bytes(bytes(kept))
    return out
