"""labchat.analysis against tshark on the project's capture corpus (tests/corpus).

Every capture is compared frame by frame (tcp.stream, flags, relative seq and ack, len, the
scaled window, every tcp.analysis flag, duplicate-ACK numbers, SACK edges) and TLS record by
record (content types, lengths, handshake types, alerts), with and without its key log.
tests/corpus/make_corpus.py remakes the captures with openssl, curl, python and scapy.
The facts the issues name are then checked one by one.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.tshark_compare import ANALYSIS_FLAGS, compare  # noqa: E402
from labchat.analysis import (  # noqa: E402
    AnalysisError,
    first_application_data,
    load,
    tls_round_trips,
)
from labchat.analysis.report import json_document  # noqa: E402

CORPUS = Path(__file__).parent / "corpus"
TLS_PORT = 4433
CAPTURES = sorted(p for p in CORPUS.iterdir() if p.name.endswith((".pcap", ".pcapng", ".gz")))


def _keys(path: Path) -> Path | None:
    keys = CORPUS / (path.name.split(".")[0] + ".keys.log")
    return keys if keys.exists() else None


def _load(name: str, keys: bool = False):
    path = CORPUS / name
    return load(path, keylog=_keys(path) if keys else None, tls_ports=[TLS_PORT])


CASES = [(p, False) for p in CAPTURES] + [(p, True) for p in CAPTURES if _keys(p)]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (CI has it)")
@pytest.mark.parametrize(("path", "keys"), CASES, ids=lambda x: getattr(x, "name", str(x)))
def test_corpus_agrees_with_tshark(path: Path, keys: bool) -> None:
    result = compare(path, _keys(path) if keys else None, (TLS_PORT,))
    assert result.frames > 0
    assert result.mismatches == [], result.mismatches[:10]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (CI has it)")
def test_corpus_covers_every_analysis_flag() -> None:
    seen: set[str] = set()
    for path in CAPTURES:
        for conn in load(path, tls_ports=[TLS_PORT]).connections():
            for seg in conn.segments:
                seen |= seg.analysis
    assert set(ANALYSIS_FLAGS) <= seen


# ---- issue 16, A-J -------------------------------------------------------------------------


def test_encrypted_finished_is_one_EncryptedHandshake_without_keys() -> None:
    conn = _load("tls12-openssl.pcapng").connection(0)
    names = [m.name for m in conn.tls_messages()]
    assert names[:9] == [
        "ClientHello",
        "ServerHello",
        "Certificate",
        "ServerKeyExchange",
        "ServerHelloDone",
        "ClientKeyExchange",
        "ChangeCipherSpec",
        "EncryptedHandshake",
        "NewSessionTicket",
    ]
    assert names.count("EncryptedHandshake") == 2  # one Finished each way, never guessed
    assert not {"HelloRequest", "HelloVerifyRequest", "Finished"} & set(names)


@pytest.mark.parametrize("keys", [False, True])
def test_hello_retry_request_followed(keys: bool) -> None:
    conn = _load("tls13-hrr.pcapng", keys).connection(0)
    msgs = conn.tls_messages()
    hellos = [m for m in msgs if m.name in ("ClientHello", "HelloRetryRequest", "ServerHello")]
    assert [m.name for m in hellos] == [
        "ClientHello",
        "HelloRetryRequest",
        "ClientHello",
        "ServerHello",
    ]
    assert all(not m.encrypted for m in hellos)
    assert hellos[1].fields["selected_group"] == "secp256r1"
    assert hellos[2].fields["key_share"] == ["secp256r1"] and hellos[3].fields["version"]
    assert conn.tls_info.hello_retry and tls_round_trips(conn) == 2
    if keys:
        assert conn.app_lines() == [
            ("c->s", "after a hello retry"),
            ("s->c", "yrter olleh a retfa"),
        ]


def test_large_download_without_keys_lists_every_record() -> None:
    conn = _load("tls-download.pcapng").connection(0)
    server = [r for r in conn.tls_info.records if r.direction == "s->c"]
    assert len(server) > 30 and all(r.content_type in (20, 22, 23) for r in server)
    assert sum(r.length for r in server) > 512 * 1024
    assert not any("SSLv2" in m.name for m in conn.tls_messages())
    with_keys = _load("tls-download.pcapng", keys=True).connection(0)
    assert len(with_keys.app_data("s->c")) > 512 * 1024  # the file and the HTTP headers


def test_tso_length_zero_taken_from_the_frame_and_flagged() -> None:
    cap = _load("tso-len0.pcap")
    data = [s for s in cap.connection(0).segments if s.length_from_frame]
    assert data and all(s.payload_len > 0 for s in data)
    assert any("segmentation offload" in w for w in cap.warnings)
    assert not any(
        "duplicate_ack" in s.analysis or "lost_segment" in s.analysis
        for s in cap.connection(0).segments
    )


@pytest.mark.parametrize("name", ["gre.pcap", "vxlan.pcap", "geneve.pcap"])
def test_tunnels_are_opened(name: str) -> None:
    plain = _load("http-v4-v6.pcapng").connection(0)
    conn = _load(name).connection(0)
    assert conn.tunnel and [s.payload_len for s in conn.segments] == [
        s.payload_len for s in plain.segments
    ]
    assert not any(s.retransmission for s in conn.segments)
    assert conn.app_data("c->s").startswith(b"GET /hello.txt")


@pytest.mark.parametrize("keys", [False, True])
def test_tls13_both_directions_decrypted(keys: bool) -> None:
    conn = _load("tls13-openssl.pcapng", keys).connection(0)
    data = [m for m in conn.tls_messages() if m.name == "ApplicationData"]
    assert {m.direction for m in data} == {"c->s", "s->c"}
    assert all(m.decrypted for m in data) == keys
    if keys:
        assert [m.name for m in conn.tls_messages()].count("KeyUpdate") == 2
        lines = [t for d, t in conn.app_lines() if d == "c->s"]
        assert lines == ["hello from the client", "after a key update", "last line"]


@pytest.mark.parametrize(
    "name",
    [
        "null-v6-af24.pcap",
        "null-v6-af28.pcap",
        "loop-v6-af30.pcap",
        "null-v4-bigendian.pcap",
        "sll2.pcap",
        "gzip.pcap.gz",
    ],
)
def test_bsd_loopback_and_cooked_captures_are_read(name: str) -> None:
    cap = _load(name)
    assert len(cap.connections()) >= 1 and not cap.warnings
    assert cap.connection(0).handshake().ok


def test_messages_pinned_to_the_segment_that_completed_them() -> None:
    conn = _load("tls13-openssl.pcapng").connection(0)
    for m in conn.tls_messages():
        seg = conn.segments[m.segment]
        assert seg.frame == m.frame and seg.direction == m.direction and seg.payload_len


def test_out_of_order_is_not_a_retransmission() -> None:
    conn = _load("tcp-flags.pcap").connection(0)
    ooo = [s for s in conn.segments if "out_of_order" in s.analysis]
    assert len(ooo) == 1 and not ooo[0].retransmission
    assert ooo[0] not in conn.retransmissions()


def test_truncated_file_read_to_the_cut() -> None:
    cap = _load("truncated.pcapng")
    assert cap.packet_count > 5
    assert any(
        w.startswith(f"file cut short after {cap.packet_count} packets") for w in cap.warnings
    )
    assert not any("snaplen" in w for w in cap.warnings)


def test_key_log_lines_are_checked(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.log"
    garbage.write_text("this is not\na key log\n")
    with pytest.raises(AnalysisError, match="not an NSS key log"):
        load(CORPUS / "tls12-openssl.pcapng", keylog=garbage)
    mixed = tmp_path / "mixed.log"
    mixed.write_text((CORPUS / "tls12-openssl.keys.log").read_text() + "junk line\n")
    cap = load(CORPUS / "tls12-openssl.pcapng", keylog=mixed, tls_ports=[TLS_PORT])
    assert any("1 of" in w and "not NSS key-log lines" in w for w in cap.warnings)
    assert cap.connection(0).app_lines()  # the good lines still decrypt


def test_scaled_window_shown_when_the_handshake_gives_the_scale() -> None:
    conn = _load("lossy-transfer.pcapng").connection(0)
    hs = conn.handshake()
    scale = hs.syn_ack.options["wscale"]
    later = next(s for s in conn.segments if s.direction == "s->c" and not s.syn)
    assert later.scaled_window == later.window << scale
    table = conn.segment_table()
    assert table[later.index]["win"] == later.scaled_window
    assert conn.segment_table(raw_window=True)[later.index]["win"] == later.window


@pytest.mark.parametrize(
    ("name", "proxy"), [("https-connect.pcapng", "HTTP CONNECT"), ("socks5.pcapng", "SOCKS5")]
)
def test_tls_inside_a_proxy_tunnel_is_found(name: str, proxy: str) -> None:
    cap = _load(name, keys=True)
    conn = cap.connection(0)
    assert conn.proxy == proxy and conn.tls
    assert conn.tls_info.sni == "localhost"
    assert b"through the tunnel" in conn.app_data("s->c")
    # tshark's SOCKS dissector uses up a tcp.stream number for the tunnel; HTTP CONNECT's not.
    direct = cap.connections()[-1]
    assert direct.stream == (3 if proxy == "SOCKS5" else 2) and not direct.proxy


def test_port_reuse_starts_a_new_stream() -> None:
    cap = _load("port-reuse.pcap")
    a, b = cap.connections()
    assert (a.client, a.server) == (b.client, b.server)
    assert "reused_ports" in b.segments[0].analysis


# ---- issue 13: TLS facts ---------------------------------------------------------------------


def test_alerts_with_level_and_description() -> None:
    alert12 = next(
        m for m in _load("tls12-alert.pcapng").connection(0).tls_messages() if m.name == "Alert"
    )
    assert alert12.fields == {"level": "fatal", "description": "unknown_ca", "code": 48}
    assert not alert12.encrypted
    closing = [
        m
        for m in _load("tls13-openssl.pcapng", keys=True).connection(0).tls_messages()
        if m.name == "Alert"
    ]
    assert closing and all(
        m.decrypted and m.fields["description"] == "close_notify" for m in closing
    )
    opaque = _load("tls12-openssl.pcapng").connection(0).tls_messages()
    assert any(m.name == "Alert" and m.encrypted and not m.fields for m in opaque)


def test_tickets_psk_and_resumption() -> None:
    first, second = _load("tls13-resume.pcapng", keys=True).connections()
    tickets = [m for m in first.tls_messages() if m.name == "NewSessionTicket"]
    assert tickets and all(m.fields["lifetime"] == 7200 and "age_add" in m.fields for m in tickets)
    hello = next(m for m in second.tls_messages() if m.name == "ClientHello").fields
    assert hello["pre_shared_key"]["identities"] == 1
    assert hello["psk_key_exchange_modes"] == ["psk_dhe_ke"]
    sh = next(m for m in second.tls_messages() if m.name == "ServerHello").fields
    assert sh["pre_shared_key"] == 0 and second.tls_info.resumed
    assert not first.tls_info.resumed
    assert "Certificate" not in [m.name for m in second.tls_messages()]
    ticket12 = next(
        m
        for m in _load("tls12-openssl.pcapng").connection(0).tls_messages()
        if m.name == "NewSessionTicket"
    )
    assert not ticket12.encrypted and ticket12.fields["lifetime"] > 0


def test_randoms_alpn_downgrade_and_certificate_verify() -> None:
    conn = _load("tls12-downgrade.pcapng").connection(0)
    sh = next(m for m in conn.tls_messages() if m.name == "ServerHello").fields
    ch = next(m for m in conn.tls_messages() if m.name == "ClientHello").fields
    assert len(ch["random"]) == 64 and len(sh["random"]) == 64
    assert sh["random"].endswith("444f574e47524401") and sh["downgrade_protection"] == "TLS 1.2"
    assert conn.tls_info.client_random == ch["random"]
    plain12 = next(
        m
        for m in _load("tls12-openssl.pcapng").connection(0).tls_messages()
        if m.name == "ServerHello"
    )
    assert "downgrade_protection" not in plain12.fields
    dl = _load("tls-download.pcapng", keys=True).connection(0)
    assert dl.tls_info.alpn_offered == ["h2", "http/1.1"] and dl.tls_info.alpn == ""
    names = [m.name for m in _load("tls13-openssl.pcapng", keys=True).connection(0).tls_messages()]
    assert "CertificateVerify" in names


@pytest.mark.parametrize("name", ["tls12-openssl.pcapng", "tls13-openssl.pcapng"])
def test_tls_round_trips_count_up_to_real_application_data(name: str) -> None:
    want = 2 if name.startswith("tls12") else 1
    opaque, clear = _load(name).connection(0), _load(name, keys=True).connection(0)
    assert tls_round_trips(opaque) == tls_round_trips(clear) == want
    first_opaque, first_clear = first_application_data(opaque), first_application_data(clear)
    assert first_clear.decrypted and first_clear.data == b"hello from the client\n"
    # Without keys the same record is found: not the encrypted Finished before it.
    assert first_opaque.frame == first_clear.frame and not first_opaque.decrypted
    finished = next(
        m for m in clear.tls_messages() if m.direction == "c->s" and m.name == "Finished"
    )
    assert finished.frame < first_opaque.frame


# ---- issue 14: throughput and goodput --------------------------------------------------------


def test_transfer_throughput_and_goodput() -> None:
    conn = _load("lossy-transfer.pcapng").connection(0)
    t = conn.transfer("c->s")
    assert t.unique_bytes == 1024 * 1024
    assert t.payload_bytes == t.unique_bytes + t.retransmitted_bytes
    assert t.retransmitted_bytes > 0 and t.throughput > t.goodput > 0
    assert t.wire_bytes > t.payload_bytes
    assert abs(t.goodput - t.unique_bytes * 8 / t.duration) < 1e-6


# ---- odd input -------------------------------------------------------------------------------

_FUZZ_BASE = {
    n: (CORPUS / n).read_bytes() for n in ("tls13-openssl.pcapng", "tls12-openssl.pcapng")
}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    name=st.sampled_from(sorted(_FUZZ_BASE)),
    flips=st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 255)), max_size=12),
    cut=st.one_of(st.none(), st.integers(0, 6000)),
)
def test_damaged_tls_with_keys_never_raises(tmp_path_factory, name, flips, cut) -> None:
    data = bytearray(_FUZZ_BASE[name])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(bytes(data[:cut] if cut is not None else data))
    try:
        cap = load(path, keylog=_keys(CORPUS / name), tls_ports=[TLS_PORT])
    except AnalysisError:
        return
    assert not any("decoding failed" in w for w in cap.warnings), cap.warnings
    for conn in cap.connections():
        conn.app_lines(), tls_round_trips(conn), conn.transfer()
        json.dumps(json_document(cap))


@pytest.mark.parametrize("name", ["tls12-cbc.pcapng", "tls13-chacha.pcapng"])
def test_other_ciphers_decrypt(name: str) -> None:
    conn = _load(name, keys=True).connection(0)
    assert conn.app_lines() == [("c->s", "another cipher"), ("s->c", "rehpic rehtona")]
    if "cbc" in name:  # OpenSSL negotiates encrypt_then_mac for CBC suites (RFC 7366)
        hello = next(m for m in conn.tls_messages() if m.name == "ServerHello")
        assert hello.fields["encrypt_then_mac"] and "CBC" in conn.tls_info.cipher_suite


def test_tls_after_starttls_is_found() -> None:
    conn = _load("imap-starttls.pcapng", keys=True).connection(0)
    assert conn.starttls and conn.tls and conn.server[1] == 143
    assert conn.app_lines() == [("c->s", "a2 LOGOUT"), ("s->c", "* BYE a2 LOGOUT")]
