"""labchat (its `inspect --json` document) against tshark, frame by frame, record by record.

Used by tests/test_corpus.py (the project's own captures, in CI) and locally on captures
from anywhere. For every TCP frame: tcp.stream, the flag bits, relative
seq and ack, tcp.len, the window (scaled, tshark's tcp.window_size), every tcp.analysis flag,
the duplicate-ACK number and the SACK edges. For every frame with TLS: the record content
types in order (decrypted inner types where a key log opens them), TLS 1.3's opaque types,
the record lengths, the handshake message types and the alert descriptions.

    python -m bench.tshark_compare CAPTURE [--keylog F] [--tls-port P ...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from labchat.analysis import Capture, load
from labchat.analysis.report import json_document
from labchat.analysis.tls.registry import HANDSHAKE_CODES

__all__ = ["ANALYSIS_FLAGS", "Agreement", "compare", "ours", "tshark"]

#: The tcp.analysis flags compared (tshark 4.0 field names).
ANALYSIS_FLAGS = (
    "retransmission",
    "fast_retransmission",
    "spurious_retransmission",
    "out_of_order",
    "duplicate_ack",
    "lost_segment",
    "ack_lost_segment",
    "zero_window",
    "zero_window_probe",
    "zero_window_probe_ack",
    "window_update",
    "window_full",
    "keep_alive",
    "keep_alive_ack",
    "reused_ports",
)
_TCP_FIELDS = (
    "tcp.stream",
    "tcp.flags",
    "tcp.seq",
    "tcp.ack",
    "tcp.len",
    "tcp.window_size",
    "tcp.analysis.duplicate_ack_num",
    "tcp.options.sack_le",
    "tcp.options.sack_re",
)
_TLS_FIELDS = (
    "tls.record.content_type",
    "tls.record.opaque_type",
    "tls.record.length",
    "tls.handshake.type",
    "tls.alert_message.desc",
)
TCP_KEYS = ("stream", "flags", "seq", "ack", "len", "win", "analysis", "dup", "sack")
TLS_KEYS = ("content", "opaque", "length", "handshake", "alert")


@dataclass
class Agreement:
    """How far labchat and tshark agree on one capture."""

    path: str
    frames: int = 0  # TCP frames compared
    frames_equal: int = 0
    tls_frames: int = 0  # frames with TLS records (on either side)
    tls_frames_equal: int = 0
    tls_messages: int = 0  # handshake messages, alerts and records compared
    mismatches: list[tuple[int, str, object, object]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _ints(text: str) -> list[int]:
    return [int(x, 0) for x in text.split(",") if x]


def tshark(
    path: Path,
    keylog: Path | None = None,
    tls_ports: tuple[int, ...] = (),
    options: tuple[str, ...] = (),
    decode_as: tuple[str, ...] = (),
) -> dict[int, dict]:
    """tshark's view of every TCP frame: frame number -> the compared fields."""
    exe = shutil.which("tshark")
    if exe is None:
        raise RuntimeError("tshark is not installed (apt-get install tshark)")
    cmd = [
        exe,
        "-r",
        str(path),
        "-Y",
        "tcp && !icmp && !icmpv6",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-o",
        "tcp.analyze_sequence_numbers:TRUE",
        # labchat delivers bytes that first arrive out of order or in a retransmission
        # once the hole before them is filled: Wireshark does so with this preference.
        "-o",
        "tcp.reassemble_out_of_order:TRUE",
    ]
    for port in tls_ports:
        cmd += ["-d", f"tcp.port=={port},tls"]
    for rule in decode_as:
        cmd += ["-d", rule]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    for opt in options:
        cmd += ["-o", opt]
    names = ["frame.number", *_TCP_FIELDS, *_TLS_FIELDS]
    names += [f"tcp.analysis.{f}" for f in ANALYSIS_FLAGS]
    for name in names:
        cmd += ["-e", name]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if run.returncode not in (0, 2) or (run.returncode and "cut short" not in run.stderr):
        raise RuntimeError(f"tshark failed on {path}: {run.stderr.strip()[-300:]}")
    out = run.stdout  # exit status 2 with "cut short": tshark read the file up to the cut
    frames: dict[int, dict] = {}
    for line in out.splitlines():
        v = line.split("|")
        n_tcp, n_tls = len(_TCP_FIELDS), len(_TLS_FIELDS)
        tcp, tls, flags = v[1 : 1 + n_tcp], v[1 + n_tcp : 1 + n_tcp + n_tls], v[1 + n_tcp + n_tls :]
        if "," in tcp[0]:
            continue  # a frame with two TCP headers (e.g. inside an ICMP error): skipped
        le, re_ = _ints(tcp[7]), _ints(tcp[8])
        frames[int(v[0])] = {
            "stream": int(tcp[0]),
            "flags": int(tcp[1], 16),
            "seq": int(tcp[2]),
            "ack": int(tcp[3]) if int(tcp[1], 16) & 0x10 else None,
            "len": int(tcp[4]),
            "win": int(tcp[5]) if tcp[5] else None,
            "analysis": {f for f, x in zip(ANALYSIS_FLAGS, flags, strict=True) if x},
            "dup": int(tcp[6]) if tcp[6] else 0,
            "sack": tuple(zip(le, re_, strict=False)),
            "content": _ints(tls[0]),
            "opaque": _ints(tls[1]),
            "length": _ints(tls[2]),
            "handshake": _ints(tls[3]),
            "alert": _ints(tls[4]),
        }
    return frames


_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40,
              "C": 0x80, "N": 0x100}  # fmt: skip


def ours(cap: Capture) -> dict[int, dict]:
    """labchat's view of the same fields, frame number -> fields.

    What the ``labchat inspect --json`` document holds is taken from that document (stream,
    flags, seq, ack, len, win, analysis, the TLS message types and alerts), so the
    comparison checks the JSON itself; the rest (duplicate-ACK numbers, SACK edges, TLS
    records) from the analysis objects.
    """
    doc = json_document(cap)
    frames: dict[int, dict] = {}
    for conn, jconn in zip(cap.connections(), doc["connections"], strict=True):
        for s, js in zip(conn.segments, jconn["segments"], strict=True):
            frames[js["frame"]] = {
                "stream": jconn["stream"],
                # tshark's tcp.flags also holds the 3 reserved bits the letters cannot say.
                "flags": sum(_FLAG_BITS[ch] for ch in js["flags"] if ch != ".")
                | (s.flag_bits & 0xE00),
                "seq": js["seq"],
                "ack": js["ack"],
                "len": js["len"],
                "win": js["win"],
                "analysis": set(js["analysis"]),
                "dup": s.dup_ack_num,
                "sack": s.sack,
                "content": [], "opaque": [], "length": [], "handshake": [], "alert": [],
            }  # fmt: skip
        info = conn.tls_info
        if info is None or jconn["tls"] is None:
            continue
        tls13 = info.version == "TLS 1.3"
        for r in info.records:
            f = frames[r.frame]
            f["length"].append(r.length)
            if r.encrypted and r.inner_type is None:
                if tls13 and r.content_type == 23:
                    f["opaque"].append(23)
                else:
                    f["content"].append(r.content_type)
            else:
                if r.inner_type is not None and tls13:
                    f["opaque"].append(r.content_type)
                f["content"].append(r.inner_type if r.inner_type is not None else r.content_type)
        for m in jconn["tls"]["messages"]:
            if m["type"] in HANDSHAKE_CODES and (m["decrypted"] or not m["encrypted"]):
                frames[m["frame"]]["handshake"].append(HANDSHAKE_CODES[m["type"]])
            elif m["type"] == "Alert" and "code" in m["fields"]:
                frames[m["frame"]]["alert"].append(m["fields"]["code"])
    return frames


def compare(
    path: Path,
    keylog: Path | None = None,
    tls_ports: tuple[int, ...] = (),
    options: tuple[str, ...] = (),
    cap: Capture | None = None,
) -> Agreement:
    """Compare one capture; ``tls_ports`` are decoded as TLS by both."""
    cap = cap or load(path, keylog=keylog, tls_ports=tls_ports)
    mine = ours(cap)
    if not tls_ports:  # decode the same connections as TLS on both sides
        tls_ports = tuple(sorted({c.server[1] for c in cap.connections()
                                  if c.tls and not c.proxy and not c.starttls}))  # fmt: skip
    # A proxy's port is decoded as the proxy protocol, which hands the tunnel to TLS.
    proxies = {
        c.server[1]: "socks" if c.proxy.startswith("SOCKS") else "http"
        for c in cap.connections()
        if c.proxy
    }
    decode_as = tuple(f"tcp.port=={p},{proto}" for p, proto in sorted(proxies.items()))
    theirs = tshark(path, keylog, tls_ports, options, decode_as)
    result = Agreement(str(path))
    for frame in sorted(set(mine) | set(theirs)):
        a, b = mine.get(frame), theirs.get(frame)
        if a is None or b is None:
            result.mismatches.append((frame, "frame", a is not None, b is not None))
            continue
        result.frames += 1
        bad = [k for k in TCP_KEYS if k != "ack" or a["flags"] & 0x10 if a[k] != b[k]]
        for key in bad:
            result.mismatches.append((frame, key, a[key], b[key]))
        result.frames_equal += not bad
        if any(a[k] or b[k] for k in TLS_KEYS):
            result.tls_frames += 1
            result.tls_messages += max(len(a["length"]), len(b["length"])) + max(
                len(a["handshake"]), len(b["handshake"])
            )
            bad_tls = [k for k in TLS_KEYS if a[k] != b[k]]
            for key in bad_tls:
                result.mismatches.append((frame, key, a[key], b[key]))
            result.tls_frames_equal += not bad_tls
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("capture", type=Path)
    p.add_argument("--keylog", type=Path)
    p.add_argument("--tls-port", type=int, action="append", default=[])
    args = p.parse_args(argv)
    r = compare(args.capture, args.keylog, tuple(args.tls_port))
    print(
        f"{r.path}: {r.frames_equal}/{r.frames} TCP frames equal, "
        f"{r.tls_frames_equal}/{r.tls_frames} TLS frames equal ({r.tls_messages} records "
        f"and messages)"
    )
    for frame, key, a, b in r.mismatches[:40]:
        print(f"  frame {frame} {key}: labchat {a!r}  tshark {b!r}")
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
