"""Tests for labchat.lab (the notebooks' helpers) and the room figures it hands to plots."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from helpers import ROOT  # noqa: E402

from labchat import Client, analysis, lab, plots  # noqa: E402
from labchat import protocol as p  # noqa: E402

REFERENCE = ROOT / "captures" / "tcp-chat" / "capture.pcapng"

# Two rows of /proc/net/tcp: a listener on 127.0.0.1:5050 and a connection to it in TIME_WAIT.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:13BA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1
   1: 0100007F:D431 0100007F:13BA 06 00000000:00000000 03:00001770 00000000     0        0 0 3
   2: 0100007F:0050 0100007F:0051 01 00000000:00000000 00:00000000 00000000     0        0 0 3
"""


@pytest.fixture
def files(tmp_path: Path) -> lab.LabFiles:
    return lab.lab_files(tmp_path, fast_hash=True)


# --------------------------------------------------------------------------- TCP state


def test_tcp_sockets_reads_addresses_ports_and_states(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(PROC_NET_TCP)
    rows = lab.tcp_sockets([5050], table=table)
    assert rows == [
        {"local": ("127.0.0.1", 5050), "remote": ("0.0.0.0", 0), "state": "LISTEN"},
        {"local": ("127.0.0.1", 54321), "remote": ("127.0.0.1", 5050), "state": "TIME_WAIT"},
    ]
    assert len(lab.tcp_sockets(table=table)) == 3
    assert lab.tcp_sockets(table=tmp_path / "missing") is None


@pytest.mark.skipif(not os.path.isfile("/proc/net/tcp"), reason="/proc/net/tcp is Linux-only")
def test_connect_without_accept_is_established_in_the_listen_queue() -> None:
    result = lab.connect_without_accept()
    assert result["connected"] and result["accepted"] == 0
    assert result["kernel_state"] == "ESTABLISHED"


@pytest.mark.skipif(not os.path.isfile("/proc/net/tcp"), reason="/proc/net/tcp is Linux-only")
@pytest.mark.parametrize(("closer", "other"), [("client", "server"), ("server", "client")])
def test_time_wait_is_on_the_side_that_closed_first(closer: str, other: str) -> None:
    states = lab.time_wait_demo(first_closer=closer)
    assert states == {"first_closer": closer, closer: "TIME_WAIT", other: "gone"}


# --------------------------------------------------------------------------- the room


def test_room_order_check_every_client_sees_one_order(files: lab.LabFiles) -> None:
    with lab.running_server(files) as server:
        seen = lab.room_order_check(server, files, clients=3, lines_each=4)
    assert sorted(seen) == ["talker0", "talker1", "talker2"]
    orders = {tuple(lines) for lines in seen.values()}
    assert len(orders) == 1
    (order,) = orders
    assert len(order) == 12
    for name in seen:
        assert [x for x in order if x.startswith(f"{name}:")] == [
            f"{name}: {name} line {i}" for i in range(4)
        ]


def test_measure_broadcast_latency_one_row_per_size(files: lab.LabFiles) -> None:
    stats = lab.measure_broadcast_latency(files, sizes=(3, 2), messages=3)
    assert [s.clients for s in stats] == [2, 3]
    for s in stats:
        assert len(s.samples) == len(s.medians) == 3
        assert 0 < s.median_receiver <= s.last_receiver <= s.worst < 10_000
        assert s.row()["messages"] == 3


def test_room_stats_are_medians_over_messages() -> None:
    stats = lab.RoomStats(4, samples=[3.0, 1.0, 9.0], medians=[1.0, 0.5, 2.0])
    assert (stats.median_receiver, stats.last_receiver, stats.worst) == (1.0, 3.0, 9.0)
    assert stats.row() == {
        "clients in room": 4,
        "messages": 3,
        "median receiver (ms)": 1.0,
        "last receiver, median (ms)": 3.0,
        "last receiver, worst (ms)": 9.0,
    }


def test_chat_bots_talk_and_leave(files: lab.LabFiles) -> None:
    with lab.running_server(files) as server:
        with (
            lab.ChatBots(server, files, bots=2, rate=20.0) as bots,
            Client(*server.address, **lab.client_options(files)) as watcher,
        ):
            watcher.login("alice", files.passwords["alice"])
            assert {"bot0", "bot1"} <= set(watcher.who())
            event = watcher.recv(timeout=5)
            while event is not None and not isinstance(event, p.Msg):
                event = watcher.recv(timeout=5)
            assert isinstance(event, p.Msg) and event.user in ("bot0", "bot1")
        assert bots.errors == []
        assert bots.sent > 0
        assert not any(t.is_alive() for t in bots.threads)


def test_live_room_view_without_capture(files, monkeypatch, capsys) -> None:
    monkeypatch.setenv("LABCHAT_CAPTURE_MODE", "offline")
    with lab.running_server(files) as server, lab.ChatBots(server, files, bots=2, rate=10.0):
        view = lab.live_room_view(
            *server.address, user="alice", password=files.passwords["alice"],
            cafile=files.certs.ca_cert, server_hostname="localhost", duration=3.0, refresh=0.5,
        )  # fmt: skip
    assert view["refreshes"] >= 2
    assert {"alice", "bot0", "bot1"} <= set(view["members"])
    assert view["messages"] > 0
    assert len(view["rtt_ms"]) == view["refreshes"]
    assert view["capture"] == "LABCHAT_CAPTURE_MODE=offline: no live capture"
    # Outside Jupyter, display() prints the figure's repr: one figure, 9.6 x 8 inches.
    assert "Figure(960x800)" in capsys.readouterr().out


# --------------------------------------------------------------------------- the figures


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_broadcast_latency_draws_the_three_series() -> None:
    stats = [lab.RoomStats(n, samples=[2.0 * n, n], medians=[n / 2, n / 4]) for n in (2, 5)]
    assert lab.plot_latency is plots.broadcast_latency
    fig = plots.broadcast_latency(stats)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[2, 5]] * 3
    assert [list(line.get_ydata()) for line in lines] == [
        [s.median_receiver for s in stats],
        [s.last_receiver for s in stats],
        [s.worst for s in stats],
    ]


def _view(**kw) -> lab.RoomView:
    base = {"members": ["alice", "bob"], "times": [1.0, 2.0], "rates": [3.0, 4.0],
            "rtts": [0.4, 0.6]}  # fmt: skip
    return lab.RoomView("127.0.0.1", 5050, **{**base, **kw})


def test_room_view_says_why_there_is_no_ladder() -> None:
    fig = plots.room_view(_view(no_capture="needs root"))
    who, rate, ladder_ax, _rtt = fig.axes
    assert who.get_title(loc="left") == "In the room: 2"
    assert _texts(who) == ["alice", "bob"]
    assert rate.get_title(loc="left") == "4 msg/s, round trip 0.6 ms"
    assert _texts(ladder_ax) == ["no live capture:\nneeds root"]
    fig = plots.room_view(_view(members=[f"u{i}" for i in range(30)]))
    assert _texts(fig.axes[0])[-1] == "... and 14 more"
    assert _texts(fig.axes[2]) == ["no segments captured yet"]


def test_room_view_draws_the_newest_segments() -> None:
    conn = analysis.load(REFERENCE).connection(0)
    fig = plots.room_view(_view(newest=conn, window_packets=40))
    ladder_ax = fig.axes[2]
    title = " ".join(ladder_ax.get_title().split())
    # Issue 13: the ladder says what its numbers count from (a 40-packet window, not the
    # connection), and its times are on the view's clock.
    assert title.startswith(f"Newest {len(conn.segments)} segments, from the last 40 packets")
    assert "seq and ack count from the first of those packets" in title
    assert "since the view started" in " ".join(ladder_ax.get_ylabel().split())
    arrows = [a for a in ladder_ax.patches if (a.get_gid() or "").startswith("segment-")]
    assert len(arrows) == len(conn.segments)


def test_live_view_ladder_times_are_on_the_views_clock() -> None:
    from labchat.lab import liveview

    conn = analysis.load(REFERENCE).connection(0)
    newest = liveview._last_segments(conn, 3, shift=4.5)
    assert [s.index for s in newest.segments] == [s.index for s in conn.segments[-3:]]
    assert [s.time for s in newest.segments] == pytest.approx(
        [s.time + 4.5 for s in conn.segments[-3:]]
    )
    assert conn.segments[-1].time < 4.5  # the original is untouched
