"""Tests for labchat.capture.scenarios: each scenario's shape on the wire, and captures/."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import private_unavailable, skip_without_private

from labchat import capture
from labchat.capture import scenarios, tls_scenarios

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (CI installs it)")

SYN, RST, ACK, FIN = 0x02, 0x04, 0x10, 0x01

#: The scenarios whose shape `check_shape` knows; the TLS lessons of issue 13
#: (`labchat.capture.tls_scenarios`) have their own tests in tests/test_tls_scenarios.py.
BASIC = [n for n in scenarios.names() if n not in {s.name for s in tls_scenarios.SCENARIOS}]


def _segments(result: capture.CaptureResult) -> list:
    from scapy.layers.inet import TCP

    return [p[TCP] for p in result.packets() if TCP in p]


def _handshakes_ok(tcp: list, server_port: int, client_port: int) -> bool:
    """SYN, SYN/ACK, ACK at the start of one connection."""
    conn = [t for t in tcp if {t.sport, t.dport} == {server_port, client_port}]
    flags = [(t.sport == client_port, int(t.flags) & 0x17) for t in conn[:3]]
    return flags == [(True, SYN), (False, SYN | ACK), (True, ACK)]


def _tls_server_version(pcap: Path) -> str:
    """The TLS version the ServerHello chose, as tshark sees it."""
    out = subprocess.run(
        [
            TSHARK,
            "-r",
            str(pcap),
            "-o",
            f"tls.keylog_file:{pcap.parent / 'none.log'}",
            "-d",
            "tcp.port==5050,tls",
            "-Y",
            "tls.handshake.type == 2",
            "-T",
            "fields",
            "-e",
            "tls.handshake.extensions.supported_version",
            "-e",
            "tls.handshake.version",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return "TLSv1.3" if "0x0304" in out else "TLSv1.2" if "0x0303" in out else repr(out)


def check_shape(result: capture.CaptureResult) -> None:
    """Assert the wire shape each scenario promises (used on fresh and shipped captures)."""
    m = result.manifest
    name = m["scenario"]
    server_port = m["server"]["port"]
    tcp = _segments(result)
    assert len(tcp) == m["capture"]["packets"]
    conns = m["connections"]
    assert [c["role"] for c in conns] == [c["role"] for c in m["clients"]]
    for c in conns:
        assert c["server_port"] == server_port
        assert any(t.sport == c["client_port"] for t in tcp)
    syns = [t for t in tcp if int(t.flags) & (SYN | ACK) == SYN]
    assert len(syns) == len(conns)  # one SYN per connect: no loopback duplicates
    if name == "refused":
        assert [int(t.flags) for t in tcp] == [SYN, RST | ACK]
        assert tcp[1].sport == server_port
        return
    for c in conns:
        assert _handshakes_ok(tcp, server_port, c["client_port"]), name
    client = conns[0]["client_port"]
    from_client = [t for t in tcp if t.sport == client]
    from_server = [t for t in tcp if t.sport == server_port]
    if name not in ("abort",):
        # Every connection ends in the capture: both FINs are there (a sniffer stopped too
        # early used to lose a scenario's last segments).
        for c in conns:
            fins = {
                t.sport
                for t in tcp
                if int(t.flags) & FIN and c["client_port"] in (t.sport, t.dport)
            }
            assert fins == {c["client_port"], server_port}, (name, c)
    if name == "abort":
        assert int(from_client[-1].flags) & RST
        assert not any(int(t.flags) & FIN for t in tcp)
        assert bytes(tcp[3].payload).decode().strip() == m["transcript"][0]["line"]
    elif name == "half-close":
        fin_at = next(i for i, t in enumerate(tcp) if t.sport == client and int(t.flags) & FIN)
        after = [t for t in tcp[fin_at:] if t.sport == server_port and len(t.payload)]
        assert b"".join(bytes(t.payload) for t in after).decode().splitlines() == [
            x["line"] for x in m["transcript"] if x["from"] == "server"
        ]
        assert int([t for t in from_server if int(t.flags) & FIN][0].flags) & FIN
        assert not any(int(t.flags) & RST for t in tcp)
    elif name == "tcp-chat":
        wire = b"".join(bytes(t.payload) for t in tcp)
        for entry in m["transcript"]:
            assert f"SAY {entry['line']}".encode() in wire
            assert f"MSG {entry['from']} {entry['line']}".encode() in wire
        assert b"LOGIN alice " + scenarios.PASSWORDS["alice"].encode() in wire
        assert m["tls"] is None and result.keylog is None
    else:  # TLS scenarios
        assert result.keylog is not None and result.keylog.read_text().strip()
        wire = b"".join(bytes(t.payload) for t in tcp)
        assert b"LOGIN" not in wire and b"hi bob" not in wire  # encrypted
        expected = {"tls12-chat": "TLSv1.2"}.get(name, "TLSv1.3")
        assert m["tls"]["version"] == expected
        if TSHARK and server_port == 5050:
            assert _tls_server_version(result.pcap) == expected
        check_alpn(result, expected)
    if name in ("tcp-chat", "tls12-chat", "tls13-chat"):
        assert [c["role"] for c in conns] == ["alice", "bob"]
        assert [x["line"] for x in m["transcript"]] == [line for _, line in scenarios.CHAT]


def check_alpn(result: capture.CaptureResult, version: str) -> None:
    """Every ClientHello offers ALPN labchat/1 and the server selects it (RFC 7301).

    TLS 1.2 says so in the clear (ServerHello); TLS 1.3 only in EncryptedExtensions, which
    takes the key log to read.
    """
    from labchat import analysis

    def alpn(keys: bool) -> list[tuple[list[str], str]]:
        conns = analysis.load(
            result.pcap,
            keylog=result.keylog if keys else None,
            embedded_keys=keys,
            tls_ports=[result.manifest["server"]["port"]],
        ).connections()
        return [(c.tls_info.alpn_offered, c.tls_info.alpn) for c in conns]

    count = len(result.manifest["connections"])
    seen = "labchat/1" if version == "TLSv1.2" else ""
    assert alpn(keys=False) == [(["labchat/1"], seen)] * count
    assert alpn(keys=True) == [(["labchat/1"], "labchat/1")] * count


# ---------------------------------------------------------------------------------------------
# Fresh captures in a private namespace
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    if private_unavailable() is not None:
        pytest.skip(f"no private namespace here: {private_unavailable()}")
    out = tmp_path_factory.mktemp("scenarios")
    results = capture.run_scenarios(BASIC, out, mode="private")
    return {r.scenario: r for r in results}


@pytest.mark.capture
@pytest.mark.parametrize("name", BASIC)
def test_scenario_private_capture_has_the_expected_shape(fresh, name):
    result = fresh[name]
    assert result.mode.name == "private"
    assert result.manifest["capture"]["mode"] == "private"
    assert result.manifest["capture"]["seconds"] > 0  # how long is a benchmark figure, not a test
    check_shape(result)


@pytest.mark.capture
@skip_without_private()
def test_run_scenario_single_private(tmp_path):
    result = capture.run_scenario("refused", tmp_path / "r", mode="private", pause=0.0)
    assert result.manifest["parameters"] == {"port": 5050, "pause": 0.0}
    check_shape(result)


@pytest.mark.capture
def test_manifest_records_versions_and_mode(fresh):
    m = fresh["tls13-chat"].manifest
    assert set(m["versions"]) >= {"python", "openssl", "scapy"}
    assert m["capture"]["keylog"] == "keys.log"
    assert m["capture"]["decryption_secrets_block"] is True
    assert m["capture"]["reason"]


# ---------------------------------------------------------------------------------------------
# The shipped reference set
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BASIC)
def test_reference_capture_decodes_and_agrees_with_its_manifest(name):
    result = capture.load_reference(name)
    assert result.mode.name == "offline"
    assert result.manifest["scenario"] == name
    assert result.manifest["server"]["port"] == 5050
    check_shape(result)


@needs_tshark
@pytest.mark.parametrize("name", ["tls12-chat", "tls13-chat", "bad-login"])
def test_reference_tls_captures_decrypt_in_tshark_with_no_settings(name):
    pcap = capture.reference_dir() / name / "capture.pcapng"
    text = subprocess.run(
        [TSHARK, "-r", str(pcap), "-o", "data.show_as_text:TRUE", "-Y", "tls and data",
         "-T", "fields", "-e", "data.text"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "LOGIN alice" in text
    if name == "bad-login":
        assert "ERR auth" in text
    else:
        assert "MSG bob every word, alice" in text
    offered = subprocess.run(
        [TSHARK, "-r", str(pcap), "-Y", "tls.handshake.type == 1",
         "-T", "fields", "-e", "tls.handshake.extensions_alpn_str"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert offered and set(offered) == {"labchat/1"}  # tshark names the protocol too


def test_reference_keys_are_shipped_and_not_ignored():
    root = capture.reference_dir()
    without_keys = set()
    for name, spec in scenarios.SCENARIOS.items():
        has_keys = (root / name / "keys.log").is_file()
        assert has_keys is bool(json.loads((root / name / "manifest.json").read_text())
                                ["capture"]["keylog"])  # fmt: skip
        if spec.tls and not has_keys:
            without_keys.add(name)
        assert spec.tls or not has_keys
    # Only a handshake refused before any key was derived has nothing to log.
    assert without_keys == {"tls-version-mismatch"}
    # The scenarios' own key logs only: `make demo` writes captures/demo/keys.log, which is
    # rightly git-ignored (issue 12: globbing captures/ made `make demo && make test` fail).
    files = [str(root / n / "keys.log") for n in scenarios.SCENARIOS if n not in without_keys]
    ignored = subprocess.run(
        ["git", "check-ignore", *files], cwd=root.parent, capture_output=True, text=True
    )
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.stdout == ""


def test_scenario_registry():
    assert scenarios.names()[:3] == ["tcp-chat", "tls12-chat", "tls13-chat"]
    assert {"bad-login", "refused", "abort", "half-close"} <= set(scenarios.names())
    with pytest.raises(KeyError, match="known: tcp-chat"):
        scenarios.get("nope")


@pytest.mark.capture
@pytest.mark.parametrize("name", ["tcp-chat", "tls12-chat", "tls13-chat"])
def test_chat_after_QUIT_ends_with_the_server_closing_first_and_no_reset(fresh, name):
    # The client waits for the server's close after BYE; closing at once used to race the
    # server's close_notify, and the client's kernel answered it with a RST.
    from labchat import analysis

    result = fresh[name]
    conns = analysis.load(result.pcap, keylog=result.keylog).connections()
    chat = [c for c in conns if c.teardown() is not None]
    assert chat, "no connection with a teardown"
    for conn in chat:
        assert not conn.resets(), [s.label() for s in conn.resets()]
        assert conn.teardown().first_closer == "server"
