"""TCP in bulk (issue 14): RTO rules, loss recoveries, bytes in flight, half-close phases, and
the plots of the congestion window and of losses, on the shipped captures."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from labchat import analysis, capture, plots
from labchat.analysis import C2S, S2C

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"


def _conn(name: str) -> analysis.Connection:
    return analysis.load(CAPTURES / name / "capture.pcapng").connection(0)


def test_estimate_rtt_linux_puts_its_floor_on_the_variance_term() -> None:
    (first,) = analysis.estimate_rtt([0.02], rule="linux")
    assert first["rto"] == pytest.approx(0.02 + max(4 * 0.01, 0.2))  # 220 ms, not 200
    (rfc,) = analysis.estimate_rtt([0.02])
    assert rfc["rto"] == 1.0  # RFC 6298 2.4: at least 1 s
    # A large variance wins over the floor: SRTT + 4 RTTVAR = 0.3 + 0.6.
    (big,) = analysis.estimate_rtt([0.3], rule="linux")
    assert big["rto"] == pytest.approx(0.3 + 4 * 0.15)
    assert analysis.LINUX_RTO_MIN == 0.2
    with pytest.raises(ValueError, match="unknown RTO rule"):
        analysis.estimate_rtt([0.1], rule="bsd")


def test_linux_rule_from_the_capture_matches_the_kernels_rto() -> None:
    """The RTO the sender's kernel reported (TCP_INFO) against the one computed from the
    capture's RTT samples: Linux's rule agrees, the old max(200 ms, SRTT + 4 RTTVAR) does not."""
    result = capture.load_reference("bulk-upload")
    rows = result.tcp_info()
    conn = _conn("bulk-upload")
    samples = conn.rtt_samples(C2S)
    linux = analysis.estimate_rtt([s.rtt for s in samples], rule="linux")
    rfc = analysis.estimate_rtt([s.rtt for s in samples], rule="rfc6298", min_rto=0.0)
    new, old = [], []
    for smp, lin, r in zip(samples, linux, rfc, strict=True):
        before = [row for row in rows if row["t"] <= smp.acked]
        if not before or before[-1]["backoff"]:
            continue
        kernel = before[-1]["rto"] / 1e6
        new.append(abs(lin["rto"] - kernel))
        old.append(abs(max(0.2, r["srtt"] + 4 * r["rttvar"]) - kernel))
    assert len(new) > 100
    assert statistics.median(new) < 0.008 < 0.015 < statistics.median(old), (
        statistics.median(new),
        statistics.median(old),
    )


def test_rtt_table_takes_the_rule() -> None:
    conn = _conn("slow-link")
    linux = conn.rtt_table(S2C, rule="linux")
    rfc = conn.rtt_table(S2C)
    for a, b in zip(linux.rows, rfc.rows, strict=True):
        srtt, dev = a["EstimatedRTT ms"], a["DevRTT ms"]
        assert a["RTO ms"] == pytest.approx(srtt + max(4 * dev, 200), abs=0.01)
        assert b["RTO ms"] >= 1000


def test_recoveries_of_a_fast_retransmission_and_of_a_timeout() -> None:
    conn = _conn("lost-segment")
    (rec,) = conn.recoveries(C2S)
    (fast,) = conn.fast_retransmissions()
    assert rec.trigger == "duplicate ACKs" and rec.retransmissions == (fast,)
    assert [s.rel_seq for s in rec.lost] == [fast.rel_seq] and rec.lost[0].index < fast.index
    ack = next(s for s in conn.segments if s.index > fast.index and s.direction == S2C)
    assert rec.end == ack.time and ack.rel_ack >= rec.recovery_point
    assert rec.duration == pytest.approx(ack.time - fast.time)
    (syn,) = _conn("syn-retry").recoveries(C2S)
    assert syn.trigger == "timer" and syn.retransmissions[0].syn
    assert _conn("slow-link").recoveries() == []


def test_recoveries_in_a_bulk_transfer() -> None:
    conn = _conn("bulk-upload-reno")
    recs = conn.recoveries(C2S)
    assert len(recs) >= 2 and all(r.trigger == "duplicate ACKs" for r in recs)
    assert all(a.end <= b.start for a, b in zip(recs, recs[1:], strict=False))
    resent = [s for r in recs for s in r.retransmissions]
    assert sorted(s.index for s in resent) == [s.index for s in conn.retransmissions()]
    # Slow start's overshoot costs many segments at once; congestion avoidance one or two.
    assert len(recs[0].lost) > 10 and all(len(r.lost) <= 3 for r in recs[2:])


def test_bytes_in_flight_goes_on_while_acks_arrive() -> None:
    conn = _conn("slow-link")
    data = [s for s in conn.segments if s.direction == S2C and s.payload_len]
    points = conn.bytes_in_flight(S2C)
    assert points[-1][1] == 0 and points[-1][0] > data[-1].time  # drained by the last ACKs
    at_sends = conn.bytes_in_flight(S2C, acks=False)
    assert len(at_sends) == len(data) and at_sends[-1][0] == data[-1].time
    assert max(b for _, b in points) == max(b for _, b in at_sends)


def test_half_close_data_after_the_fin_is_data() -> None:
    conn = _conn("half-close")
    td = conn.teardown()
    after = [s for s in conn.segments if s.index > td.fins[0].index]
    phases = {s.index: conn.phase(s) for s in conn.segments}
    assert phases[td.fins[0].index] == phases[td.fins[1].index] == "teardown"
    lines = [s for s in after if s.payload_len]
    assert len(lines) == 3 and all(phases[s.index] == "data" for s in lines)
    acks = [s for s in after if s.direction == C2S and not s.payload_len and s not in td.acks]
    assert acks and all(phases[s.index] == "data" for s in acks)
    ax = plots.ladder(conn).axes[0]
    spans = [p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith("phase-")]
    assert spans == ["phase-handshake", "phase-data", "phase-teardown", "phase-data",
                     "phase-teardown"]  # fmt: skip


def test_cwnd_plot_draws_the_kernels_window_over_the_capture() -> None:
    result = capture.load_reference("bulk-upload")
    conn = _conn("bulk-upload")
    ax = plots.cwnd(conn, result.tcp_info()).axes[0]
    gids = {a.get_gid() for a in [*ax.lines, *ax.patches, *ax.collections]}
    assert {"cwnd", "ssthresh", "bytes-in-flight", "recovery-0", "recovery-1"} <= gids
    cwnd = next(line for line in ax.lines if line.get_gid() == "cwnd")
    assert max(cwnd.get_ydata()) == max(r["snd_cwnd"] for r in result.tcp_info()) * 1448


def test_time_sequence_marks_each_loss_and_its_recovery() -> None:
    result = capture.load_reference("bulk-upload")
    conn = _conn("bulk-upload")
    ax = plots.time_sequence(conn, samples=result.tcp_info()).axes[0]
    gids = {a.get_gid() for a in [*ax.lines, *ax.patches, *ax.collections]}
    recs = conn.recoveries(C2S)
    assert {f"recovery-client-{i}" for i in range(len(recs))} <= gids
    assert {"lost-client", "retransmissions-client", "slow-start-0"} <= gids
    lost = next(line for line in ax.lines if line.get_gid() == "lost-client")
    assert len(lost.get_xdata()) == sum(len(r.lost) for r in recs)
    ax = plots.rtt(conn, C2S, kernel=result.tcp_info()).axes[0]
    assert "kernel-srtt" in {line.get_gid() for line in ax.lines}


def test_time_sequence_shows_the_window_edge_and_the_probes() -> None:
    conn = _conn("zero-window")
    ax = plots.time_sequence(conn, direction=C2S, window=True).axes[0]
    lines = {line.get_gid(): line for line in ax.lines if line.get_gid()}
    assert {"window-client", "probes-client"} <= set(lines)
    assert not any(g.endswith("-server") for g in lines)  # one direction only
    probes = [s for s in conn.segments if "keep_alive" in s.analysis]
    assert len(lines["probes-client"].get_xdata()) == len(probes)
    zero = next(s for s in conn.segments if "zero_window" in s.analysis)
    edge = lines["window-client"].get_ydata()
    assert zero.rel_ack in edge  # a zero window: the edge is the ACK itself
