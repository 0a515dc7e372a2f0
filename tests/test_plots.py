"""labchat.plots: the figures show what the capture holds (checked on the drawn artists)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from labchat import lab, plots  # noqa: E402
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
    assert any("after 2 RTTs" in " ".join(t.split()) for t in _texts(left))
    assert any("after 1 RTT" in " ".join(t.split()) for t in _texts(right))
    # The handshakes are the point: each ladder stops four segments after its first data.
    (mark,) = [line.get_gid() for line in left.lines if (line.get_gid() or "").startswith("mark-")]
    first = int(mark.split("-")[1])
    assert len(_gids(left, "segment-")) == first + 4 < 22
    assert "of 22 shown" in " ".join(left.get_title().split())


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


# ---------------------------------------------------------------------------------------------
# The projector style (issue 13): 14 pt and up, at a size a notebook shows unscaled
# ---------------------------------------------------------------------------------------------


def _drawn(fig):
    """Render ``fig`` (so tick labels exist) and return its visible, non-empty texts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig).draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _every_figure(chat, tls_pair):
    lossy = load(Path(__file__).parent.parent / "captures" / "lost-segment" / "capture.pcapng")
    conn = lossy.connection(0)
    return {
        "ladder": plots.ladder(chat),
        "tls_comparison": plots.tls_comparison(*tls_pair),
        "time_sequence": plots.time_sequence(conn),
        "in_flight": plots.in_flight(conn),
        "rtt": plots.rtt(conn),
        "tcp_header": plots.tcp_header(chat.segments[0]),
        "distributions": plots.distributions({"a": [1.0, 2.0, 3.0], "b": [0.1, 0.2]}, log=True),
        "certificate_chain": plots.certificate_chain(_chain_report()),
        "broadcast_latency": plots.broadcast_latency(
            [lab.RoomStats(n, samples=[1.0 * n, 2.0 * n], medians=[0.5 * n, n]) for n in (2, 5)]
        ),
        "room_view": plots.room_view(
            lab.RoomView(
                "127.0.0.1",
                5050,
                members=["alice", "bob"],
                times=[1.0, 2.0],
                rates=[3.0, 4.0],
                rtts=[0.4, 0.6],
                newest=chat,
                window_packets=40,
            )
        ),  # fmt: skip
    }


def _chain_report():
    from labchat import trust
    from labchat.certs import CA

    ca = CA()
    return trust.explain([ca.issue_cert("localhost").certificate], [ca.certificate], host="x")


def test_projector_style_is_the_default_every_text_14pt_and_figures_fit_a_notebook(
    chat, tls_pair
) -> None:
    assert plots.style().name == "projector"
    for name, fig in _every_figure(chat, tls_pair).items():
        texts = _drawn(fig)
        assert len(texts) > 5, name
        small = {t.get_text()[:30]: t.get_fontsize() for t in texts if t.get_fontsize() < 14}
        assert not small, f"{name}: text under 14 pt: {small}"
        # Wider than 9.6 in (960 px at 100 dpi) and a notebook cell shrinks it, text and all.
        assert fig.get_figwidth() <= 9.6, name


def test_style_switches_every_figure_and_refuses_unknown_names(chat) -> None:
    try:
        assert plots.style("paper").text < 14
        texts = _drawn(plots.ladder(chat))
        assert max(t.get_fontsize() for t in texts) < 14
    finally:
        plots.style("projector")
    assert min(t.get_fontsize() for t in _drawn(plots.ladder(chat))) >= 14
    with pytest.raises(ValueError, match="projector"):
        plots.style("poster")


def test_ladder_phase_names_do_not_overlap_and_stay_in_their_bands() -> None:
    # Notebook 07's capture: handshake, reset, handshake, reset, data, reset, one row each.
    conn = load(Path(__file__).parent.parent / "captures" / "craft-handshake-rst" /
                "capture.pcapng").connection(0)  # fmt: skip
    fig = plots.ladder(conn)
    _drawn(fig)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if (t.get_gid() or "").startswith("phase-label-")]
    bands = [p for p in ax.patches if (p.get_gid() or "").startswith("phase-")]
    assert [t.get_text() for t in labels] == [p.get_gid()[6:] for p in bands]
    assert len(labels) >= 5
    boxes = [t.get_window_extent(renderer) for t in labels]
    for a, b in zip(boxes, boxes[1:], strict=False):
        assert not a.overlaps(b), (a, b)
    for box, band in zip(boxes, bands, strict=True):
        extent = band.get_window_extent(renderer)
        assert extent.y0 - 1 <= box.y0 and box.y1 <= extent.y1 + 1, "a name outside its band"


def test_distributions_one_row_per_set_with_its_median() -> None:
    fig = plots.distributions({"wrong password": [50, 60, 70], "unknown user": [55, 65, 75, 85]})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["wrong password", "unknown user"]
    dots = {line.get_gid(): list(line.get_xdata()) for line in ax.lines if line.get_gid()}
    assert sorted(dots["samples-0"]) == [50, 60, 70] and len(dots["samples-1"]) == 4
    assert [t.get_text() for t in ax.texts] == ["60 ms", "70 ms"]
    assert {p.get_gid() for p in ax.patches} >= {"box-0", "box-1"}


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
        placed = conn.lines_by_segment()
        flat = [line for index in sorted(placed) for line in placed[index]]
        assert flat == [text for _, text in conn.app_lines()]
        for index, lines in placed.items():
            assert conn.segments[index].payload_len > 0, (index, lines)
    no_keys = load(FIX / "tls13-chat.pcapng", tls_ports=[7443]).connection(0)
    assert no_keys.lines_by_segment() == {}


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
