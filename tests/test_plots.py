"""labchat.plots: the figures show what the capture holds (checked on the drawn artists)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from labchat import plots  # noqa: E402
from labchat.analysis import load  # noqa: E402

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def chat():
    return load(FIX / "tcp-chat.pcapng").connection(0)


@pytest.fixture(scope="module")
def tls_pair():
    c12 = load(FIX / "tls12-chat.pcapng", keylog=FIX / "tls12-chat.keys.log", tls_ports=[7443])
    c13 = load(FIX / "tls13-chat.pcapng", keylog=FIX / "tls13-chat.keys.log", tls_ports=[7443])
    return c12.connection(0), c13.connection(0)


def _gids(ax, prefix: str) -> list[str]:
    return [p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith(prefix)]


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_ladder_one_arrow_per_segment_with_flags(chat) -> None:
    fig = plots.ladder(chat)
    ax = fig.axes[0]
    assert len(_gids(ax, "segment-")) == len(chat.segments) == 16
    texts = _texts(ax)
    assert any(t.startswith("SYN  seq=0") for t in texts)
    assert any(t.startswith("SYN, ACK  seq=0 ack=1") for t in texts)
    assert any(t.startswith("FIN, ACK") for t in texts)
    assert any("len=15" in t for t in texts)
    lanes = [t.get_text() for t in ax.get_xticklabels()]
    assert lanes[0].startswith("client\n127.0.0.1:") and lanes[1] == "server\n127.0.0.1:7000"
    assert "16 segments" in ax.get_title()


def test_ladder_phases_shaded(chat, tls_pair) -> None:
    ax = plots.ladder(chat).axes[0]
    assert _gids(ax, "phase-") == ["phase-handshake", "phase-data", "phase-teardown"]
    refused = load(FIX / "tcp-odd.pcapng").connection(0)
    ax = plots.ladder(refused).axes[0]
    assert _gids(ax, "phase-") == ["phase-handshake", "phase-reset"]
    assert len(_gids(ax, "segment-")) == 2


def test_ladder_tls_names_and_max_segments(tls_pair) -> None:
    c12, _ = tls_pair
    texts = _texts(plots.ladder(c12).axes[0])
    assert any("ClientHello" in t for t in texts)
    assert any("ClientKeyExchange" in t for t in texts)
    ax = plots.ladder(c12, max_segments=10).axes[0]
    assert len(_gids(ax, "segment-")) == 10
    assert "first 10 of 22 shown" in ax.get_title()


def test_ladder_draws_on_given_axes(chat) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert plots.ladder(chat, ax) is fig


def test_time_sequence_axes_and_data(chat) -> None:
    fig = plots.time_sequence(chat)
    ax = fig.axes[0]
    assert "time" in ax.get_xlabel() and "sequence" in ax.get_ylabel()
    labels = ax.get_legend_handles_labels()[1]
    assert "ACKs of client data" in labels and "client data (seq .. seq+len)" in labels
    bars = ax.collections[0].get_segments()  # client data bars: SYN, 4 lines, FIN
    assert len(bars) == 6 and max(b[1][1] for b in bars) == 46


def test_tls_comparison_annotates_round_trips(tls_pair) -> None:
    fig = plots.tls_comparison(*tls_pair)
    left, right = fig.axes
    assert left.get_title().startswith("TLS 1.2: 2 round trips")
    assert right.get_title().startswith("TLS 1.3: 1 round trip ")
    assert any("after 2 RTTs" in t for t in _texts(left))
    assert any("after 1 RTT" in t for t in _texts(right))
    assert len(_gids(left, "segment-")) == 22


def test_tcp_header_shows_real_values(chat) -> None:
    syn = chat.segments[0]
    fig = plots.tcp_header(syn)
    texts = _texts(fig.axes[0])
    assert str(chat.client[1]) in texts and "7000" in texts
    assert any(str(syn.seq) in t and "relative 0" in t for t in texts)
    assert any(t.startswith("MSS=65495") for t in texts)
    flag_boxes = {p.get_gid(): p.get_facecolor() for p in fig.axes[0].patches}
    assert flag_boxes["field-flag-SYN"] != flag_boxes["field-flag-ACK"]  # SYN set, ACK not
    assert "SYN" in fig.axes[0].get_title()


def test_figures_render_to_png(chat, tmp_path: Path) -> None:
    out = tmp_path / "ladder.png"
    plots.ladder(chat).savefig(out, dpi=60)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- chat lines on arrows


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("LOGIN alice correct horse battery", "LOGIN alice ****"),
        ("LOGIN bob x", "LOGIN bob ****"),
        ("LOGIN alice", "LOGIN alice"),  # no password: nothing to hide
        ("MSG bob LOGIN alice secret", "MSG bob LOGIN alice secret"),  # only the command
        ("SAY hi", "SAY hi"),
        ("MSG bob hi", "MSG bob hi"),
    ],
)
def test_mask_password_hides_only_a_logins_password(line: str, shown: str) -> None:
    assert plots.mask_password(line) == shown


def test_lines_by_segment_are_the_connections_lines_in_their_segments(chat, tls_pair) -> None:
    for conn in (chat, *tls_pair):
        placed = plots.lines_by_segment(conn)
        flat = [line for index in sorted(placed) for line in placed[index]]
        assert flat == [text for _, text in conn.app_lines()]
        for index, lines in placed.items():
            assert conn.segments[index].payload_len > 0, (index, lines)
    no_keys = load(FIX / "tls13-chat.pcapng", tls_ports=[7443]).connection(0)
    assert plots.lines_by_segment(no_keys) == {}


def test_ladder_labels_show_decrypted_lines_with_the_password_masked(tls_pair) -> None:
    _, c13 = tls_pair
    texts = "\n".join(_texts(plots.ladder(c13).axes[0]))
    login = next(t for _, t in c13.app_lines() if t.startswith("LOGIN "))
    assert login.split()[2] not in texts  # the password itself is nowhere
    assert "LOGIN alice ****" in texts
    assert "ApplicationData" not in texts  # each one says what it carried instead
    assert "ClientHello" in texts  # handshake messages keep their names
    plain = "\n".join(_texts(plots.ladder(c13, lines=False).axes[0]))
    assert "ApplicationData" in plain and "LOGIN" not in plain
    no_keys = load(FIX / "tls13-chat.pcapng", tls_ports=[7443]).connection(0)
    assert "ApplicationData" in "\n".join(_texts(plots.ladder(no_keys).axes[0]))
