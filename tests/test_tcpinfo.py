"""labchat.capture.tcpinfo: struct tcp_info parsed by hand, checked against the kernel and ss."""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from labchat.capture import tcpinfo

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO is Linux's")


def _packed(values: dict[str, int], size: int = 240) -> bytes:
    raw = bytearray(size)
    for name, value in values.items():
        f = tcpinfo.field(name)
        struct.pack_into("=" + f.ctype, raw, f.offset, value)
    return bytes(raw)


def test_parse_reads_each_field_at_its_offset() -> None:
    values = {f.name: (i + 1) * 3 for i, f in enumerate(tcpinfo.FIELDS) if f.ctype != "B"}
    values.update(state=1, ca_state=3, probes=2, backoff=4, snd_mss=1448)
    values.update(unacked=40, sacked=5, lost=3, retrans=2, snd_ssthresh=29)
    got = tcpinfo.parse(_packed(values))
    for name, value in values.items():
        assert got[name] == value, name
    assert got["in_flight"] == 40 - 5 - 3 + 2  # tcp_packets_in_flight()
    assert got["in_flight_bytes"] == got["in_flight"] * 1448


def test_parse_knows_which_fields_an_older_kernel_lacks() -> None:
    # A 5.4 kernel's struct ends after tcpi_snd_wnd (232 bytes): no rcv_wnd (6.2).
    got = tcpinfo.parse(_packed({"snd_wnd": 65536, "snd_cwnd": 10}, size=232))
    assert got["snd_wnd"] == 65536 and got["snd_cwnd"] == 10 and got["rcv_wnd"] is None
    # A 4.1 kernel's ends after bytes_received (136): nothing from 4.6 on.
    got = tcpinfo.parse(_packed({"bytes_acked": 7}, size=136))
    assert got["bytes_acked"] == 7 and got["min_rtt"] is None and got["snd_wnd"] is None


def test_infinite_ssthresh_means_none_yet() -> None:
    got = tcpinfo.parse(_packed({"snd_ssthresh": tcpinfo.INFINITE_SSTHRESH, "snd_cwnd": 10}))
    assert got["snd_ssthresh"] is None
    assert tcpinfo.parse(_packed({"snd_ssthresh": 29}))["snd_ssthresh"] == 29


def test_fields_do_not_overlap_and_say_when_they_came() -> None:
    spans = sorted((f.offset, f.offset + struct.calcsize(f.ctype), f.name) for f in tcpinfo.FIELDS)
    for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
        assert end <= start, f"{a} overlaps {b}"
    assert all(re.fullmatch(r"\d+\.\d+(\.\d+)?", f.since) for f in tcpinfo.FIELDS)
    assert tcpinfo.field("rcv_wnd").since == "6.2" and tcpinfo.field("snd_wnd").since == "5.4"


@pytest.fixture()
def idle_pair():
    """A connected loopback pair that has moved a little data and gone quiet."""
    lst = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(lst.getsockname(), timeout=5)
    srv, _ = lst.accept()
    cli.sendall(b"x" * 100_000)
    got = 0
    while got < 100_000:
        got += len(srv.recv(65536))
    yield cli, srv
    for s in (cli, srv, lst):
        s.close()


@linux_only
def test_read_on_a_real_socket(idle_pair) -> None:
    cli, _ = idle_pair
    info = tcpinfo.read(cli)
    assert tcpinfo.STATES[info["state"]] == "ESTABLISHED"
    assert tcpinfo.CA_STATES[info["ca_state"]] == "Open"
    assert info["snd_mss"] > 1000 and info["snd_cwnd"] >= 10
    assert info["bytes_acked"] == 100_001  # the SYN counts one (RFC 4898)
    assert info["rto"] >= 200_000  # Linux's floor: 200 ms, in microseconds
    assert info["unacked"] == 0 and info["in_flight"] == 0


@linux_only
@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_read_agrees_with_ss(idle_pair) -> None:
    cli, _ = idle_pair
    port = cli.getsockname()[1]
    info = tcpinfo.read(cli)
    out = subprocess.run(
        ["ss", "-tinH", "src", f"127.0.0.1:{port}"], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(re.findall(r"\b(rto|cwnd|mss|rcv_space|bytes_acked):(\d+(?:\.\d+)?)", out))
    assert fields, out
    # ss prints rto in ms; TCP_INFO has microseconds.
    assert float(fields["rto"]) == pytest.approx(info["rto"] / 1000, abs=0.001)
    assert int(fields["cwnd"]) == info["snd_cwnd"]
    assert int(fields["mss"]) == info["snd_mss"]
    assert int(fields["bytes_acked"]) == info["bytes_acked"]
    srtt, rttvar = re.search(r"\brtt:([\d.]+)/([\d.]+)", out).groups()
    assert float(srtt) == pytest.approx(info["rtt"] / 1000, abs=0.001)
    assert float(rttvar) == pytest.approx(info["rttvar"] / 1000, abs=0.001)


@linux_only
def test_sampler_keeps_a_row_per_change_and_round_trips_as_csv(tmp_path: Path) -> None:
    lst = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(lst.getsockname(), timeout=5)
    srv, _ = lst.accept()

    def drain() -> None:
        while srv.recv(1 << 16):
            pass

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        with tcpinfo.Sampler(cli, interval=0.0002) as sampler:
            for _ in range(50):  # paced: loopback would be done before the first poll
                cli.sendall(b"y" * 20_000)
                time.sleep(0.002)
        cli.shutdown(socket.SHUT_WR)
        reader.join(5)
    finally:
        for s in (cli, srv, lst):
            s.close()
    rows = sampler.rows
    assert len(rows) >= 3
    times = [r["time"] for r in rows]
    assert times == sorted(times)
    acked = [r["bytes_acked"] for r in rows]
    assert acked == sorted(acked) and acked[-1] > acked[0]
    path = tmp_path / "tcp_info.csv"
    tcpinfo.write_csv(path, rows)
    back = tcpinfo.read_csv(path)
    assert [r["bytes_acked"] for r in back] == acked
    assert back[0]["time"] == pytest.approx(rows[0]["time"], abs=1e-6)
    assert set(back[0]) == set(tcpinfo.COLUMNS)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a tcp_info.csv"):
        tcpinfo.read_csv(bad)
