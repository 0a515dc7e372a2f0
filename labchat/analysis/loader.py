"""``load()``: a capture file -> a :class:`Capture` with its connections and TLS messages.

Two passes, both linear: the frames once, in file order (headers, connections, tshark's TCP
analysis), then each connection's streams (what they carry, TLS records and decryption),
reading payload bytes from the file only there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from .builder import Builder
from .capture import Capture
from .connection import Connection
from .errors import AnalysisError
from .facts import C2S, S2C
from .pcapfile import ReadReport, open_source, read_frames
from .reassembly import reassemble
from .streams import classify
from .tls.keylog import KeyLog
from .tls.session import TLSDecoder

__all__ = ["DEFAULT_TLS_PORTS", "Progress", "load"]

# Ports decoded as TLS even without a hint: HTTPS and the lab's default TLS port.
DEFAULT_TLS_PORTS = (443, 8443)

#: Called now and then with (bytes read, bytes in the file).
Progress = Callable[[int, int], None]
_PROGRESS_EVERY = 8192  # frames between progress calls


def _read_keylog(keylog: str | Path) -> KeyLog:
    path = Path(keylog)
    if not path.is_file():
        raise AnalysisError(f"{keylog}: key log file not found")
    try:
        keys = KeyLog.from_file(path)
    except OSError as exc:
        raise AnalysisError(f"{keylog}: cannot read the key log ({exc.strerror or exc})") from None
    if not keys.valid:
        raise AnalysisError(
            f"{keylog}: not an NSS key log (none of its {keys.lines} lines is a key-log line "
            "such as 'CLIENT_RANDOM <64 hex digits> <hex>')"
        )
    return keys


def load(
    path: str | Path,
    *,
    keylog: str | Path | None = None,
    tls_ports: Iterable[int] = (),
    embedded_keys: bool = True,
    progress: Progress | None = None,
) -> Capture:
    """Read a pcap or pcapng capture (gzip'd or not) and work out its TCP connections and TLS.

    Args:
        path: the capture file (``.pcap``, ``.pcapng``, either of them gzip'd).
        keylog: an NSS key log (``SSLKEYLOGFILE`` / ``SSLContext.keylog_filename``); when
            given, TLS 1.2 and 1.3 records are decrypted. Lines that are not key-log lines are
            counted in a warning.
        tls_ports: server ports to decode as TLS as well as 443 and 8443. Any connection whose
            first bytes are TLS records is decoded whatever its port.
        embedded_keys: use a key log embedded in a pcapng (a Decryption Secrets Block, as
            labchat writes them) the way Wireshark does. False shows what an eavesdropper
            without the keys sees, even in a labchat capture.
        progress: called with (bytes read, file size) while the frames are read.

    Returns:
        A :class:`Capture`; anything odd in it is listed in ``Capture.warnings``.

    Raises:
        AnalysisError: the file is missing, unreadable or not a capture; the key log is
            missing, unreadable or holds no key-log line.
    """
    path = Path(path)
    warnings: list[str] = []
    keys = _read_keylog(keylog) if keylog is not None else None
    if keys is not None and keys.problem():
        warnings.append(keys.problem())
    source = open_source(path)
    report = ReadReport()
    builder = Builder(source)
    size = len(source)
    count = 0
    for frame in read_frames(source, report):
        count = frame.number
        try:
            builder.add(frame)
        except (ValueError, IndexError) as exc:  # one odd frame must not spoil the rest
            warnings.append(f"frame {frame.number}: not decoded ({type(exc).__name__}: {exc})")
        if progress is not None and not count % _PROGRESS_EVERY:
            progress(frame.offset, size)
    if progress is not None:
        progress(size, size)
    _report_reading(report, builder, count, warnings)
    if embedded_keys and report.key_logs:
        keys = keys or KeyLog()
        for n, text in enumerate(report.key_logs, start=1):
            keys.add(text, f"{path.name}: decryption secrets block {n}")
    conns = builder.connections
    ports = set(DEFAULT_TLS_PORTS) | {int(p) for p in tls_ports}
    for conn in conns:
        try:
            _streams(conn, ports, keys)
        except Exception as exc:  # one odd connection must not spoil the rest of the capture
            conn.warnings.append(f"stream decoding failed ({type(exc).__name__}: {exc})")
        for w in conn.warnings:
            warnings.append(f"connection #{conn.stream}: {w}")
        if conn.client_guessed:
            warnings.append(
                f"connection #{conn.stream}: no SYN captured, client guessed from port numbers"
            )
    _number_like_tshark(conns)
    if count and not conns:
        warnings.append("no TCP connections in the capture")
    return Capture(path, conns, warnings, packet_count=count, source=source)


def _report_reading(report: ReadReport, builder: Builder, count: int, warnings: list[str]):
    if report.cut_short:
        warnings.append(f"file cut short after {count} packets ({report.problem})")
    elif report.problem:
        warnings.append(f"file damaged after {count} packets: {report.problem}")
    if not count:
        warnings.append("the capture holds no packets")
    skipped = builder.skipped
    if skipped.unsupported:
        total = sum(skipped.unsupported.values())
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.unsupported.items()))
        warnings.append(f"{total} packets in an unsupported encapsulation ({kinds})")
    if skipped.fragments:
        warnings.append(f"{skipped.fragments} IP fragments not reassembled (left out)")
    if skipped.short:
        warnings.append(f"{skipped.short} frames too short for their headers (left out)")
    if builder.tso:
        warnings.append(
            f"{builder.tso} segments with IP length 0 (TCP segmentation offload): their "
            "length is taken from the frame"
        )
    if builder.truncated:
        warnings.append(
            f"capture truncated (snaplen): {builder.truncated} segments miss payload bytes; "
            "lengths taken from the IP header"
        )


# tshark decodes SOCKS on this port, and its SOCKS dissector opens a conversation for the
# tunnel when the first tunnelled bytes arrive, which takes a tcp.stream number of its own
# (seen with tshark 4.0 on SOCKS4 and SOCKS5 captures; HTTP CONNECT does not do this).
_SOCKS_PORT = 1080


def _frame_of_byte(conn: Connection, direction: str, offset: int) -> int:
    """The frame whose payload first carried byte ``offset`` of one direction's stream."""
    for seg in conn.segments:
        if seg.direction == direction and seg.payload_len:
            first = seg.rel_seq - 1 + (1 if seg.syn else 0)
            if first <= offset < first + seg.payload_len:
                return seg.frame
    return 0


def _number_like_tshark(conns: list[Connection]) -> None:
    """Skip the tcp.stream numbers tshark's SOCKS dissector uses up (see _SOCKS_PORT)."""
    used = sorted(conn.tls_reply_frame for conn in conns
                  if conn.proxy.startswith("SOCKS") and conn.server[1] == _SOCKS_PORT
                  and conn.tls_reply_frame)  # fmt: skip
    if not used:
        return
    for conn in conns:
        first = conn.segments[0].frame if conn.segments else 0
        conn.stream += sum(1 for frame in used if frame < first)


def _streams(conn: Connection, ports: set[int], keys: KeyLog | None) -> None:
    """Work out what the connection carries and decode its TLS."""
    kind = classify(conn.segments, conn.server[1] in ports)
    if kind.note:
        conn.warnings.append(kind.note)
    conn.tls, conn.proxy, conn.starttls = kind.tls, kind.proxy, kind.starttls
    start = dict(kind.start)
    if kind.proxy:
        frames = [_frame_of_byte(conn, d, start.get(d, 0)) for d in (C2S, S2C)]
        conn.tls_reply_frame = min((f for f in frames if f), default=0)
    if not kind.tls:
        return
    decoder = TLSDecoder(conn.segments, keys, conn.warnings, dict(kind.start))
    for chunk in reassemble(conn.segments):
        decoder.feed(chunk)
    conn.tls_info = decoder.info
    if keys is not None and decoder.info.client_random and not decoder.info.keys:
        conn.warnings.append(
            f"the key log has no keys for this connection (client random "
            f"{decoder.info.client_random[:16]}...)"
        )
