"""Tests for labchat.capture: mode detection, de-duplication, filters, errors, pcapng + DSB."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import nobody_dir, nobody_python, private_unavailable, skip_without_private

from labchat import capture
from labchat.capture import CaptureError, CaptureMode, Sniffer, detect_mode, modes, pcapng
from labchat.capture.results import connections

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (CI installs it)")


def _host_reason() -> str | None:
    return modes.host_unavailable()


needs_private = skip_without_private()
needs_host = pytest.mark.skipif(
    _host_reason() is not None, reason=f"no host capture: {_host_reason()}"
)


def _tcp(pkts):
    from scapy.layers.inet import TCP

    return [p[TCP] for p in pkts if TCP in p]


def _syns(pkts):
    return [t for t in _tcp(pkts) if int(t.flags) & 0x12 == 0x02]


def _connect_once(port: int, payload: bytes = b"x\n") -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
        c.sendall(payload)


class _Listener:
    """A host loopback server that accepts and drains connections until closed."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    while conn.recv(4096):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# Mode detection (no capture needed)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(capture.MODE_ENV, raising=False)


def test_detect_mode_env_forces_offline(monkeypatch):
    monkeypatch.setenv(capture.MODE_ENV, "offline")
    mode = detect_mode()
    assert mode.name == "offline"
    assert "LABCHAT_CAPTURE_MODE=offline" in mode.reason
    assert set(mode.unavailable) == {"private", "host"}


def test_detect_mode_rejects_unknown_names(monkeypatch):
    with pytest.raises(ValueError, match="unknown capture mode"):
        detect_mode("wireless")
    monkeypatch.setenv(capture.MODE_ENV, "bogus")
    with pytest.raises(ValueError, match="LABCHAT_CAPTURE_MODE"):
        detect_mode()


def test_detect_mode_without_unshare_falls_back_and_says_why(monkeypatch, no_env):
    real_which = shutil.which
    monkeypatch.setattr(
        modes.shutil, "which", lambda n, *a, **k: None if n == "unshare" else real_which(n)
    )
    monkeypatch.setattr(modes, "host_unavailable", lambda: "needs root or CAP_NET_RAW")
    mode = detect_mode()
    assert mode.name == "offline"
    assert "unshare" in mode.unavailable["private"]
    assert "CAP_NET_RAW" in mode.unavailable["host"]
    assert "live capture is not possible" in mode.reason
    assert "not private: no `unshare`" in mode.explain()


def _kernel(**sysctls: str):
    """A sysctl reader for `modes.private_unavailable` that plays a kernel with these values."""
    paths = {
        "apparmor": "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "max_user_namespaces": "/proc/sys/user/max_user_namespaces",
    }
    values = {paths[k]: v for k, v in sysctls.items()}
    return lambda path: values.get(path, modes.read_sysctl(path))


def test_detect_mode_explains_apparmor_restriction(no_env):
    def refused() -> tuple[bool, str]:
        return False, "unshare: write failed /proc/self/uid_map: Operation not permitted"

    def private() -> str | None:
        return modes.private_unavailable(read=_kernel(apparmor="1"), probe=refused)

    mode = detect_mode(checks={"private": private, "host": lambda: None})
    assert mode.name == "host"
    assert "apparmor_restrict_unprivileged_userns=1" in mode.unavailable["private"]
    assert "Operation not permitted" in mode.unavailable["private"]


def test_detect_mode_explains_disabled_user_namespaces():
    def never_called() -> tuple[bool, str]:
        raise AssertionError("the probe must not run when user namespaces are off")

    why = modes.private_unavailable(read=_kernel(max_user_namespaces="0"), probe=never_called)
    assert why is not None and "max_user_namespaces is 0" in why


def test_detect_mode_rejects_checks_for_unknown_modes():
    with pytest.raises(ValueError, match="unknown modes"):
        detect_mode(checks={"wireless": lambda: None})


def test_detect_mode_explicit_unavailable_mode_raises(monkeypatch, no_env):
    monkeypatch.setattr(modes, "host_unavailable", lambda: "needs root or CAP_NET_RAW")
    with pytest.raises(CaptureError, match="'host' is not available: needs root"):
        detect_mode("host")


def test_detect_mode_offline_needs_reference_captures(monkeypatch, tmp_path, no_env):
    monkeypatch.setenv(capture.CAPTURES_ENV, str(tmp_path))
    with pytest.raises(CaptureError, match="no reference captures"):
        detect_mode("offline")


@needs_private
def test_detect_mode_auto_prefers_private(no_env):
    mode = detect_mode()
    assert mode.name == "private"
    assert "only the lab's traffic" in mode.reason
    assert set(mode.unavailable) == {"host", "offline"}


# ---------------------------------------------------------------------------------------------
# pcapng writer (no capture needed)
# ---------------------------------------------------------------------------------------------


def _fake_packets():
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    pkts = []
    for i, flags in enumerate(["S", "SA", "A"]):
        p = Ether(bytes(Ether() / IP() / TCP(sport=40000, dport=5050, flags=flags)))
        p.time = 1_700_000_000.123456 + i / 1000
        pkts.append(p)
    return pkts


def test_write_pcapng_round_trips_and_embeds_the_key_log(tmp_path):
    from scapy.utils import rdpcap

    keylog = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"
    path = pcapng.write_pcapng(tmp_path / "c.pcapng", _fake_packets(), keylog=keylog)
    blocks = pcapng.read_pcapng_blocks(path)
    types = [t for t, _ in blocks]
    assert types[:3] == [0x0A0D0D0A, 0x00000001, 0x0000000A]  # SHB, IDB, DSB before packets
    assert types[3:] == [0x00000006] * 3
    secrets_type, length = struct.unpack_from("<II", blocks[2][1])
    assert secrets_type == 0x544C534B  # "TLSK"
    assert blocks[2][1][8 : 8 + length] == keylog
    back = rdpcap(str(path))
    assert [bytes(p) for p in back] == [bytes(p) for p in _fake_packets()]
    assert abs(float(back[0].time) - 1_700_000_000.123456) < 1e-6


def test_write_pcapng_without_key_log_has_no_dsb(tmp_path):
    path = pcapng.write_pcapng(tmp_path / "c.pcapng", _fake_packets())
    assert 0x0000000A not in [t for t, _ in pcapng.read_pcapng_blocks(path)]


def test_strip_secrets_drops_only_the_key_log(tmp_path):
    keylog = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"
    path = pcapng.write_pcapng(tmp_path / "c.pcapng", _fake_packets(), keylog=keylog)
    bare = pcapng.strip_secrets(path, tmp_path / "bare.pcapng")
    kept = pcapng.read_pcapng_blocks(bare)
    assert [t for t, _ in kept] == [0x0A0D0D0A, 0x00000001] + [0x00000006] * 3
    assert keylog not in bare.read_bytes()
    assert kept == [b for b in pcapng.read_pcapng_blocks(path) if b[0] != 0x0000000A]


@needs_tshark
def test_write_pcapng_opens_in_tshark(tmp_path):
    path = pcapng.write_pcapng(tmp_path / "c.pcapng", _fake_packets(), keylog=b"# empty\n")
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-T", "fields", "-e", "tcp.flags.str"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(out) == 3


# ---------------------------------------------------------------------------------------------
# Sniffer on host loopback: de-duplication, BPF vs Python filter, errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.capture
@needs_host
@pytest.mark.parametrize("use_pcap", [True, False], ids=["bpf-libpcap", "python-filter"])
def test_Sniffer_sees_each_segment_once_and_only_its_port(use_pcap, monkeypatch):
    if not use_pcap:
        monkeypatch.setenv(capture.NO_PCAP_ENV, "1")  # as if libpcap were missing
    elif not capture.libpcap_available():
        pytest.skip("libpcap not installed")
    lab, noise = _Listener(), _Listener()
    try:
        with Sniffer("lo", lab.port) as sniffer:
            _connect_once(noise.port)
            _connect_once(lab.port)
            _connect_once(noise.port)
            pkts = sniffer.stop()
    finally:
        lab.close()
        noise.close()
    assert sniffer.use_pcap is use_pcap
    assert ("BPF filter" in sniffer.method) is use_pcap
    assert ("Python filter" in sniffer.method) is (not use_pcap)
    tcp = _tcp(pkts)
    assert tcp, "nothing captured"
    assert all(lab.port in (t.sport, t.dport) for t in tcp)
    assert len(_syns(pkts)) == 1  # one connect, one SYN: no loopback duplicates
    assert len({(t.sport, t.dport, t.seq, t.ack, int(t.flags)) for t in tcp}) == len(tcp)


@pytest.mark.capture
@needs_host
def test_Sniffer_can_keep_frames_raw_for_bulk_transfers(tmp_path):
    if not capture.libpcap_available():
        pytest.skip("libpcap not installed (dissect=False needs it)")
    from scapy.config import conf

    from labchat import analysis

    lab = _Listener()
    try:
        with Sniffer("lo", lab.port, dissect=False) as sniffer:
            _connect_once(lab.port)
            frames = sniffer.stop()
    finally:
        lab.close()
    assert frames and all(type(f) is conf.raw_layer and f.time for f in frames)
    (conn,) = connections(frames, lab.port, ["only"])  # SYNs found in the raw bytes
    capture.write_pcapng(tmp_path / "raw.pcapng", frames)
    loaded = analysis.load(tmp_path / "raw.pcapng").connection(0)
    assert loaded.client[1] == conn["client_port"] and loaded.handshake().ok


def test_connections_reads_raw_and_dissected_frames_alike():
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    syn = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=5050, flags="S")
    synack = Ether() / IP() / TCP(sport=5050, dport=40000, flags="SA")
    other = Ether() / IP() / TCP(sport=40001, dport=6000, flags="S")
    frames = [syn, synack, other, syn]
    raw = [Raw(bytes(f)) for f in frames]
    want = [{"role": "a", "client_port": 40000, "server_port": 5050}]
    assert connections(frames, 5050, ["a"]) == connections(raw, 5050, ["a"]) == want
    assert connections([Raw(b"\x00" * 60)], 5050, ["a"]) == []  # not IPv4/TCP


@pytest.mark.capture
@needs_host
def test_Sniffer_start_failure_is_raised_not_swallowed():
    with pytest.raises(CaptureError, match="failed"):
        Sniffer("no-such-if0", 5050, use_pcap=False).start()
    if capture.libpcap_available():
        bad = Sniffer("lo", 5050, use_pcap=True)
        bad.bpf = "tcp port not-a-port"
        with pytest.raises(CaptureError, match="filter"):
            bad.start()


@pytest.mark.capture
@needs_host
def test_Sniffer_death_while_capturing_is_reported():
    sniffer = Sniffer("lo", 5050, use_pcap=False).start()
    sniffer._sniffer.stop_cb()  # the sniff loop ends by itself, as when its socket fails
    sniffer._sniffer.thread.join(2)
    with pytest.raises(CaptureError, match="stopped before it was asked"):
        sniffer.stop(quiet=0)


# ---------------------------------------------------------------------------------------------
# Private namespace capture
# ---------------------------------------------------------------------------------------------


@pytest.mark.capture
@needs_private
def test_run_scenario_private_one_syn_per_connect_and_nothing_else(tmp_path, no_env):
    # Host loopback traffic on the very port the private namespace uses must not leak in.
    noise = _Listener()
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            _connect_once(noise.port)
            time.sleep(0.01)

    t = threading.Thread(target=chatter, daemon=True)
    t.start()
    try:
        result = capture.run_scenario("abort", tmp_path / "abort", mode="private", port=noise.port)
    finally:
        stop.set()
        t.join(2)
        noise.close()
    assert result.mode.name == "private"
    pkts = result.packets()
    tcp = _tcp(pkts)
    assert len(pkts) == len(tcp) == result.manifest["capture"]["packets"]
    assert len(_syns(pkts)) == 1
    [conn] = result.manifest["connections"]
    assert all({t.sport, t.dport} == {conn["client_port"], noise.port} for t in tcp)
    assert result.manifest["capture"]["mode"] == "private"


@pytest.mark.capture
@needs_private
def test_run_scenario_private_python_filter_path(tmp_path, monkeypatch, no_env):
    monkeypatch.setenv(capture.NO_PCAP_ENV, "1")  # inherited by the namespace child
    result = capture.run_scenario("refused", tmp_path / "r", mode="private")
    assert "Python filter" in result.manifest["capture"]["method"]
    flags = [str(t.flags) for t in _tcp(result.packets())]
    assert flags == ["S", "RA"]


@pytest.mark.capture
@needs_private
def test_run_scenario_private_errors_come_back_as_one_line(tmp_path, no_env):
    with pytest.raises(CaptureError, match="private namespace failed: .*Error"):
        # a bad parameter fails inside the namespace child; the parent reports it
        capture.run_scenario("half-close", tmp_path / "h", mode="private", pause="soon")


@pytest.fixture(scope="module")
def tls13(tmp_path_factory):
    if private_unavailable() is not None and _host_reason() is not None:
        pytest.skip("no live capture possible here")
    mode = "private" if private_unavailable() is None else "host"
    out = tmp_path_factory.mktemp("tls13") / "tls13-chat"
    return capture.run_scenario("tls13-chat", out, mode=mode)


@pytest.mark.capture
def test_tls_capture_has_keylog_and_dsb(tls13):
    assert tls13.keylog is not None and tls13.keylog.read_text().count("TRAFFIC_SECRET_0") == 4
    blocks = pcapng.read_pcapng_blocks(tls13.pcap)
    [dsb] = [body for t, body in blocks if t == 0x0000000A]
    secrets_type, length = struct.unpack_from("<II", dsb)
    assert secrets_type == 0x544C534B
    assert dsb[8 : 8 + length] == tls13.keylog.read_bytes()
    first_epb = [t for t, _ in blocks].index(0x00000006)
    assert [t for t, _ in blocks].index(0x0000000A) < first_epb


def _tshark_lines(pcap: Path, *extra: str) -> list[str]:
    proc = subprocess.run(
        [
            TSHARK,
            "-r",
            str(pcap),
            "-o",
            "data.show_as_text:TRUE",
            "-Y",
            "tls and data",
            "-T",
            "fields",
            "-e",
            "data.text",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.splitlines()


@pytest.mark.capture
@needs_tshark
def test_tshark_decrypts_the_capture_with_no_settings(tls13):
    lines = _tshark_lines(tls13.pcap)
    assert any("SAY hi bob, can you read this?" in x for x in lines)
    assert any("LOGIN alice" in x for x in lines)


@pytest.mark.capture
@needs_tshark
def test_editcap_inject_secrets_cross_check(tls13, tmp_path):
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap not installed")
    bare, injected = tmp_path / "bare.pcapng", tmp_path / "injected.pcapng"
    subprocess.run([editcap, "--discard-all-secrets", str(tls13.pcap), str(bare)], check=True)
    assert _tshark_lines(bare) == []  # without the DSB nothing decrypts
    subprocess.run(
        [editcap, "--inject-secrets", f"tls,{tls13.keylog}", str(bare), str(injected)],
        check=True,
    )
    assert _tshark_lines(injected) == _tshark_lines(tls13.pcap)


# ---------------------------------------------------------------------------------------------
# An ordinary user can capture in the private mode
# ---------------------------------------------------------------------------------------------


@pytest.mark.capture
@needs_private
def test_ordinary_user_can_capture_in_private_mode():
    cmd, env = nobody_python()
    code = (
        "import json,os,sys; from labchat.capture import run_scenario, detect_mode;"
        "r = run_scenario('abort', sys.argv[1]);"
        "print(json.dumps({'uid': os.getuid(), 'mode': r.mode.name,"
        " 'host': r.mode.unavailable['host'], 'packets': len(r.packets())}))"
    )
    with nobody_dir() as shared:
        out = shared / "abort"
        proc = subprocess.run(
            [*cmd, "-c", code, str(out)], capture_output=True, text=True, env=env, timeout=60
        )
        owner = out.joinpath("capture.pcapng").stat().st_uid if out.exists() else None
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["uid"] == 65534
    assert report["mode"] == "private"
    assert "CAP_NET_RAW" in report["host"]  # the host path really was closed to this user
    assert report["packets"] == 6
    assert owner == 65534


# ---------------------------------------------------------------------------------------------
# Offline and results
# ---------------------------------------------------------------------------------------------


def test_run_scenario_offline_copies_the_reference(tmp_path, monkeypatch):
    monkeypatch.setenv(capture.MODE_ENV, "offline")
    result = capture.run_scenario("tls13-chat", tmp_path / "t")
    assert result.mode.name == "offline"
    assert "LABCHAT_CAPTURE_MODE=offline" in result.mode.reason
    assert (
        result.pcap.read_bytes()
        == (capture.reference_dir() / "tls13-chat/capture.pcapng").read_bytes()
    )
    assert result.keylog is not None and result.keylog.is_file()
    assert "tls13-chat" in result.summary()


def test_load_reference_unknown_name_is_a_clear_error():
    with pytest.raises(CaptureError, match="no reference capture"):
        capture.load_reference("no-such-scenario")


def test_run_scenario_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(KeyError, match="tcp-chat"):
        capture.run_scenario("no-such-scenario", tmp_path)


def test_CaptureMode_explain_lists_the_other_modes():
    mode = CaptureMode("host", "because", {"private": "no unshare", "offline": "not needed"})
    assert mode.explain().splitlines() == [
        "capture mode: host (because)",
        "  not private: no unshare",
        "  not offline: not needed",
    ]


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_errors_are_one_line(capsys):
    from labchat.cli import main

    assert main(["capture", "no-such-scenario", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown scenario" in err
    assert main(["capture", "live", "--out", "x"]) == 2
    assert "--port" in capsys.readouterr().err


def test_cli_list_and_offline_capture(tmp_path, monkeypatch, capsys):
    from labchat.cli import main

    monkeypatch.setenv(capture.MODE_ENV, "offline")
    assert main(["capture", "list"]) == 0
    out = capsys.readouterr().out
    assert "half-close" in out and "capture mode: offline" in out
    assert main(["capture", "refused", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "capture mode: offline" in out and "refused: 2 packets" in out


@pytest.mark.capture
@needs_host
def test_cli_live_capture_with_count(tmp_path, capsys):
    from labchat.cli import main

    lab = _Listener()
    t = threading.Timer(0.3, _connect_once, args=(lab.port,))
    t.start()
    try:
        rc = main(
            [
                "capture",
                "live",
                "--port",
                str(lab.port),
                "--out",
                str(tmp_path),
                "--duration",
                "3",
                "--count",
                "3",
            ]
        )
    finally:
        t.join()
        lab.close()
    assert rc == 0
    out = capsys.readouterr().out
    assert "listening on lo" in out and "capture mode: host" in out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["capture"]["packets"] == 3
    assert manifest["capture"]["stopped_by"] == "count"
