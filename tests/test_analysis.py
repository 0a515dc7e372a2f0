"""labchat.analysis on real loopback captures (tests/fixtures, made by make_fixtures.py).

The segment-by-segment facts are cross-checked against tshark, Wireshark's dissector.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labchat import analysis
from labchat.analysis import AnalysisError, Capture, load, tls_round_trips, tls_summary

FIX = Path(__file__).parent / "fixtures"
TLS_PORT = 7443
CLIENT_LINES = ["LOGIN alice pw", "SAY hi", "SAY how are you?", "QUIT"]
SERVER_LINES = ["OK welcome alice", "MSG alice hi", "MSG alice how are you?", "BYE"]
# TLS handshake message types (RFC 8446 section 4, RFC 5246 section 7.4).
HS_TYPES = {
    "ClientHello": 1,
    "ServerHello": 2,
    "NewSessionTicket": 4,
    "EncryptedExtensions": 8,
    "Certificate": 11,
    "ServerKeyExchange": 12,
    "CertificateRequest": 13,
    "ServerHelloDone": 14,
    "CertificateVerify": 15,
    "ClientKeyExchange": 16,
    "Finished": 20,
}
TSHARK_FLAG_LETTERS = {
    "C": "C",
    "E": "E",
    "U": "U",
    "A": "A",
    "P": "P",
    "R": "R",
    "S": "S",
    "F": "F",
}


def _load(name: str, keys: bool = False) -> Capture:
    stem = name.split(".")[0]
    keylog = FIX / f"{stem}.keys.log" if keys else None
    return load(FIX / name, keylog=keylog, tls_ports=[TLS_PORT])


def _tshark(name: str, keys: bool) -> list[list[str]]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (CI installs it: apt-get install tshark)")
    cmd = ["tshark", "-r", str(FIX / name), "-d", f"tcp.port=={TLS_PORT},tls", "-Y", "tcp"]
    if keys:
        cmd += ["-o", f"tls.keylog_file:{FIX / (name.split('.')[0] + '.keys.log')}"]
    cmd += ["-T", "fields", "-E", "separator=/t"]
    for f in ("tcp.stream", "tcp.flags.str", "tcp.seq", "tcp.ack", "tcp.len", "tls.handshake.type"):
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


CROSS = [
    ("tcp-chat.pcapng", False),
    ("tcp-odd.pcapng", False),
    ("tls12-chat.pcapng", False),
    ("tls12-chat.pcapng", True),
    ("tls13-chat.pcapng", False),
    ("tls13-chat.pcapng", True),
    ("tcp-chat-sll.pcap", False),
    ("tcp-chat-vlan.pcap", False),
    ("tcp-chat-snap64.pcap", False),
]


@pytest.mark.parametrize(("name", "keys"), CROSS)
def test_load_agrees_with_tshark_segment_by_segment(name: str, keys: bool) -> None:
    rows = _tshark(name, keys)
    cap = _load(name, keys)
    ours = [(c.stream, s, c) for c in cap.connections() for s in c.segments]
    ours.sort(key=lambda x: x[1].frame)
    assert len(ours) == len(rows)
    for (stream, seg, conn), row in zip(ours, rows, strict=True):
        t_stream, t_flags, t_seq, t_ack, t_len, t_hs = (row + [""] * 6)[:6]
        where = f"{name} frame {seg.frame}"
        assert stream == int(t_stream), where
        assert set(seg.flags) == {ch for ch in t_flags if ch in TSHARK_FLAG_LETTERS}, where
        assert seg.rel_seq == int(t_seq), where
        if seg.has_ack:
            assert seg.rel_ack == int(t_ack), where
        assert seg.payload_len == int(t_len), where
        want = sorted(int(x) for x in t_hs.split(",") if x)
        got = sorted(
            HS_TYPES[m.name]
            for m in conn.tls_messages()
            if m.segment == seg.index and m.name in HS_TYPES and (m.decrypted or not m.encrypted)
        )
        assert got == want, where


@pytest.mark.parametrize("name", ["tcp-chat.pcapng", "tls12-chat.pcapng", "tls13-chat.pcapng"])
def test_Handshake_checks_pass_on_real_captures(name: str) -> None:
    conn = _load(name).connection(0)
    hs = conn.handshake()
    assert hs is not None and hs.ok, hs.checks()
    assert [s.flags for s in hs.segments] == ["S", "SA", "A"]
    assert hs.syn.options["mss"] == 65495 and "wscale" in hs.syn.options
    assert hs.syn_ack.rel_ack == 1 and hs.client_isn == hs.syn.seq


def test_Teardown_first_closer_and_merged_fin() -> None:
    td = _load("tcp-chat.pcapng").connection(0).teardown()
    assert td.first_closer == "client" and td.merged and td.complete and not td.half_close
    assert len(td.segments) == 3  # FIN, FIN+ACK piggybacked, ACK
    td12 = _load("tls12-chat.pcapng").connection(0).teardown()
    assert td12.first_closer == "server"


def test_Teardown_half_close_and_resets() -> None:
    cap = _load("tcp-odd.pcapng")
    refused, abort, half, v6 = cap.connections()
    assert [s.flags for s in refused.segments] == ["S", "RA"]
    assert refused.handshake() is not None and not refused.handshake().ok
    assert refused.resets()[0].direction == "s->c" and refused.teardown() is None
    assert abort.handshake().ok and abort.resets()[0].direction == "c->s"
    assert abort.teardown() is None
    td = half.teardown()
    assert td.first_closer == "client" and td.half_close and not td.merged and td.complete
    assert half.app_lines() == [("c->s", "SAY bye"), ("s->c", "MSG alice bye")]
    assert v6.client[0] == "::1" and v6.handshake().ok
    assert v6.app_lines() == [("c->s", "LOGIN bob pw"), ("s->c", "OK welcome bob")]


def test_Connection_app_lines_plaintext() -> None:
    lines = _load("tcp-chat.pcapng").connection(0).app_lines()
    assert [t for d, t in lines if d == "c->s"] == CLIENT_LINES
    assert [t for d, t in lines if d == "s->c"] == SERVER_LINES


@pytest.mark.parametrize("name", ["tls12-chat.pcapng", "tls13-chat.pcapng"])
def test_Connection_app_lines_decrypted_with_keylog(name: str) -> None:
    conn = _load(name, keys=True).connection(0)
    lines = conn.app_lines()
    assert [t for d, t in lines if d == "c->s"] == CLIENT_LINES
    assert [t for d, t in lines if d == "s->c"] == SERVER_LINES


@pytest.mark.parametrize("name", ["tls12-chat.pcapng", "tls13-chat.pcapng"])
def test_Connection_tls_records_opaque_without_keylog(name: str) -> None:
    conn = _load(name).connection(0)
    assert conn.app_lines() == []
    app = [m for m in conn.tls_messages() if m.name == "ApplicationData"]
    assert len(app) >= 8 and all(m.encrypted and not m.decrypted and not m.data for m in app)
    assert b"alice" not in b"".join(s.payload for s in conn.segments if s.index > 8)


def test_tls_round_trips_12_is_2_and_13_is_1() -> None:
    for keys in (False, True):
        assert tls_round_trips(_load("tls12-chat.pcapng", keys).connection(0)) == 2
        assert tls_round_trips(_load("tls13-chat.pcapng", keys).connection(0)) == 1


def test_TLSMessage_fields_from_the_handshake() -> None:
    conn = _load("tls13-chat.pcapng", keys=True).connection(0)
    msgs = {m.name: m for m in conn.tls_messages()}
    ch, sh = msgs["ClientHello"].fields, msgs["ServerHello"].fields
    assert "TLS 1.3" in ch["versions"] and ch["sni"] == "localhost"
    assert "TLS_AES_128_GCM_SHA256" in ch["cipher_suites"] and ch["key_share"]
    assert sh["version"] == "TLS 1.3" and sh["cipher_suite"] in ch["cipher_suites"]
    cert = msgs["Certificate"]
    assert cert.encrypted and cert.decrypted and cert.fields["san"] == ["localhost"]
    assert "labchat fixture" in cert.fields["subject"]
    conn12 = _load("tls12-chat.pcapng").connection(0)
    cke = next(m for m in conn12.tls_messages() if m.name == "ClientKeyExchange")
    assert cke.fields["public_key_len"] == 32 and len(cke.fields["public_key"]) == 64
    table = tls_summary(conn12)
    assert "ServerHelloDone" in table.column("message") and "<table>" in table._repr_html_()


def test_Segment_table_and_text_rendering() -> None:
    conn = _load("tcp-chat.pcapng").connection(0)
    table = conn.segment_table()
    assert table.columns[:4] == ["#", "time", "dir", "flags"] and len(table) == 16
    assert str(table).splitlines()[2].split()[:4] == ["0", "0.000000", "c->s", "S"]


def test_load_odd_link_layers_and_truncation_are_reported() -> None:
    for name in ("tcp-chat-sll.pcap", "tcp-chat-vlan.pcap"):
        conn = _load(name).connection(0)
        assert conn.app_lines()[0] == ("c->s", "LOGIN alice pw")
    snap = _load("tcp-chat-snap64.pcap")
    assert any("truncated" in w for w in snap.warnings)
    assert snap.connection(0).segments[3].truncated
    assert snap.connection(0).segments[3].payload_len == 15


def test_load_retransmission_and_missing_syn_flagged(tmp_path: Path) -> None:
    from scapy.all import wrpcap

    pkts = list(_load("tcp-chat.pcapng").packets)
    # Drop the handshake and duplicate a data segment: a mid-stream capture with a retransmit.
    edited = pkts[3:8] + [pkts[7]] + pkts[8:]
    wrpcap(str(tmp_path / "mid.pcap"), edited)
    cap = load(tmp_path / "mid.pcap")
    conn = cap.connection(0)
    assert conn.client_guessed and conn.server[1] == 7000
    assert conn.handshake() is None
    assert [s.index for s in conn.retransmissions()] == [5]
    assert conn.segments[5].analysis == {"retransmission"}  # a TCP fact, not a capture warning
    assert any("client guessed" in w for w in cap.warnings)
    assert conn.segments[0].rel_seq == 1  # Wireshark's base for a side without SYN


def test_load_bad_files_raise_AnalysisError(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError):
        load(tmp_path / "missing.pcap")
    (tmp_path / "text.pcap").write_text("hello, not a capture\n")
    with pytest.raises(AnalysisError, match="not a pcap"):
        load(tmp_path / "text.pcap")
    with pytest.raises(AnalysisError):
        _load("tcp-chat.pcapng").connection(5)
    with pytest.raises(AnalysisError, match="key log"):
        load(FIX / "tcp-chat.pcapng", keylog=tmp_path / "nope.log")


FIXTURE_BYTES = {n: (FIX / n).read_bytes() for n in ("tcp-chat.pcapng", "tls13-chat.pcapng")}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(sorted(FIXTURE_BYTES)),
    cut=st.integers(min_value=0, max_value=4000),
    noise=st.binary(max_size=64),
    flip_at=st.integers(min_value=0, max_value=4000),
)
def test_load_never_raises_anything_but_AnalysisError(
    tmp_path_factory, name: str, cut: int, noise: bytes, flip_at: int
) -> None:
    data = bytearray(FIXTURE_BYTES[name][:cut] + noise)
    if data and flip_at < len(data):
        data[flip_at] ^= 0xFF
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.pcapng"
    path.write_bytes(bytes(data))
    try:
        cap = load(path, tls_ports=[TLS_PORT])
    except AnalysisError:
        return
    for conn in cap.connections():  # every fact must be computable, too
        conn.handshake(), conn.teardown(), conn.app_lines(), str(conn.segment_table())
        tls_round_trips(conn), str(tls_summary(conn))


@given(st.binary(max_size=200))
@settings(max_examples=25, deadline=None)
def test_load_random_bytes_gives_AnalysisError_or_warnings(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("rnd") / "x.pcap"
    path.write_bytes(data)
    try:
        cap = load(path)
    except AnalysisError:
        return
    assert cap.warnings or cap.connections() == []


def test_public_api_listed() -> None:
    for name in ("load", "Capture", "Connection", "Segment", "Table", "tls_round_trips"):
        assert name in analysis.__all__


def test_cmd_inspect_prints_facts_and_writes_plot(tmp_path: Path, capsys) -> None:
    import argparse

    from labchat.cli.inspect import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    png = tmp_path / "l.png"
    args = parser.parse_args(
        ["inspect", str(FIX / "tls13-chat.pcapng"), "--keylog", str(FIX / "tls13-chat.keys.log"),
         "--tls-port", "7443", "--stream", "0", "--plot", str(png)]
    )  # fmt: skip
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "handshake: ok" in out and "teardown: server closed first" in out
    assert "1 round trip(s)" in out and "\n    LOGIN alice pw\n" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    from labchat.cli import main

    assert main(["inspect", str(tmp_path / "nope.pcap")]) == 2  # a bad input file: usage
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("labchat: error: ") and "nope.pcap" in err


@pytest.mark.parametrize("name", ["tls12-chat", "tls13-chat"])
def test_load_uses_a_pcapngs_embedded_key_log_unless_told_not_to(name: str) -> None:
    # labchat's own captures carry their key log as a Decryption Secrets Block.
    shipped = Path(__file__).resolve().parent.parent / "captures" / name / "capture.pcapng"
    with_keys = [line for _, line in load(shipped).connection(0).app_lines()]
    assert any(line.startswith("LOGIN alice ") for line in with_keys)
    bare = load(shipped, embedded_keys=False).connection(0)
    assert bare.app_lines() == []
    data = [m for m in bare.tls_messages() if m.name == "ApplicationData"]
    assert data and all(m.encrypted and not m.decrypted for m in data)


def test_Connection_certificates_are_the_DER_chain_each_side_sent() -> None:
    # Issue 13: a learner verifies the captured certificate's signature against ca.pem, so the
    # analysis hands out the certificates themselves. mtls-chat: TLS 1.2, then TLS 1.3, both
    # sides with a certificate (each also sends the lab CA, found in its own trust store).
    from cryptography import x509

    pcap = Path(__file__).parent.parent / "captures" / "mtls-chat" / "capture.pcapng"
    clear12, clear13 = load(pcap, embedded_keys=False, tls_ports=[5050]).connections()
    opened12, opened13 = load(pcap, tls_ports=[5050]).connections()

    def names(ders: list[bytes]) -> list[str]:
        return [x509.load_der_x509_certificate(d).subject.rfc4514_string() for d in ders]

    for conn in (clear12, opened12, opened13):
        assert names(conn.certificates()) == [
            "CN=localhost,O=labchat lab CA",
            "CN=labchat lab CA root,O=labchat lab CA",
        ]
        assert names(conn.certificates("c->s"))[0] == "CN=alice,O=labchat lab CA"
    # TLS 1.3 encrypts both Certificate messages: without the keys there is none to hand out.
    assert clear13.certificates() == [] and clear13.certificates("c->s") == []
    # The message fields agree with the certificates handed out.
    cert_msg = next(m for m in opened13.tls_messages() if m.name == "Certificate")
    assert cert_msg.fields["chain_length"] == len(opened13.certificates())
