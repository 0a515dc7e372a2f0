"""The lab network: two hosts on a veth link, shaped and made lossy, captured on the server.

The facts each scenario teaches are checked twice: on the shipped reference captures (always)
and on a fresh capture made here in a private user + network namespace (when this machine
allows one; also as the unprivileged uid 65534 when the tests run as root). Wireshark's TCP
analysis flags are cross-checked against tshark on every capture.
"""

from __future__ import annotations

import copy
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    nobody_dir,
    nobody_python,
    private_unavailable,
    run_in_namespace,
    skip_without_private,
)

from labchat import analysis, capture, plots
from labchat.capture import bulk, flow, lossy, netns, network, router, scenarios, shaping, tcpinfo
from labchat.capture.shaping import C2S, S2C, Drop, Shaping
from labchat.cli.capture import network_main

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.tshark_compare import ANALYSIS_FLAGS, compare  # noqa: E402

CAPTURES = ROOT / "captures"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NAMES = network.names()

# The tshark fields compared frame by frame (tcp.analysis.<name>): every flag labchat sets.
TSHARK_FLAGS = ANALYSIS_FLAGS
#: The captures of issue 14 (TCP in bulk): compared with tshark field by field.
TCP_IN_BULK = ("bulk-upload", "bulk-upload-reno", "zero-window", "nagle", "keepalive",
               "lost-segment")  # fmt: skip


needs_private = skip_without_private()


# --------------------------------------------------------------------------------------------
# What each scenario must show
# --------------------------------------------------------------------------------------------


def _conn(directory: Path) -> analysis.Connection:
    cap = analysis.load(directory / "capture.pcapng")
    assert len(cap.connections()) == 1, cap.connection_table()
    return cap.connection(0)


def check_scenario(name: str, directory: Path) -> dict:
    """Assert the lesson's facts on one capture directory; return the measured figures."""
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["scenario"] == name
    spec = network.get(name)
    iface = netns.SERVER_IFACE if spec.capture_at == "server" else netns.CLIENT_IFACE
    assert manifest["capture"]["iface"] == iface
    server_ip = router.ROUTED_SERVER_IP if spec.routed else network.SERVER_IP
    if name == "nagle":
        figures = check_nagle(directory, manifest)
        conn = _conns(directory)[0]
    else:
        conn = _conn(directory)
    assert conn.client[0] == network.CLIENT_IP and conn.server[0] == server_ip
    syn = conn.handshake().syn
    figures = figures if name == "nagle" else {}
    if not name.startswith("craft"):
        # Ethernet, not loopback: MSS = 1500 - 40, and no segment is larger.
        assert syn.options["mss"] == 1460
        assert max(s.payload_len for s in conn.segments) <= 1448
    if name == "syn-retry":
        syns = [s for s in conn.segments if s.flags == "S"]
        assert len(syns) == 2 and syns[1].retransmission and not syns[0].retransmission
        rto = syns[1].time - syns[0].time
        assert 0.9 < rto < 1.6, rto  # RFC 6298 2.1: initial RTO 1 s
        assert conn.handshake().ok
        assert [line for _, line in conn.app_lines()][-1] == "PONG syn-retry"
        figures["syn_rto"] = rto
    elif name == "lost-segment":
        (fast,) = conn.fast_retransmissions()
        lost = plots.lost_originals(conn)
        assert [s.seq for s in lost] == [fast.seq] and lost[0].payload_len == 1448
        assert fast.rel_seq == (lossy.LOST_SEGMENT - 1) * 1448 + 1
        # The server repeats its ACK for every segment after the hole, each time with a SACK
        # block; the client resends after the third repeat (Linux: three SACKed segments).
        # Wireshark counts a repeat as a duplicate only if the window is unchanged too: the
        # fixed receive buffer makes that so almost always; when the window still moved once,
        # Wireshark sees a window update and two duplicates (enough to call it fast).
        repeats = [
            s for s in conn.segments
            if lost[0].index < s.index < fast.index and s.direction == S2C
            and s.payload_len == 0 and s.ack == fast.seq
        ]  # fmt: skip
        dups = [s for s in repeats if s.duplicate_ack]
        assert len(repeats) >= 3 and len(dups) >= 2
        assert [d.dup_ack_num for d in dups] == list(range(1, len(dups) + 1))
        assert all(d.sack and d.sack[0][0] == fast.rel_seq + 1448 for d in repeats)
        assert fast.time - repeats[-1].time < 0.02
        # After the retransmission, one ACK covers everything the SACK blocks had reported.
        after = next(s for s in conn.segments if s.index > fast.index and s.direction == S2C)
        assert after.rel_ack == repeats[-1].sack[0][1]
        assert not [s for s in conn.retransmissions() if s is not fast]
        figures["dup_acks_before_fast_retransmit"] = len(dups)
        figures["repeated_acks_before_fast_retransmit"] = len(repeats)
    elif name == "slow-link":
        data = [s for s in conn.segments if s.direction == S2C and s.payload_len]
        assert sum(s.payload_len for s in data) == lossy.SLOW_BYTES
        assert sum(s.payload_len == 1448 for s in data) >= lossy.SLOW_BYTES // 1448
        assert not conn.retransmissions()
        samples = [x.rtt for x in conn.rtt_samples(S2C)]
        # The queue in front of the 4 Mbit/s bottleneck fills: the RTT grows tenfold and more.
        assert len(samples) > 20 and max(samples) > 10 * min(samples) and max(samples) > 0.03
        flight = max(b for _, b in conn.bytes_in_flight(S2C))
        assert flight > 10 * 1448
        figures["max_rtt_ms"] = max(samples) * 1000
        figures["max_in_flight"] = flight
    elif name == "lost-fin":
        fins = [s for s in conn.segments if s.fin and s.direction == C2S]
        assert len(fins) == 2 and fins[1].retransmission
        gap = fins[1].time - fins[0].time
        assert 0.19 < gap < 1.5, gap  # Linux's minimum RTO is 200 ms
        assert conn.teardown().complete
        figures["fin_rto"] = gap
    elif name == "craft-handshake":
        assert syn.seq == network.CRAFT_ISN and conn.client[1] == network.CRAFT_SPORT
        assert conn.handshake().ok and not conn.resets()
        lines = [line for d, line in conn.app_lines() if d == S2C]
        assert lines[0].startswith("HELLO ") and lines[1] == "PONG by hand"
        assert manifest["clients"][0]["kernel_rsts"] == 0
        assert "rst" in manifest["network"]["firewall"]["client"]
    elif name == "craft-handshake-rst":
        hs = conn.handshake()
        rst = conn.resets()[0]
        assert rst.direction == C2S and rst.index == hs.syn_ack.index + 1
        assert rst.seq == network.CRAFT_ISN + 1
        assert all(s.rst for s in conn.segments if s.direction == S2C and not s.syn)
        assert manifest["clients"][0]["kernel_rsts"] == 1
    elif name.startswith("bulk-upload"):
        figures = check_bulk(name, directory, manifest, conn)
    elif name == "zero-window":
        figures = check_zero_window(conn, manifest)
    elif name == "keepalive":
        figures = check_keepalive(conn)
    return figures


def _conns(directory: Path) -> list[analysis.Connection]:
    return analysis.load(directory / "capture.pcapng").connections()


# The link's payload rate: 20 Mbit/s of 1514-byte frames that carry 1448 bytes each.
LINK_GOODPUT = 20e6 * 1448 / 1514


def check_bulk(name: str, directory: Path, manifest: dict, conn: analysis.Connection) -> dict:
    """3 MB up through the router; the queue overflows; the kernel's samples say how it reacted."""
    data = [s for s in conn.segments if s.direction == C2S and s.payload_len]
    assert max(s.rel_seq + s.payload_len for s in data) == bulk.BULK_BYTES + 1
    acks = [s for s in conn.segments if s.direction == S2C and s.has_ack]
    assert max(s.rel_ack for s in acks) >= bulk.BULK_BYTES + 1  # all of it acknowledged
    done = next(s for s in acks if s.rel_ack >= bulk.BULK_BYTES + 1)
    goodput = bulk.BULK_BYTES * 8 / (done.time - data[0].time)
    # Never faster than the link; slow start and the losses cost a little.
    assert 0.6 * LINK_GOODPUT < goodput < 1.02 * LINK_GOODPUT, goodput
    assert conn.retransmissions(), "the bottleneck's queue overflows at least once"
    stats = manifest["network"]["router"]["queue_stats"][router.ROUTER_SERVER_IFACE]
    assert stats["drops"] >= 1 and stats["drops"] <= len(conn.retransmissions())
    # The queue is the RTT (bufferbloat): from a fraction of a millisecond to tens of them.
    rtts = [x.rtt for x in conn.rtt_samples(C2S)]
    assert min(rtts) < 0.002 and max(rtts) > 0.015, (min(rtts), max(rtts))
    # The kernel's own view, sampled all along.
    client = manifest["clients"][0]
    cc = {"bulk-upload": "cubic", "bulk-upload-reno": "reno"}[name]
    assert client["congestion_control"] == cc
    assert manifest["files"] == ["tcp_info.csv"]
    rows = tcpinfo.read_csv(directory / "tcp_info.csv")
    assert len(rows) > 100 and client["tcp_info"]["rows"] == len(rows)
    # Same clock as the capture: the samples cover the transfer, from the first packet on.
    start = manifest["capture"]["first_packet_time"]
    assert -0.5 < rows[0]["time"] - start < data[0].time
    assert rows[-1]["time"] - start > done.time - 0.05
    assert max(r["snd_cwnd"] for r in rows) > 25
    # Linux's RTO: SRTT + max(4 RTTVAR, 200 ms), rounded up to a jiffy (tcp_set_rto()).
    # (FIN_WAIT1 too: the client shut down writing once all 3 MB were in its send buffer.)
    steady = [r for r in rows if tcpinfo.STATES[r["state"]] in ("ESTABLISHED", "FIN_WAIT1")
              and r["rtt"] and not r["backoff"]]  # fmt: skip
    extra = [r["rto"] - (r["rtt"] + max(4 * r["rttvar"], 200_000)) for r in steady]
    assert len(steady) > 100 and all(0 <= e <= 10_000 for e in extra), (min(extra), max(extra))
    # Slow start: cwnd grows by one segment per segment ACKed; congestion avoidance: by
    # about one per window (RFC 5681 section 3.1).
    # (CUBIC's slow start ends after a few ms here, and a busy machine may not sample it;
    # Reno's lasts until the first loss, tens of ms.)
    steps = tcpinfo.phases(rows)
    slow = [p for p in steps if p["phase"] == "slow start" and p["acked"] > 5]
    avoid = [p for p in steps if p["phase"] == "congestion avoidance" and p["acked"] > 100]
    assert all(0.8 < p["per_acked"] <= 1.05 for p in slow), slow
    assert slow or cc == "cubic", steps
    assert avoid and all(0 < p["per_acked"] < 0.1 for p in avoid), avoid
    assert manifest["network"]["rate_bps"] == 20e6
    assert manifest["network"]["queue_bytes"] == bulk.BULK_QUEUE
    # The answer to loss: ssthresh = 0.7 cwnd (CUBIC) or cwnd / 2 (Reno).
    losses = [e for e in tcpinfo.ssthresh_changes(rows) if e["kind"] == "loss" and e["ratio"]]
    assert losses
    beta = statistics.median(e["ratio"] for e in losses)
    assert beta == pytest.approx(0.7 if cc == "cubic" else 0.5, abs=0.05), losses
    return {"goodput_mbit": goodput / 1e6, "beta": beta, "losses": len(losses),
            "max_rtt_ms": max(rtts) * 1000}  # fmt: skip


def check_zero_window(conn: analysis.Connection, manifest: dict) -> dict:
    """The server stops reading: zero window, probes backing off, then a window update."""
    zero = [s for s in conn.segments if s.direction == S2C and "zero_window" in s.analysis]
    assert zero and all(s.scaled_window == 0 for s in zero)
    full = [s for s in conn.segments if s.direction == C2S and "window_full" in s.analysis]
    assert full and full[0].time < zero[0].time, "the client filled the window before it closed"
    # Linux probes a closed window with an empty segment one byte below the next one: to
    # tshark a keep-alive (a BSD or Windows peer sends one byte: a zero-window probe).
    probes = [s for s in conn.segments if s.direction == C2S and "keep_alive" in s.analysis]
    assert len(probes) >= 2 and all(s.payload_len == 0 for s in probes)
    assert all(p.time > zero[0].time for p in probes)
    gaps = [b.time - a.time for a, b in zip([zero[0], *probes], probes, strict=False)]
    assert gaps[0] > 0.19, gaps  # the persist timer starts at the RTO, at least 200 ms
    assert all(b > 1.5 * a for a, b in zip(gaps, gaps[1:], strict=False)), gaps  # backs off
    update = next(s for s in conn.segments if s.index > probes[-1].index
                  and s.direction == S2C and s.scaled_window)  # fmt: skip
    assert "window_update" in update.analysis, "the server reads again: the window opens"
    assert not conn.retransmissions(), "a closed window is not a loss"
    assert manifest["server"]["stops_reading_for_s"] == flow.ZW_STALL
    return {"probe_gaps": gaps}


def _requests(conn: analysis.Connection) -> list[tuple]:
    """(head, the server's ACK of the head, body) for each two-write request."""
    sent = [s for s in conn.segments if s.direction == C2S and s.payload_len]
    out = []
    for head, body in zip(sent[0::2], sent[1::2], strict=True):
        ack = next(s for s in conn.segments if s.direction == S2C and s.index > head.index
                   and (s.ack - head.seq - head.payload_len) % 2**32 < 2**31)  # fmt: skip
        out.append((head, ack, body))
    return out


def check_nagle(directory: Path, manifest: dict) -> dict:
    """Nagle holds the second small write until the first is ACKed; TCP_NODELAY does not."""
    nagle, nodelay = _conns(directory)
    for conn in (nagle, nodelay):  # each write is a segment of its own
        assert sum(1 for s in conn.segments if s.direction == C2S and s.payload_len) == 16
    # With Nagle, once the server delays its ACKs (from the third request on), each body
    # waits for the head's ACK (a delayed-ACK timeout) and leaves as soon as it arrives.
    for head, ack, body in _requests(nagle)[2:]:
        assert ack.time - head.time > 0.02 and 0 <= body.time - ack.time < 0.005
    assert all(body.time - head.time < 0.005 for head, _, body in _requests(nodelay))
    times = {c["role"]: c["round_trip_ms"] for c in manifest["clients"]}
    slow = statistics.median(times["nagle"][2:])
    fast = statistics.median(times["nodelay"])
    assert slow > 20 and fast < 5, times  # a delayed ACK (40 ms) against a round trip
    return {"nagle_ms": slow, "nodelay_ms": fast}


def check_keepalive(conn: analysis.Connection) -> dict:
    """One-second keepalive timers: a probe every second, each answered."""
    probes = [s for s in conn.segments if "keep_alive" in s.analysis]
    answers = [s for s in conn.segments if "keep_alive_ack" in s.analysis]
    assert len(probes) == flow.KEEPALIVE_PROBES and len(answers) == len(probes)
    assert all(p.direction == C2S and p.payload_len == 0 for p in probes)
    last_data = max(s.time for s in conn.segments if s.payload_len)
    gaps = [b.time - a.time for a, b in zip([_ack_of(conn, last_data), *probes], probes,
                                            strict=False)]  # fmt: skip
    assert all(0.9 < g < 2.0 for g in gaps), gaps  # TCP_KEEPIDLE = 1 s
    return {"probe_gaps": gaps}


def _ack_of(conn: analysis.Connection, t: float):
    """The last segment at or before ``t`` plus the one right after (the idle clock's start)."""
    return max((s for s in conn.segments if s.time <= t + 0.01), key=lambda s: s.time)


@pytest.mark.parametrize("name", NAMES)
def test_reference_capture_shows_the_lesson(name: str) -> None:
    figures = check_scenario(name, CAPTURES / name)
    if name == "lost-segment":  # the shipped capture is the textbook case
        assert figures["dup_acks_before_fast_retransmit"] == 3


# --------------------------------------------------------------------------------------------
# Agreement with tshark
# --------------------------------------------------------------------------------------------


def _tshark_flags(path: Path) -> dict[int, set[str]]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (CI installs it: apt-get install tshark)")
    fields = [arg for f in TSHARK_FLAGS for arg in ("-e", f"tcp.analysis.{f}")]
    cmd = ["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "separator=|"]
    out = subprocess.run(
        [*cmd, "-e", "frame.number", *fields], capture_output=True, text=True, check=True
    ).stdout
    flags = {}
    for line in out.splitlines():
        frame, *values = line.split("|")
        flags[int(frame)] = {f for f, v in zip(TSHARK_FLAGS, values, strict=True) if v}
    return flags


def _our_flags(path: Path) -> dict[int, set[str]]:
    cap = analysis.load(path)
    return {
        s.frame: set(s.analysis) & set(TSHARK_FLAGS) for c in cap.connections() for s in c.segments
    }


def _mutations(tmp: Path) -> list[Path]:
    """Captures with a late duplicate, an immediate duplicate and a segment missing."""
    from scapy.layers.inet import TCP
    from scapy.utils import rdpcap, wrpcap

    pk = rdpcap(str(FIXTURES / "tcp-chat.pcapng"))
    data = [i for i, p in enumerate(pk) if TCP in p and len(p[TCP].payload) > 0]
    late = list(pk)
    dup = copy.deepcopy(pk[data[0]])
    dup.time = pk[-4].time + 0.0001
    late.insert(len(pk) - 3, dup)
    now = list(pk)
    dup = copy.deepcopy(pk[data[1]])
    dup.time = pk[data[1]].time + 0.00001
    now.insert(data[1] + 1, dup)
    missing = [p for i, p in enumerate(pk) if i != data[1]]
    out = []
    for name, pkts in (("late", late), ("now", now), ("missing", missing)):
        wrpcap(str(tmp / f"{name}.pcap"), pkts)
        out.append(tmp / f"{name}.pcap")
    return out


def test_analysis_flags_agree_with_tshark(tmp_path: Path) -> None:
    # The reference captures by scenario name, not a glob of captures/: `make demo` and hand-made
    # captures (git-ignored) live there too, and no test may depend on them (issue 12).
    shipped = [CAPTURES / n / "capture.pcapng" for n in scenarios.names() + network.names()]
    assert all(p.is_file() for p in shipped), shipped
    paths = shipped + sorted(FIXTURES.glob("*.pcap*"))
    paths += _mutations(tmp_path)
    seen: set[str] = set()
    for path in paths:
        theirs, ours = _tshark_flags(path), _our_flags(path)
        assert ours == theirs, path
        for flags in ours.values():
            seen |= flags
    # The comparison covered every kind that matters here, not just empty sets.
    assert {"retransmission", "fast_retransmission", "duplicate_ack", "spurious_retransmission",
            "lost_segment", "window_update", "zero_window", "window_full", "keep_alive",
            "keep_alive_ack"} <= seen  # fmt: skip


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (CI has it)")
@pytest.mark.parametrize("name", TCP_IN_BULK)
def test_tcp_in_bulk_captures_agree_with_tshark_field_by_field(name: str) -> None:
    """Stream, flags, seq, ack, len, window, every tcp.analysis flag, dup-ACK numbers, SACK."""
    result = compare(CAPTURES / name / "capture.pcapng")
    assert result.frames > 10
    assert result.mismatches == [], result.mismatches[:5]


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def test_estimate_rtt_follows_rfc6298() -> None:
    rows = analysis.estimate_rtt([0.1, 0.2], min_rto=0.0)
    assert rows[0] == pytest.approx({"sample": 0.1, "srtt": 0.1, "rttvar": 0.05, "rto": 0.3})
    # RTTVAR first, with the old SRTT: 0.75*0.05 + 0.25*|0.1-0.2|; then SRTT: 7/8*0.1 + 1/8*0.2
    assert rows[1] == pytest.approx(
        {"sample": 0.2, "srtt": 0.1125, "rttvar": 0.0625, "rto": 0.1125 + 4 * 0.0625}
    )
    assert analysis.estimate_rtt([0.01])[0]["rto"] == 1.0  # RFC 6298 2.4: at least 1 s
    assert analysis.estimate_rtt([]) == []


def test_rtt_samples_skip_retransmitted_segments() -> None:
    conn = _conn(CAPTURES / "syn-retry")
    sent = {s.segment for s in conn.rtt_samples(C2S)}
    syns = [s.index for s in conn.segments if s.flags == "S"]
    assert sent and not sent & set(syns)  # Karn: the SYN was sent twice, no sample


def test_drop_rules_count_the_chosen_segments() -> None:
    script = shaping.nft_script(
        [("ingress", Drop("syn", 1, C2S)), ("egress", Drop("rst", 0, C2S, at="egress")),
         ("ingress", Drop("data", 3, S2C))], 5050, 0,
    )  # fmt: skip
    assert "chain pick0 { numgen inc mod 1000000000 0 counter drop" in script
    assert "chain pick1 { counter drop" in script  # nth 0: every one
    assert "chain pick2 { numgen inc mod 1000000000 2 counter drop" in script
    assert "tcp dport 5050 tcp flags & (syn | ack) == syn jump pick0" in script
    assert "tcp dport 5050 tcp flags & rst == rst jump pick1" in script
    assert "tcp sport 5050 tcp doff 8 ip length > 52 jump pick2" in script
    assert "hook prerouting priority -300" in script and "hook output priority 0" in script
    lossy = shaping.nft_script([("ingress", None)], 5050, 2.5)
    assert "numgen random mod 100 < 2.5 counter drop" in lossy


def test_drop_and_shaping_validate_and_describe() -> None:
    with pytest.raises(ValueError, match="unknown segment kind"):
        Drop("urg")
    with pytest.raises(ValueError, match="direction"):
        Drop("syn", direction="up")
    with pytest.raises(ValueError, match="counts from 1"):
        Drop("syn", -1)
    assert Drop("syn", 1, S2C).describe() == "first SYN-ACK s->c, dropped on the link"
    assert Drop("data", 3).describe() == "3rd data segment c->s, dropped on the link"
    assert Drop("rst", 0, at="egress").describe().startswith("every RST c->s, dropped before")
    assert Shaping().describe() == ["a perfect 1500-byte Ethernet link"]
    assert "tc netem" in Shaping(delay_ms=20).describe()[0]


def test_offline_mode_copies_the_reference(tmp_path: Path) -> None:
    result = network.run_scenario("lost-segment", tmp_path / "out", mode="offline")
    assert result.mode.name == "offline"
    assert result.pcap.read_bytes() == (CAPTURES / "lost-segment/capture.pcapng").read_bytes()
    with pytest.raises(capture.CaptureError, match="host mode"):
        network.run_scenario("lost-segment", tmp_path / "h", mode="host")
    with pytest.raises(KeyError, match="unknown network scenario"):
        network.run_scenario("no-such", tmp_path / "x", mode="offline")


def test_plots_mark_loss_and_recovery() -> None:
    conn = _conn(CAPTURES / "lost-segment")
    fast = conn.fast_retransmissions()[0]
    (lost,) = plots.lost_originals(conn)
    ax = plots.ladder(conn).axes[0]
    gids = {line.get_gid() for line in ax.lines}
    assert {f"lost-{lost.index}", f"retransmission-{fast.index}"} <= gids
    assert sum(1 for g in gids if g and g.startswith("dupack-")) == len(conn.duplicate_acks())
    assert any("fast retransmission" in t.get_text() for t in ax.texts)
    assert any("dup ACK #3" in t.get_text() and "SACK" in t.get_text() for t in ax.texts)
    ax = plots.time_sequence(conn).axes[0]
    gids = {a.get_gid() for a in [*ax.lines, *ax.collections]}
    assert {"retransmissions-client", "lost-client", "duplicate-acks-client",
            "sack-client"} <= gids  # fmt: skip
    slow = _conn(CAPTURES / "slow-link")
    ax = plots.in_flight(slow).axes[0]
    assert {line.get_gid() for line in ax.lines} >= {"bytes-in-flight", "receive-window"}
    ax = plots.rtt(slow).axes[0]
    assert {line.get_gid() for line in ax.lines} >= {"sample-rtt", "estimated-rtt", "rtt-bound"}


# --------------------------------------------------------------------------------------------
# Live, in a private namespace
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if private_unavailable() is not None:
        pytest.skip(f"no private user+network namespace here: {private_unavailable()}")
    out = tmp_path_factory.mktemp("live")
    network.run_scenarios(NAMES, out, mode="private")
    return out


@pytest.mark.capture
@pytest.mark.parametrize("name", NAMES)
def test_live_capture_shows_the_lesson(live: Path, name: str) -> None:
    check_scenario(name, live / name)
    assert _our_flags(live / name / "capture.pcapng") == _tshark_flags(
        live / name / "capture.pcapng"
    )


@pytest.mark.capture
@needs_private
def test_features_say_what_this_kernel_has() -> None:
    f = network.features()
    assert f["private"] and f["veth"] and f["tbf"] and f["nftables"], f
    assert set(f["notes"]) <= {"netem", "ifb", "iptables"}, f["notes"]
    if not f["netem"]:
        assert "sch_netem" in f["notes"]["netem"]


@pytest.mark.capture
@needs_private
def test_delay_without_netem_is_a_clear_error() -> None:
    if network.features()["netem"]:
        pytest.skip("this kernel has sch_netem")
    code = (
        "from labchat.capture.netns import LabNetwork\n"
        "from labchat.capture.shaping import Shaping\n"
        "try:\n    LabNetwork(Shaping(delay_ms=20)).start()\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    proc = run_in_namespace(code)
    assert proc.stdout.startswith("NetworkError ") and "sch_netem" in proc.stdout, proc


@pytest.mark.capture
@needs_private
def test_works_for_an_unprivileged_user() -> None:
    argv, env = nobody_python()
    code = (
        "import os; from labchat.capture import network\n"
        "r = network.run_scenario('syn-retry', os.environ['OUT'] + '/syn-retry', "
        "mode='private')\n"
        "print(os.getuid(), r.mode.name)\n"
    )
    with nobody_dir() as out:
        proc = subprocess.run(
            [*argv, "-c", code],
            capture_output=True, text=True, timeout=60,
            env={**env, "OUT": str(out), "HOME": str(out)},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["65534", "private"]
        check_scenario("syn-retry", out / "syn-retry")


def test_cli_lists_scenarios_and_refuses_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert network_main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES) and "[reference]" in out
    assert network_main(["no-such", "--out", "x"]) == 2
    assert "unknown scenario 'no-such'" in capsys.readouterr().err
    assert network_main(["syn-retry"]) == 2
    assert "--out DIR is required" in capsys.readouterr().err


def test_cli_offline_copies_references(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert network_main(["--all", "--out", str(tmp_path), "--mode", "offline"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("capture mode: offline")
    assert all((tmp_path / n / "capture.pcapng").is_file() for n in NAMES)


@pytest.mark.capture
@needs_private
def test_random_loss_rate_and_drop_rules_load_in_the_kernel() -> None:
    code = (
        "import json, subprocess\n"
        "from labchat.capture.netns import LabNetwork, run_tool\n"
        "from labchat.capture.shaping import Shaping, Drop\n"
        "shaping = Shaping(rate='10mbit', loss_percent=5, drops=(Drop('ack', 2, 's->c'),))\n"
        "with LabNetwork(shaping, port=6000) as net:\n"
        "    with net.client():\n"
        "        rules = run_tool(['nft', 'list', 'table', 'inet', 'labchat'])\n"
        "        qdiscs = run_tool(['tc', 'qdisc', 'show'])\n"
        "    print(json.dumps({'rules': rules, 'qdiscs': qdiscs, 'dropped': net.dropped(),\n"
        "                      'link': net.describe()}))\n"
    )
    proc = run_in_namespace(code)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert "numgen random mod 100 < 5" in got["rules"]
    assert "tcp sport 6000" in got["rules"] and "numgen inc mod 1000000000 1" in got["rules"]
    assert "tbf" in got["qdiscs"] and "rate 10Mbit" in got["qdiscs"]
    assert {d["rule"] for d in got["dropped"]} >= {
        "random loss",
        "2nd pure ACK s->c, dropped on the link",
    }
    assert got["link"]["mss"] == 1460 and got["link"]["bottleneck"] == "client ingress (ifb0)"


def test_labchat_capture_cli_knows_the_lab_network_scenarios(tmp_path, capsys, monkeypatch):
    from labchat.cli import main

    assert main(["capture", "list"]) == 0
    listed = capsys.readouterr().out
    for name in network.names():
        assert name in listed
    monkeypatch.setenv("LABCHAT_CAPTURE_MODE", "offline")
    assert main(["capture", "lost-fin", "--out", str(tmp_path / "lf")]) == 0
    out = capsys.readouterr().out
    assert "capture mode: offline" in out and "lost-fin:" in out
    assert (tmp_path / "lf" / "capture.pcapng").stat().st_size > 0


def test_routed_shaping_puts_the_queue_in_the_router() -> None:
    link = Shaping(rate="20mbit", queue_bytes=60_000)
    assert link.describe() == ["rate limit 20mbit each way, a 60000-byte queue (tc tbf)"]
    assert router.shaping_commands("veth-rs", link, 1500) == [
        ["tc", "qdisc", "add", "dev", "veth-rs", "root",
         "tbf", "rate", "20mbit", "burst", "3028", "limit", "60000"],
    ]  # fmt: skip
    # With a delay (where sch_netem exists): netem first, the tbf queue as its child.
    delayed = Shaping(rate="20mbit", queue_bytes=60_000, delay_ms=10)
    netem, tbf = router.shaping_commands("veth-rs", delayed, 1500)
    assert netem[5:] == ["root", "handle", "1:", "netem", "delay", "10ms"]
    assert tbf[5:10] == ["parent", "1:1", "handle", "10:", "tbf"] and tbf[-1] == "60000"
    assert shaping.tbf_args(Shaping(rate="4mbit"), 1500)[-1] == str(shaping.DEEP_QUEUE)
    assert link.rate_bps == 20e6 and Shaping(rate="512kbit").rate_bps == 512e3
    assert Shaping().rate_bps is None
    with pytest.raises(ValueError, match="bit, kbit, mbit or gbit"):
        _ = Shaping(rate="2mbps").rate_bps
    with pytest.raises(ValueError, match="no rate limit"):
        shaping.tbf_args(Shaping(), 1500)


@pytest.mark.capture
@needs_private
def test_sysctls_apply_to_one_host_and_fail_clearly() -> None:
    code = (
        "import json\n"
        "from labchat.capture.netns import LabNetwork, NetworkError\n"
        "name = '/proc/sys/net/ipv4/tcp_early_retrans'\n"
        "with LabNetwork(sysctls={'client': {'net.ipv4.tcp_early_retrans': '0'}}) as net:\n"
        "    with net.client():\n        client = open(name).read().strip()\n"
        "    with net.server():\n        server = open(name).read().strip()\n"
        "    sysctls = net.describe()['sysctls']\n"
        "try:\n    LabNetwork(sysctls={'server': {'net.ipv4.no_such_thing': '1'}}).start()\n"
        "except NetworkError as e:\n    error = str(e)\n"
        "print(json.dumps([client, server, sysctls, error]))\n"
    )
    proc = run_in_namespace(code)
    assert proc.returncode == 0, proc.stderr
    client, server, sysctls, error = json.loads(proc.stdout)
    assert (client, server) == ("0", "3")  # 3: Linux's default, tail loss probes on
    assert sysctls == {"client": {"net.ipv4.tcp_early_retrans": "0"}}
    assert error.startswith("sysctl net.ipv4.no_such_thing=1 on the server: ")


def test_kernel_samples_share_the_captures_time_axis() -> None:
    up = capture.load_reference("bulk-upload")
    rows = up.tcp_info()
    conn = _conn(up.directory)
    data = [s for s in conn.segments if s.direction == C2S and s.payload_len]
    # The sampler starts before the first data segment and stops after the last ACK.
    assert rows[0]["t"] < data[0].time < data[-1].time < rows[-1]["t"]
    assert all(a["t"] <= b["t"] for a, b in zip(rows, rows[1:], strict=False))
    assert {"t", "snd_cwnd", "snd_ssthresh", "rtt", "rto", "in_flight"} <= set(rows[0])
    assert capture.load_reference("lost-fin").tcp_info() is None
