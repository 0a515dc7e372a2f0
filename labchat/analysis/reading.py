"""Reading a capture file with scapy and building its connections."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .connection import Capture, Connection
from .errors import AnalysisError
from .facts import C2S, MOD, S2C, Segment

__all__ = ["DEFAULT_TLS_PORTS", "load", "looks_like_tls", "scapy_module"]

# Ports decoded as TLS even without a hint: HTTPS, the lab's default TLS port, and the fixture's.
DEFAULT_TLS_PORTS = (443, 8443)
# TLS record content types (RFC 8446 section 5.1) and legacy versions seen in record headers.
TLS_CONTENT_TYPES = {20, 21, 22, 23}


def scapy_module():
    """Import scapy lazily and quietly (it is slow to import and chatty on stderr)."""
    import logging

    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    logging.getLogger("scapy.loading").setLevel(logging.ERROR)
    from scapy import all as scapy_all

    scapy_all.load_layer("tls")
    return scapy_all


def _read_packets(path: Path, warnings: list[str]) -> list:
    sc = scapy_module()
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read ({exc.strerror or exc})") from None
    known = {
        b"\xd4\xc3\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\x3c\x4d",
        b"\x0a\x0d\x0d\x0a",
    }
    if magic not in known:
        raise AnalysisError(f"{path}: not a pcap or pcapng capture file")
    packets: list = []
    try:
        reader = sc.PcapReader(str(path))
    except Exception as exc:  # scapy raises several kinds for a broken header
        raise AnalysisError(f"{path}: not a readable capture ({exc})") from None
    try:
        while True:
            try:
                pkt = reader.read_packet()
            except EOFError:
                break
            if pkt is None:
                break
            packets.append(pkt)
    except Exception as exc:
        warnings.append(
            f"capture ends early after {len(packets)} packets (truncated or damaged file: {exc})"
        )
    finally:
        try:
            reader.close()
        except Exception:
            pass
    return packets


def _flags(tcp) -> str:
    # Order as learners read it: S, F, R, P, A, U, E, C  -> "SA", "PA", "FA", "RA" ...
    value = int(tcp.flags)
    letters = ""
    for bit, ch in ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x10, "A")):
        if value & bit:
            letters += ch
    for bit, ch in ((0x20, "U"), (0x40, "E"), (0x80, "C")):
        if value & bit:
            letters += ch
    return letters or "."


def _options(tcp) -> dict:
    out: dict[str, Any] = {}
    try:
        opts = tcp.options
    except Exception:
        return out
    for opt in opts or []:
        try:
            name, value = opt
        except (TypeError, ValueError):
            continue
        if name == "MSS":
            out["mss"] = value
        elif name == "SAckOK":
            out["sack_perm"] = True
        elif name == "Timestamp":
            out["timestamps"] = tuple(value)
        elif name == "WScale":
            out["wscale"] = value
        elif name == "SAck":
            out["sack"] = tuple(value)
        elif name not in ("NOP", "EOL"):
            out[str(name)] = value
    return out


def _tcp_payload_len(ip, tcp) -> int:
    """Payload length from the IP header (right even when the capture was cut short)."""
    sc = scapy_module()
    doff = (tcp.dataofs or 5) * 4
    if isinstance(ip, sc.IP):
        total = ip.len if ip.len is not None else len(ip)
        return max(0, total - ip.ihl * 4 - doff)
    plen = ip.plen if ip.plen is not None else len(ip.payload)
    ext = len(bytes(ip.payload)) - len(bytes(tcp)) if ip.payload is not tcp else 0
    return max(0, plen - max(0, ext) - doff)


class _Builder:
    """Turns packets into connections (one pass, tshark's stream numbering)."""

    def __init__(self, warnings: list[str]):
        self.warnings = warnings
        self.conns: list[Connection] = []
        self.by_key: dict[tuple, Connection] = {}
        self.base: dict[tuple[int, str], int] = {}  # (stream, direction) -> base seq
        self.next_seq: dict[tuple[int, str], int] = {}  # highest seq+len seen

    def add(self, frame: int, pkt, t0: float) -> None:
        sc = scapy_module()
        ip = pkt.getlayer(sc.IP) or pkt.getlayer(sc.IPv6)
        if ip is None or not ip.haslayer(sc.TCP):
            return
        tcp = ip[sc.TCP]
        try:
            src, dst = (ip.src, tcp.sport), (ip.dst, tcp.dport)
            flags = _flags(tcp)
        except Exception:
            self.warnings.append(f"frame {frame}: TCP header cut short, skipped")
            return
        key = tuple(sorted([src, dst]))
        conn = self.by_key.get(key)
        if conn is not None and flags == "S" and conn.segments:
            first = conn.segments[0]
            closed = any(s.fin or s.rst for s in conn.segments)
            if closed and not (first.syn and first.seq == tcp.seq):
                conn = None  # port reuse: a new connection on the same 4-tuple
        if conn is None:
            if flags == "S":
                client, server = src, dst
                guessed = False
            elif flags.startswith("SA") or flags == "SA":
                client, server = dst, src
                guessed = False
            else:
                # No SYN captured: the lower port is most likely the server's (well-known).
                client, server = (src, dst) if src[1] > dst[1] else (dst, src)
                guessed = True
            conn = Connection(len(self.conns), client, server)
            conn.client_guessed = guessed
            self.conns.append(conn)
            self.by_key[key] = conn
        direction = C2S if src == conn.client else S2C
        other = S2C if direction == C2S else C2S
        seq, ack = int(tcp.seq), int(tcp.ack)
        bkey = (conn.stream, direction)
        if bkey not in self.base:
            self.base[bkey] = seq if "S" in flags else (seq - 1) % MOD
        payload_len = _tcp_payload_len(ip, tcp)
        payload = bytes(tcp.payload)[:payload_len] if payload_len else b""
        truncated = len(payload) < payload_len
        if "A" in flags and (conn.stream, other) not in self.base:
            # Wireshark takes the peer's base from the first ACK it sees for it.
            self.base[(conn.stream, other)] = (ack - 1) % MOD
        rel_seq = (seq - self.base[bkey]) % MOD
        rel_ack = (ack - self.base[(conn.stream, other)]) % MOD if "A" in flags else 0
        seq_len = payload_len + ("S" in flags) + ("F" in flags)
        end = rel_seq + seq_len
        high = self.next_seq.get(bkey)
        retrans = high is not None and seq_len > 0 and end <= high
        self.next_seq[bkey] = max(high or 0, end)
        seg = Segment(
            index=len(conn.segments),
            time=float(pkt.time) - t0,
            direction=direction,
            flags=flags,
            seq=seq,
            ack=ack,
            rel_seq=rel_seq,
            rel_ack=rel_ack,
            payload_len=payload_len,
            window=int(tcp.window),
            options=_options(tcp),
            raw=pkt,
            frame=frame,
            payload=payload,
            retransmission=retrans,
            truncated=truncated,
        )
        conn.segments.append(seg)
        if retrans:
            conn.warnings.append(f"segment {seg.index} (frame {frame}) is a retransmission")
        if truncated and not any("truncated" in w for w in conn.warnings):
            conn.warnings.append(
                "capture truncated (snaplen): payload bytes missing, lengths taken from IP header"
            )


def looks_like_tls(data: bytes) -> bool:
    # Record header: content type, major version 3, minor 0..4 (RFC 8446 section 5.1).
    return len(data) >= 3 and data[0] in TLS_CONTENT_TYPES and data[1] == 3 and data[2] <= 4


def load(
    path: str | Path,
    *,
    keylog: str | Path | None = None,
    tls_ports: Iterable[int] = (),
    embedded_keys: bool = True,
) -> Capture:
    """Read a pcap or pcapng capture and work out its TCP connections and TLS messages.

    Args:
        path: the capture file.
        keylog: an NSS key log (``SSLKEYLOGFILE`` / ``SSLContext.keylog_filename``); when
            given, TLS 1.2 and 1.3 application data is decrypted.
        tls_ports: extra server ports to decode as TLS. Ports 443 and 8443 are always tried,
            and any connection whose first client bytes look like a TLS record is too.
        embedded_keys: use a key log embedded in a pcapng (a Decryption Secrets Block, as
            labchat writes them) the way Wireshark does. False shows what an eavesdropper
            without the keys sees, even in a labchat capture.

    Returns:
        A :class:`Capture`; anything odd in it is listed in ``Capture.warnings``.

    Raises:
        AnalysisError: the file is missing, unreadable or not a pcap/pcapng capture.
    """
    path = Path(path)
    warnings: list[str] = []
    if keylog is not None and not Path(keylog).is_file():
        raise AnalysisError(f"{keylog}: key log file not found")
    packets = _read_packets(path, warnings)
    cap = Capture(path, packets, warnings)
    if not packets:
        warnings.append("the capture holds no packets")
        return cap
    from .tcp import analyse_tcp
    from .tls import attach_tls

    builder = _Builder(warnings)
    t0 = float(packets[0].time)
    for frame, pkt in enumerate(packets, start=1):
        try:
            builder.add(frame, pkt, t0)
        except Exception as exc:  # one odd packet must not spoil the rest
            warnings.append(f"frame {frame}: could not decode TCP ({type(exc).__name__}: {exc})")
    cap._connections = builder.conns
    for conn in builder.conns:
        try:
            analyse_tcp(conn)
        except Exception as exc:  # the facts above stay usable without the analysis
            warnings.append(
                f"connection #{conn.stream}: TCP analysis failed ({type(exc).__name__}: {exc})"
            )
    if not builder.conns:
        warnings.append("no TCP connections in the capture")
        return cap

    ports = set(DEFAULT_TLS_PORTS) | {int(p) for p in tls_ports}
    for conn in cap._connections:
        first = next((s for s in conn.segments if s.direction == C2S and s.payload), None)
        if conn.server[1] in ports or (first is not None and looks_like_tls(first.payload)):
            conn.tls = True
    tls_conns = [c for c in cap._connections if c.tls]
    if tls_conns:
        try:
            attach_tls(cap, tls_conns, keylog, embedded_keys)
        except Exception as exc:
            warnings.append(f"TLS decoding failed: {type(exc).__name__}: {exc}")
    for conn in cap._connections:
        for w in conn.warnings:
            warnings.append(f"connection #{conn.stream}: {w}")
        if conn.client_guessed:
            warnings.append(
                f"connection #{conn.stream}: no SYN captured, client guessed from port numbers"
            )
    return cap
