"""Capture files -> frames: pcap and pcapng (gzip'd or not), read without scapy.

A frame is where its bytes are in the file, not a copy of them: :class:`Source` holds the file
(in memory when small, memory-mapped when large), and everything downstream slices it when it
needs bytes. That keeps a 200,000-packet capture to a few hundred bytes per packet.

The formats: pcap (draft-ietf-opsawg-pcap: 4 magic numbers, microsecond or nanosecond
timestamps, either byte order) and pcapng (draft-ietf-opsawg-pcapng: Section Header, Interface
Description, Enhanced / Simple / obsolete Packet blocks, Decryption Secrets). Frames are
numbered from 1 in file order, as Wireshark numbers them.
"""

from __future__ import annotations

import gzip
import mmap
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .errors import AnalysisError

__all__ = ["Frame", "ReadReport", "Source", "open_source", "read_frames"]

# Files up to this size are read into memory; larger ones are memory-mapped, and the pages
# already parsed are handed back to the kernel as we go (MADV_DONTNEED), so a 1 GB capture
# does not cost 1 GB of resident memory.
IN_MEMORY_LIMIT = 64 * 1024 * 1024
_RELEASE_EVERY = 32 * 1024 * 1024

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"
# pcapng block types (draft-ietf-opsawg-pcapng section 4 and 11.1).
_SHB, _IDB, _OPB, _SPB, _EPB, _DSB = 0x0A0D0D0A, 1, 2, 3, 6, 0x0A
_TLS_KEY_LOG = 0x544C534B  # "TLSK": the DSB secrets type of an NSS key log
_BYTE_ORDER_MAGIC = 0x1A2B3C4D


class Frame(NamedTuple):
    """One captured packet: where its bytes are, how long it was, when, and its link type."""

    number: int
    seconds: int  # timestamp, whole seconds
    fraction: int  # and the rest, in units of 1/resolution s
    resolution: int
    linktype: int
    offset: int  # of the captured bytes in the Source
    caplen: int
    wirelen: int


class Source:
    """The bytes of a capture file: ``bytes`` for a small file, an ``mmap`` for a large one."""

    def __init__(self, data: bytes | mmap.mmap, keep: object = None) -> None:
        self.data = data
        self._keep = keep  # the file object an mmap needs alive (a temporary file for .gz)
        self._released = 0

    def __len__(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the file)."""
        return bytes(self.data[offset : offset + length])

    def scapy_packets(self, only: int | None = None) -> Iterator:
        """Every frame (or only frame number ``only``) dissected by scapy, with its time."""
        from scapy.config import conf
        from scapy.packet import Raw

        for frame in read_frames(self, ReadReport()):
            if only is not None and frame.number != only:
                continue
            cls = conf.l2types.num2layer.get(frame.linktype, Raw)
            pkt = cls(self.read(frame.offset, frame.caplen))
            pkt.time = frame.seconds + frame.fraction / frame.resolution
            pkt.wirelen = frame.wirelen
            yield pkt
            if only is not None:
                return

    def scapy_packet(self, number: int):
        """Frame ``number`` (1-based) dissected by scapy, or None."""
        return next(self.scapy_packets(number), None)

    def release_before(self, offset: int) -> None:
        """Tell the kernel the pages before ``offset`` are not needed now (mmap only)."""
        if not isinstance(self.data, mmap.mmap) or offset - self._released < _RELEASE_EVERY:
            return
        start = self._released - self._released % mmap.PAGESIZE
        end = offset - offset % mmap.PAGESIZE
        if end > start and hasattr(self.data, "madvise"):
            try:
                self.data.madvise(mmap.MADV_DONTNEED, start, end - start)
            except (OSError, ValueError, AttributeError):
                pass
        self._released = end


def open_source(path: Path) -> Source:
    """Open a capture file (gzip'd or not) as a :class:`Source`.

    Raises:
        AnalysisError: the file is missing, unreadable, or not a pcap/pcapng capture.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            size = os.fstat(f.fileno()).st_size
            if head[:2] == _GZIP_MAGIC:
                return _gunzip(path)
            _check_magic(path, head)
            if size <= IN_MEMORY_LIMIT:
                f.seek(0)
                return Source(f.read())
            return Source(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_magic(path: Path, head: bytes) -> None:
    if head not in _PCAP_MAGICS and head != _PCAPNG_MAGIC:
        raise AnalysisError(f"{path}: not a pcap or pcapng capture file")


def _gunzip(path: Path) -> Source:
    """Decompress into memory, or into an anonymous temporary file once it grows large."""
    buf = bytearray()
    spill = None
    try:
        with gzip.open(path, "rb") as gz:
            while True:
                try:
                    chunk = gz.read(1 << 20)
                except (EOFError, gzip.BadGzipFile, zlib.error):
                    break  # a gzip cut short: keep what decompressed (the reader warns)
                if not chunk:
                    break
                if spill is not None:
                    spill.write(chunk)
                    continue
                buf += chunk
                if len(buf) > IN_MEMORY_LIMIT:
                    spill = tempfile.TemporaryFile(prefix="labchat-gunzip-")
                    spill.write(buf)
                    buf = bytearray()
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if spill is None:
        _check_magic(path, bytes(buf[:4]))
        return Source(bytes(buf))
    spill.flush()
    data = mmap.mmap(spill.fileno(), 0, access=mmap.ACCESS_READ)
    _check_magic(path, data[:4])
    return Source(data, keep=spill)


@dataclass
class ReadReport:
    """What the reader noticed besides frames: embedded key logs, where the file was cut."""

    key_logs: list[bytes] = field(default_factory=list)
    cut_short: bool = False
    problem: str = ""


def read_frames(source: Source, report: ReadReport) -> Iterator[Frame]:
    """Every frame of the capture, in file order. Damage ends the iteration (see ``report``)."""
    head = bytes(source.data[:4])
    if head == _PCAPNG_MAGIC:
        yield from _read_pcapng(source, report)
    else:
        yield from _read_pcap(source, report, *_PCAP_MAGICS[head])


def _read_pcap(source: Source, report: ReadReport, order: str, resolution: int) -> Iterator[Frame]:
    data = source.data
    size = len(data)
    if size < 24:
        report.cut_short, report.problem = True, "the file header is cut short"
        return
    (linktype,) = struct.unpack_from(order + "I", data, 20)
    # The top bits of the link-type field carry FCS information (pcap spec section 4).
    linktype &= 0x0FFFFFFF
    unpack = struct.Struct(order + "IIII").unpack_from
    pos, number = 24, 0
    while pos < size:
        if pos + 16 > size:
            report.cut_short, report.problem = True, "a packet header is cut short"
            return
        sec, frac, caplen, wirelen = unpack(data, pos)
        if caplen > 0x4000000:  # 64 MiB: no real frame; the file is damaged here
            report.problem = f"a packet header claims {caplen} bytes"
            return
        if pos + 16 + caplen > size:
            report.cut_short, report.problem = True, "the last packet is cut short"
            return
        number += 1
        yield Frame(number, sec, frac, resolution, linktype, pos + 16, caplen, wirelen)
        pos += 16 + caplen
        source.release_before(pos)


@dataclass
class _Interface:
    linktype: int
    resolution: int = 1_000_000
    offset_seconds: int = 0
    snaplen: int = 0


def _read_pcapng(source: Source, report: ReadReport) -> Iterator[Frame]:
    data = source.data
    size = len(data)
    order = "<"
    interfaces: list[_Interface] = []
    pos, number = 0, 0
    while pos < size:
        if pos + 12 > size:
            report.cut_short, report.problem = True, "a block header is cut short"
            return
        if bytes(data[pos : pos + 4]) == _PCAPNG_MAGIC:
            bom = bytes(data[pos + 8 : pos + 12])
            order = "<" if struct.unpack("<I", bom)[0] == _BYTE_ORDER_MAGIC else ">"
            interfaces = []  # each section numbers its interfaces from 0
        btype, total = struct.unpack_from(order + "II", data, pos)
        if total < 12 or total % 4:
            report.problem = f"a block at byte {pos} has a bad length ({total})"
            return
        if pos + total > size:
            report.cut_short, report.problem = True, "the last block is cut short"
            return
        body = pos + 8
        end = pos + total - 4
        if btype == _EPB or btype == _OPB:
            if btype == _EPB:
                iface, ts_hi, ts_lo, caplen, wirelen = struct.unpack_from(
                    order + "IIIII", data, body
                )
            else:
                iface, _drops, ts_hi, ts_lo, caplen, wirelen = struct.unpack_from(
                    order + "HHIIII", data, body
                )
            if iface >= len(interfaces) or body + 20 + caplen > end:
                report.problem = f"a packet block at byte {pos} is malformed"
                return
            number += 1
            yield _pcapng_frame(number, interfaces[iface], ts_hi, ts_lo, body + 20, caplen, wirelen)
        elif btype == _SPB:
            (wirelen,) = struct.unpack_from(order + "I", data, body)
            if not interfaces:
                report.problem = "a simple packet block comes before any interface"
                return
            snap = interfaces[0].snaplen or wirelen
            caplen = min(wirelen, snap, end - (body + 4))
            number += 1
            yield _pcapng_frame(number, interfaces[0], 0, 0, body + 4, caplen, wirelen)
        elif btype == _IDB:
            linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", data, body)
            iface = _Interface(linktype, snaplen=snaplen)
            _interface_options(data, body + 8, end, order, iface)
            interfaces.append(iface)
        elif btype == _DSB:
            stype, slen = struct.unpack_from(order + "II", data, body)
            if stype == _TLS_KEY_LOG and body + 8 + slen <= end:
                report.key_logs.append(bytes(data[body + 8 : body + 8 + slen]))
        pos += total
        source.release_before(pos)


def _interface_options(data, pos: int, end: int, order: str, iface: _Interface) -> None:
    """if_tsresol (9) and if_tsoffset (14), the two options that change timestamps."""
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", data, pos)
        if code == 0:
            return
        value = bytes(data[pos + 4 : pos + 4 + length])
        if code == 9 and length >= 1:
            v = value[0]
            iface.resolution = 2 ** (v & 0x7F) if v & 0x80 else 10 ** (v & 0x7F)
        elif code == 14 and length == 8:
            (iface.offset_seconds,) = struct.unpack(order + "q", value)
        pos += 4 + length + (-length % 4)


def _pcapng_frame(number, iface: _Interface, hi: int, lo: int, off, caplen, wirelen) -> Frame:
    ticks = (hi << 32) | lo
    sec, frac = divmod(ticks, iface.resolution)
    return Frame(
        number,
        sec + iface.offset_seconds,
        frac,
        iface.resolution,
        iface.linktype,
        off,
        caplen,
        wirelen,
    )
