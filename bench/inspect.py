"""`labchat inspect` against tshark on large captures: time and peak memory, side by side.

Two captures are made here (not committed; they are large):

* ``bulk-200k.pcap``: one TCP connection of 200,000 packets (a 190 MB upload: 1448-byte
  segments, an ACK every second segment, a few losses with fast retransmissions);
* ``tls-50k.pcap`` + ``tls-50k.keys.log``: one TLS 1.3 connection of 50,000 packets (a 36 MB
  download), made with Python's ssl over memory BIOs, so its records and keys are real.

Each command runs in its own process; its wall time and peak RSS (``wait4``'s ru_maxrss) are
the median of ``--runs`` runs. The issue-16 targets: 200,000 packets in under 10 s and under
400 MB; the TLS connection in under 5 s.

    python -m bench.inspect [--runs 3] [--keep DIR] [--only bulk-200k|tls-50k]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MSS = 1448
_ETH = bytes.fromhex("0200000000020200000000010800")
_OPTS = b"\x01\x01\x08\x0a" + b"\x00" * 8  # NOP NOP timestamps: a 32-byte TCP header


def _checksum_free_packet(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes,
    window: int = 2048,
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 8 << 4, flags, window, 0, 0) + _OPTS
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0, src, dst
    )
    return _ETH + ip + tcp + payload


class _Writer:
    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.t = 1_700_000_000.0
        self.count = 0

    def write(self, frame: bytes, dt: float = 0.00001) -> None:
        self.t += dt
        sec = int(self.t)
        self.f.write(struct.pack("<IIII", sec, int((self.t - sec) * 1e6), len(frame), len(frame)))
        self.f.write(frame)
        self.count += 1

    def close(self) -> None:
        self.f.close()


_C, _S = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def _handshake(w: _Writer, cport: int, sport: int, cisn: int, sisn: int) -> None:
    w.write(_checksum_free_packet(_C, _S, cport, sport, cisn, 0, 0x02, b""))
    w.write(_checksum_free_packet(_S, _C, sport, cport, sisn, cisn + 1, 0x12, b""))
    w.write(_checksum_free_packet(_C, _S, cport, sport, cisn + 1, sisn + 1, 0x10, b""))


def make_bulk(path: Path, packets: int = 200_000) -> None:
    """One upload: two data segments, one ACK, repeated; a loss every 20,000 packets."""
    w = _Writer(path)
    cport, sport, cisn, sisn = 40000, 5001, 1000, 9000
    _handshake(w, cport, sport, cisn, sisn)
    seq, acked = cisn + 1, cisn + 1
    data = bytes(i % 251 for i in range(MSS))
    n = 0
    while w.count < packets - 4:
        n += 1
        lost = n % 7000 == 0
        w.write(_checksum_free_packet(_C, _S, cport, sport, seq, sisn + 1, 0x18, data))
        if lost:  # three duplicate ACKs, then the fast retransmission
            for _ in range(3):
                w.write(_checksum_free_packet(_S, _C, sport, cport, sisn + 1, acked, 0x10, b""))
            w.write(_checksum_free_packet(_C, _S, cport, sport, seq, sisn + 1, 0x18, data))
        seq += MSS
        if n % 2 == 0:
            acked = seq
            w.write(_checksum_free_packet(_S, _C, sport, cport, sisn + 1, acked, 0x10, b""))
    w.write(_checksum_free_packet(_C, _S, cport, sport, seq, sisn + 1, 0x11, b""))
    w.write(_checksum_free_packet(_S, _C, sport, cport, sisn + 1, seq + 1, 0x11, b""))
    w.write(_checksum_free_packet(_C, _S, cport, sport, seq + 1, sisn + 2, 0x10, b""))
    w.close()


def _tls_flights(size: int, keylog: Path) -> list[tuple[int, bytes]]:
    """A real TLS 1.3 session over memory BIOs: (0 client / 1 server, bytes) in wire order."""
    from labchat.certs import CA  # a throwaway lab CA and certificate, in memory

    ca = CA()
    leaf = ca.issue_cert("localhost")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(sctx)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(cctx)
    cctx.keylog_filename = str(keylog)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    flights: list[tuple[int, bytes]] = []

    def step(side, action) -> None:
        try:
            action()
        except ssl.SSLWantReadError:
            pass
        out, peer_in = (c_out, s_in) if side is client else (s_out, c_in)
        data = out.read()
        if data:
            flights.append((0 if side is client else 1, data))
            peer_in.write(data)

    for _ in range(4):
        step(client, client.do_handshake)
        step(server, server.do_handshake)
    step(client, lambda: client.write(b"GET /big HTTP/1.0\r\n\r\n"))
    step(server, lambda: server.read(100))
    chunk = bytes(i % 251 for i in range(16384))
    sent = 0
    while sent < size:
        step(server, lambda: server.write(chunk))
        sent += len(chunk)
        step(client, lambda: client.read(65536))
    return flights


def make_tls(path: Path, keylog: Path, packets: int = 50_000) -> None:
    """One TLS 1.3 download, cut into MSS-sized segments, an ACK every second segment."""
    keylog.unlink(missing_ok=True)
    flights = _tls_flights(packets // 3 * 2 * MSS, keylog)
    w = _Writer(path)
    cport, sport, cisn, sisn = 40001, 443, 5000, 70000
    _handshake(w, cport, sport, cisn, sisn)
    seqs = [cisn + 1, sisn + 1]
    ends = ((_C, _S, cport, sport), (_S, _C, sport, cport))
    n = 0
    for side, data in flights:
        for off in range(0, len(data), MSS):
            if w.count >= packets - 4:
                break
            piece = data[off : off + MSS]
            src, dst, a, b = ends[side]
            w.write(_checksum_free_packet(src, dst, a, b, seqs[side], seqs[1 - side], 0x18, piece))
            seqs[side] += len(piece)
            n += 1
            if n % 2 == 0:  # the receiver acknowledges every second segment
                src, dst, a, b = ends[1 - side]
                w.write(
                    _checksum_free_packet(src, dst, a, b, seqs[1 - side], seqs[side], 0x10, b"")
                )
    cseq, sseq = seqs
    w.write(_checksum_free_packet(_S, _C, sport, cport, sseq, cseq, 0x11, b""))
    w.write(_checksum_free_packet(_C, _S, cport, sport, cseq, sseq + 1, 0x11, b""))
    w.write(_checksum_free_packet(_S, _C, sport, cport, sseq + 1, cseq + 1, 0x10, b""))
    w.close()


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one run of ``cmd``, output discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {code}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def run(runs: int, keep: Path | None, only: str | None = None) -> dict:
    work = keep or Path(tempfile.mkdtemp(prefix="labchat-bench-inspect-"))
    work.mkdir(parents=True, exist_ok=True)
    bulk, tls, keys = work / "bulk-200k.pcap", work / "tls-50k.pcap", work / "tls-50k.keys.log"
    if not bulk.exists():
        make_bulk(bulk)
    if not tls.exists():
        make_tls(tls, keys)
    py = sys.executable
    tshark = shutil.which("tshark") or "tshark"
    cases = {
        "bulk-200k": {
            "labchat inspect": [py, "-m", "labchat", "inspect", str(bulk)],
            "labchat inspect --json": [py, "-m", "labchat", "inspect", str(bulk), "--json"],
            "tshark -z conv,tcp": [tshark, "-r", str(bulk), "-q", "-z", "conv,tcp"],
            "tshark (packet list)": [tshark, "-r", str(bulk)],
        },
        "tls-50k": {
            "labchat inspect --keylog": [
                py,
                "-m",
                "labchat",
                "inspect",
                str(tls),
                "--keylog",
                str(keys),
            ],
            "labchat inspect (no keys)": [py, "-m", "labchat", "inspect", str(tls)],
            "tshark -o tls.keylog_file (packet list)": [
                tshark,
                "-r",
                str(tls),
                "-o",
                f"tls.keylog_file:{keys}",
            ],
            "tshark (no keys, packet list)": [tshark, "-r", str(tls)],
        },
    }
    out: dict = {"runs": runs, "machine": {"nproc": os.cpu_count()}, "captures": {}}
    out["machine"]["load_before"] = os.getloadavg()[0]
    for name, commands in cases.items():
        if only is not None and name != only:
            continue
        path = bulk if name == "bulk-200k" else tls
        samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in commands}
        # Interleaved (A B A B ...), so a busy moment slows every command, not just one.
        for _ in range(runs):
            for label, cmd in commands.items():
                samples[label].append(measure(cmd))
        reference = next(k for k in commands if k.startswith("tshark"))
        rows = {}
        for label, got in samples.items():
            ratios = [g[0] / r[0] for g, r in zip(got, samples[reference], strict=True)]
            rows[label] = {
                "seconds": round(statistics.median(g[0] for g in got), 3),
                "cpu_seconds": round(statistics.median(g[1] for g in got), 3),
                "rss_mb": round(statistics.median(g[2] for g in got), 1),
                f"x {reference}": round(statistics.median(ratios), 2),
            }
        out["captures"][name] = {"bytes": path.stat().st_size, "reference": reference,
                                 "commands": rows}  # fmt: skip
    out["machine"]["load_after"] = os.getloadavg()[0]
    if keep is None:
        shutil.rmtree(work)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--keep", type=Path, help="make (or reuse) the captures in this directory")
    p.add_argument("--only", choices=["bulk-200k", "tls-50k"], help="one capture only")
    args = p.parse_args(argv)
    result = run(args.runs, args.keep, args.only)
    m = result["machine"]
    print(f"load average {m['load_before']:.1f} before, {m['load_after']:.1f} after")
    for name, cap in result["captures"].items():
        print(f"{name} ({cap['bytes'] / 1e6:.1f} MB); ratio: wall time / {cap['reference']}")
        for label, r in cap["commands"].items():
            ratio = r[f"x {cap['reference']}"]
            print(f"  {label:<42} {r['seconds']:>7.2f} s  cpu {r['cpu_seconds']:>6.2f} s  "
                  f"{r['rss_mb']:>6.1f} MB  x{ratio:.2f}")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "inspect.json"
    if args.only and path.exists():  # keep the other capture's figures from the last run
        previous = json.loads(path.read_text())
        previous["captures"].update(result["captures"])
        previous.setdefault("machine_by_capture", {})[args.only] = result["machine"]
        result = previous
    path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
