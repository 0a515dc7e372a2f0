"""`labchat inspect`: its text for people and its JSON document (docs/inspect.md) for scripts."""

from __future__ import annotations

import argparse
import base64
import io
import json
import struct
from pathlib import Path

import pytest

from labchat.analysis import load
from labchat.analysis.report import SCHEMA, describe, json_document, payload_lines
from labchat.cli import main
from labchat.cli.inspect import ProgressBar, register

CORPUS = Path(__file__).parent / "corpus"


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["inspect", *argv])
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_document_follows_the_schema(capsys) -> None:
    path = CORPUS / "tls13-openssl.pcapng"
    keys = CORPUS / "tls13-openssl.keys.log"
    code, out, err = _run([str(path), "--keylog", str(keys), "--tls-port", "4433", "--json"],
                          capsys)  # fmt: skip
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["schema"] == SCHEMA and doc["file"] == path.name and doc["packets"] == 29
    (conn,) = doc["connections"]
    assert conn["stream"] == 0 and conn["client"].startswith("127.0.0.1:")
    assert conn["server"] == "127.0.0.1:4433"
    cap = load(path, keylog=keys, tls_ports=[4433])
    segs = cap.connection(0).segments
    assert [s["frame"] for s in conn["segments"]] == [s.frame for s in segs]
    first = conn["segments"][0]
    assert set(first) == {"frame", "time", "dir", "flags", "seq", "ack", "len", "win",
                          "win_raw", "analysis"}  # fmt: skip
    assert first["flags"] == "S" and first["ack"] is None and first["seq"] == 0
    assert conn["segments"][1]["flags"] == "SA" and conn["segments"][1]["ack"] == 1
    assert conn["handshake"]["ok"] and conn["handshake"]["frames"] == [1, 2, 3]
    tls = conn["tls"]
    assert tls["version"] == "TLS 1.3" and tls["round_trips"] == 1 and tls["keys"] is True
    hello = tls["messages"][0]
    assert hello["type"] == "ClientHello" and hello["dir"] == "c->s" and hello["frame"] == 4
    assert {"sni", "cipher_suites", "versions", "groups"} <= set(hello["fields"])
    server_hello = next(m for m in tls["messages"] if m["type"] == "ServerHello")
    assert {"version", "cipher_suite"} <= set(server_hello["fields"])
    cert = next(m for m in tls["messages"] if m["type"] == "Certificate")
    assert cert["encrypted"] and cert["decrypted"] and cert["fields"]["san"] == ["localhost"]
    sent = base64.b64decode(tls["application_data"]["c->s"])
    assert sent == b"hello from the client\nafter a key update\nlast line\n"


def test_json_without_keys_has_no_application_data(capsys) -> None:
    code, out, _ = _run([str(CORPUS / "tls12-openssl.pcapng"), "--tls-port", "4433", "--json"],
                        capsys)  # fmt: skip
    tls = json.loads(out)["connections"][0]["tls"]
    assert code == 0 and tls["keys"] is None and tls["application_data"] == {}
    names = [m["type"] for m in tls["messages"]]
    assert names.count("EncryptedHandshake") == 2 and tls["round_trips"] == 2


def test_json_of_a_plain_connection_and_a_stream_filter(capsys) -> None:
    code, out, _ = _run([str(CORPUS / "http-v4-v6.pcapng"), "--stream", "1", "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and [c["stream"] for c in doc["connections"]] == [1]
    conn = doc["connections"][0]
    assert conn["client"].startswith("[::1]:") and conn["tls"] is None
    assert conn["transfer"]["s->c"]["unique_bytes"] > 2048


def test_text_shows_text_payloads_as_lines_and_binary_as_hex(capsys) -> None:
    code, out, _ = _run([str(CORPUS / "http-v4-v6.pcapng")], capsys)
    assert code == 0
    assert "    GET /hello.txt HTTP/1.1" in out
    assert "line 0: hello over HTTP" in out and "more lines (--full shows them)" in out
    assert "bytes, not text; the first 64:" in out
    assert "00000000  48 54 54 50 2f 31 2e 30" in out
    assert "\x00" not in out and "\x1b" not in out


def test_lines_are_cut_at_the_width_unless_full() -> None:
    conn = load(CORPUS / "tls13-openssl.pcapng", tls_ports=[4433]).connection(0)
    lines = list(describe(conn, width=60))
    assert max(len(line) for line in lines) <= 60 and any(line.endswith("…") for line in lines)
    full = list(describe(conn, width=None, full=True))
    assert max(len(line) for line in full) > 60


def test_a_huge_one_line_payload_is_an_excerpt(tmp_path: Path, capsys) -> None:
    # One 3 MB line (no newline), as a 20 MB transfer once printed: an excerpt, not the line.
    eth = bytes.fromhex("0200000000020200000000010800")
    frames = []
    for i in range(3 * 1024 * 1024 // 1448):
        payload = b"A" * 1448
        tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1 + i * 1448, 1, 5 << 4, 0x18, 512, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0,
                         b"\x0a\0\0\x01", b"\x0a\0\0\x02")  # fmt: skip
        frames.append(eth + ip + tcp + payload)
    path = tmp_path / "oneline.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n, frame in enumerate(frames):
            f.write(struct.pack("<IIII", 1, n, len(frame), len(frame)) + frame)
    code, out, _ = _run([str(path)], capsys)
    assert code == 0 and len(out) < 400_000  # the segment table, and one cut line of data
    assert max(len(line) for line in out.splitlines()) <= 130
    code, out, _ = _run([str(path), "--full"], capsys)
    assert "A" * (3 * 1024 * 1024 // 1448 * 1448) in out


def test_summary_counts_come_from_the_flags(capsys) -> None:
    code, out, _ = _run([str(CORPUS / "tcp-flags.pcap")], capsys)
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("tcp analysis"))
    summary = " ".join(
        [lines[start]]
        + [x.strip() for x in lines[start + 1 :] if x.startswith("  ") and not x.startswith("  [")][
            :3
        ]
    )
    assert "retransmissions 1" in summary and "spurious retransmissions 1" in summary
    assert "out of order 1" in summary and "zero-window probes 1" in summary
    row = next(line for line in out.splitlines() if "out of order" in line and "c->s" in line)
    assert "retransmission" not in row


def test_scaled_window_shown_unless_raw_asked(capsys) -> None:
    path = str(CORPUS / "lossy-transfer.pcapng")
    conn = load(path).connection(0)
    seg = next(s for s in conn.segments if s.direction == "s->c" and not s.syn)
    _, out, _ = _run([path], capsys)
    _, raw, _ = _run([path, "--raw-window"], capsys)

    def win(text: str) -> str:
        want = [str(seg.index), str(seg.frame)]
        row = next(line for line in text.splitlines() if line.split()[:2] == want)
        return row.split()[8]

    assert win(out) == str(seg.scaled_window) and win(raw) == str(seg.window)


@pytest.mark.parametrize(
    ("name", "expect"),
    [("gzip.pcap.gz", "1 TCP connection"), ("truncated.pcapng", "warning: file cut short after"),
     ("null-v6-af28.pcap", "[::1]:"), ("vxlan.pcap", "inside VXLAN")],
)  # fmt: skip
def test_captures_from_anywhere(name: str, expect: str, capsys) -> None:
    code, out, err = _run([str(CORPUS / name)], capsys)
    assert code == 0 and err == "" and expect in out


def test_bad_input_is_one_line_and_status_2(tmp_path: Path, capsys) -> None:
    garbage = tmp_path / "keys.log"
    garbage.write_text("hello\nworld\n")
    cases = {
        "missing.pcap": [str(tmp_path / "missing.pcap")],
        "not an NSS key log": [str(CORPUS / "tls12-openssl.pcapng"), "--keylog", str(garbage)],
        "no TCP connection #7": [str(CORPUS / "tls12-openssl.pcapng"), "--stream", "7"],
    }
    for expect, argv in cases.items():
        assert main(["inspect", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("labchat: error: ") and expect in err


def test_progress_bar_only_after_a_second() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = ProgressBar(stream, force=True, clock=lambda: now[0])
    bar(10, 100)
    assert stream.getvalue() == ""  # quick files draw nothing
    now[0] = 1.5
    bar(50, 100)
    assert "reading" in stream.getvalue() and "50%" in stream.getvalue()
    bar.close()
    assert stream.getvalue().endswith("\r")
    quiet = io.StringIO()
    assert not ProgressBar(quiet).enabled  # not a terminal: never drawn


def test_payload_lines_text_and_binary() -> None:
    assert payload_lines(b"a\r\nb\n") == ["a", "b"]
    assert payload_lines(b"\x00\x01\x02")[0] == "3 bytes, not text; the first 3:"
    assert len(payload_lines(bytes(1000))) == 1 + 64 // 16
    assert len(payload_lines(bytes(1000), full=True)) == 1 + (1000 + 15) // 16


def test_json_document_of_an_empty_capture(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    doc = json_document(load(path))
    assert doc["connections"] == [] and doc["packets"] == 0
    assert "the capture holds no packets" in doc["warnings"]
