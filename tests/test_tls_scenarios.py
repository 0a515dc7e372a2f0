"""Tests for labchat.capture.tls_scenarios: TLS refusals, mutual TLS, resumption, HRR, downgrade.

Every capture (a fresh one in a private namespace, and the shipped reference) is checked
against what the lesson says is on the wire: the fatal alert, its sender and code, read from
the capture itself; the resumed connection; the HelloRetryRequest; the downgrade sentinel.
"""

from __future__ import annotations

import datetime as dt
import ssl
import struct
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from helpers import private_unavailable

from labchat import capture
from labchat.capture import scenarios, tls_scenarios
from labchat.certs import create_lab_certs

NAMES = [s.name for s in tls_scenarios.SCENARIOS]


# ---------------------------------------------------------------------------------------------
# The man in the middle's one trick
# ---------------------------------------------------------------------------------------------


def _client_hello(**ctx_settings: object) -> bytes:
    """The first record a Python TLS client sends, made in memory (no socket)."""
    ctx = ssl.create_default_context()
    for name, value in ctx_settings.items():
        setattr(ctx, name, value)
    outgoing = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def _extension_types(record: bytes) -> list[int]:
    body = record[9:]
    at = 2 + 32
    at += 1 + body[at]
    at += 2 + int.from_bytes(body[at : at + 2], "big")
    at += 1 + body[at]
    end = at + 2 + int.from_bytes(body[at : at + 2], "big")
    assert end == len(body), "extensions must fill the ClientHello exactly"
    types, i = [], at + 2
    while i < end:
        ext_type, ext_len = struct.unpack("!HH", body[i : i + 4])
        types.append(ext_type)
        i += 4 + ext_len
    assert i == end
    return types


def test_strip_supported_versions_removes_only_that_extension_and_fixes_the_lengths():
    hello = _client_hello()
    assert 43 in _extension_types(hello)
    stripped = tls_scenarios.strip_supported_versions(hello)
    assert _extension_types(stripped) == [t for t in _extension_types(hello) if t != 43]
    assert int.from_bytes(stripped[3:5], "big") == len(stripped) - 5
    assert int.from_bytes(stripped[6:9], "big") == len(stripped) - 9
    assert stripped[9 : 9 + 34] == hello[9 : 9 + 34]  # legacy_version and random untouched


def test_strip_supported_versions_leaves_a_hello_without_it_alone():
    hello = _client_hello(maximum_version=ssl.TLSVersion.TLSv1_2)
    assert 43 not in _extension_types(hello)
    assert tls_scenarios.strip_supported_versions(hello) == hello


def test_a_tls12_server_answers_a_stripped_hello_with_the_downgrade_sentinel():
    # A server that speaks 1.3 and is offered only 1.2 says so in its random (RFC 8446 4.1.3).
    with tempfile.TemporaryDirectory() as tmp:
        certs = create_lab_certs(Path(tmp))
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(certs.server_cert, certs.server_key)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(tls_scenarios.strip_supported_versions(_client_hello()))
    with pytest.raises(ssl.SSLWantReadError):
        server.do_handshake()
    reply = outgoing.read()
    assert reply[0] == 22 and reply[5] == 2  # a handshake record holding a ServerHello
    assert reply[9:11] == b"\x03\x03"  # TLS 1.2
    assert reply[11 + 24 : 11 + 32] == b"DOWNGRD\x01"


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x17\x03\x03\x00\x05hello", b"\x16\x03\x01\x00\x10\x01\x00\x00\x40" + b"\0" * 12],
)
def test_strip_supported_versions_refuses_what_is_not_a_whole_client_hello(bad):
    with pytest.raises(ValueError):
        tls_scenarios.strip_supported_versions(bad)


# ---------------------------------------------------------------------------------------------
# The scenarios: registered, and what each connection did
# ---------------------------------------------------------------------------------------------


def test_tls_scenarios_are_registered_with_the_loopback_scenarios():
    for name in NAMES:
        assert scenarios.get(name).tls
    assert NAMES == scenarios.names()[-len(NAMES) :]


#: For each scenario and connection, the alert it must end with: (sender, code, encrypted on
#: the wire), or None where the connection must work. OpenSSL's client refuses a certificate
#: before it encrypts anything of its own, so only the server's certificate_required, sent
#: after its Finished, is encrypted.
EXPECTED = {
    "tls-unknown-ca": [("client", 48, False), ("client", 48, False)],
    "tls-expired": [("client", 45, False)],
    "tls-wrong-name": [("client", 42, False)],
    "tls-no-client-cert": [("server", 40, False), ("server", 116, True)],
    "tls-version-mismatch": [("server", 70, False)],
    "mtls-chat": [None, None],
    "tls12-resume": [None, None],
    "tls13-resume": [None, None],
    "tls13-hrr": [None],
    "tls-downgrade": [None, None, ("client", 47, False)],
}


def check_manifest(result: capture.CaptureResult) -> None:
    """What the scenario says each client did agrees with the lesson."""
    m = result.manifest
    name = m["scenario"]
    clients = m["clients"]
    assert len(m["connections"]) == len(clients) == len(EXPECTED[name])
    for client, expected in zip(clients, EXPECTED[name], strict=True):
        if expected is None:
            assert client["result"] == "ok", client
            assert "expected_alert" not in client
        else:
            assert client["result"] == "refused", client
            alert = client["expected_alert"]
            assert (alert["from"], alert["code"], alert["encrypted"]) == expected
            assert alert["level"] == "fatal"
    if name.endswith("-resume"):
        assert [c["session_reused"] for c in clients] == [False, True]
        assert [c["offered_session"] for c in clients] == [False, True]
        assert {c["version"] for c in clients} == {"TLSv1.2" if "12" in name else "TLSv1.3"}
    if name == "mtls-chat":
        assert [c["version"] for c in clients] == ["TLSv1.2", "TLSv1.3"]
        assert all(c["client_certificate"] for c in clients)
    if name == "tls-downgrade":
        assert [c.get("version") for c in clients] == ["TLSv1.2", "TLSv1.2", None]
        # OpenSSL's name for "the server's random says it could have done better".
        assert clients[2]["error"] == "SSLError: INAPPROPRIATE_FALLBACK"
    assert (result.keylog is None) == (name == "tls-version-mismatch")
    assert m["tls"]["ca_pem"].startswith("-----BEGIN CERTIFICATE-----")
    checked = dt.datetime.fromisoformat(m["tls"]["checked_at"])
    ca = x509.load_pem_x509_certificate(m["tls"]["ca_pem"].encode())
    assert ca.not_valid_before_utc <= checked <= ca.not_valid_after_utc


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    if private_unavailable() is not None:
        pytest.skip(f"no private namespace here: {private_unavailable()}")
    out = tmp_path_factory.mktemp("tls-scenarios")
    return {r.scenario: r for r in capture.run_scenarios(NAMES, out, mode="private")}


@pytest.mark.capture
@pytest.mark.parametrize("name", NAMES)
def test_fresh_tls_scenario_capture(fresh, name):
    check_manifest(fresh[name])


@pytest.mark.parametrize("name", NAMES)
def test_reference_tls_scenario_capture(name):
    result = capture.load_reference(name)
    assert result.manifest["server"]["port"] == 5050
    check_manifest(result)


# ---------------------------------------------------------------------------------------------
# What the packets say (labchat.analysis), with and without the key log
# ---------------------------------------------------------------------------------------------


def _load(result: capture.CaptureResult, *, keys: bool):
    from labchat import analysis

    return analysis.load(
        result.pcap,
        keylog=result.keylog if keys else None,
        embedded_keys=keys,
        tls_ports=[result.manifest["server"]["port"]],
    ).connections()


def _alerts(conn) -> list:
    return [m for m in conn.tls_messages() if m.name == "Alert"]


def check_capture(result: capture.CaptureResult) -> None:
    """The alerts, resumptions, retries and randoms of the lesson are on the wire."""
    name = result.manifest["scenario"]
    clear = _load(result, keys=False)
    opened = _load(result, keys=result.keylog is not None)
    assert len(clear) == len(opened) == len(EXPECTED[name])
    for eavesdropped, decrypted, expected in zip(clear, opened, EXPECTED[name], strict=True):
        if expected is None:
            continue
        sender, code, encrypted = expected
        direction = "c->s" if sender == "client" else "s->c"
        # With the keys (where there are any) every fatal alert can be read: code and sender.
        fatal = [m for m in _alerts(decrypted) if m.fields["level"] == "fatal"]
        assert [(m.direction, m.fields["code"]) for m in fatal] == [(direction, code)], name
        assert fatal[0].encrypted is encrypted
        # Without them, a plaintext alert is still readable; an encrypted one is an opaque
        # application_data record of 2 + 1 + 16 bytes (alert, inner type, AEAD tag).
        seen = [m.fields["code"] for m in _alerts(eavesdropped)]
        if encrypted:
            assert seen == []
            last = eavesdropped.tls_messages()[-1]
            opaque = (direction, "ApplicationData", 19)
            assert (last.direction, last.name, last.record_length) == opaque
        else:
            assert seen == [code]
    # ALPN (RFC 7301): every ClientHello offers labchat/1; every server that got as far as
    # answering selects it (the 1.3 server of the version mismatch answers only with an alert).
    assert [c.tls_info.alpn_offered for c in clear] == [["labchat/1"]] * len(clear)
    selected = "" if name == "tls-version-mismatch" else "labchat/1"
    assert [c.tls_info.alpn for c in opened] == [selected] * len(opened), name
    if name.endswith("-resume"):
        full, resumed = opened
        assert not full.tls_info.resumed and resumed.tls_info.resumed
        names = [m.name for m in resumed.tls_messages()]
        assert "Certificate" in [m.name for m in full.tls_messages()]
        assert "Certificate" not in names and "ServerKeyExchange" not in names
        hello = next(m for m in resumed.tls_messages() if m.name == "ClientHello").fields
        if name == "tls13-resume":
            assert hello["pre_shared_key"]["identities"] >= 1
            server_hello = next(m for m in resumed.tls_messages() if m.name == "ServerHello")
            assert server_hello.fields["pre_shared_key"] == 0
        else:
            assert hello["session_ticket"] > 0
        from labchat.analysis import tls_round_trips

        assert tls_round_trips(resumed) == 1
    if name == "tls13-hrr":
        (conn,) = opened
        assert conn.tls_info.hello_retry
        hrr = next(m for m in conn.tls_messages() if m.name == "HelloRetryRequest")
        assert hrr.fields["selected_group"] == "secp256r1"
        assert [m.name for m in conn.tls_messages()].count("ClientHello") == 2
        from labchat.analysis import tls_round_trips

        assert tls_round_trips(conn) == 2
    if name == "tls-downgrade":
        sentinel = "444f574e47524401"  # "DOWNGRD\x01", RFC 8446 section 4.1.3
        tails = [c.tls_info.server_random[-16:] == sentinel for c in clear]
        assert tails == [False, True, True]
        assert [c.tls_info.version for c in clear] == ["TLS 1.2"] * 3
    if name == "mtls-chat":
        for eavesdropped, version in zip(clear, ("TLS 1.2", "TLS 1.3"), strict=True):
            assert eavesdropped.tls_info.version == version
            readable = bool(eavesdropped.certificates("c->s"))
            assert readable is (version == "TLS 1.2")
        for decrypted in opened:
            (alice, *_) = decrypted.certificates("c->s")
            cn = x509.load_der_x509_certificate(alice).subject.rfc4514_string()
            assert cn.startswith("CN=alice")
            assert "CertificateVerify" in [
                m.name for m in decrypted.tls_messages() if m.direction == "c->s"
            ]


@pytest.mark.capture
@pytest.mark.parametrize("name", NAMES)
def test_fresh_tls_scenario_packets(fresh, name):
    check_capture(fresh[name])


@pytest.mark.parametrize("name", NAMES)
def test_reference_tls_scenario_packets(name):
    check_capture(capture.load_reference(name))
