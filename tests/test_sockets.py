"""labchat.lab.sockets: socket states, ephemeral ports and SO_REUSEADDR in this kernel."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from labchat.lab import sockets

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux_only
def test_socket_states_leaves_one_socket_in_each_state() -> None:
    st = sockets.socket_states()
    assert st.states == {
        "listener": "LISTEN",
        "open client": "ESTAB",
        "open server": "ESTAB",
        "half-closed client": "FIN-WAIT-2",
        "half-closed server": "CLOSE-WAIT",
        "closed client": "TIME-WAIT",  # the first closer waits; the closed server is gone
    }
    lo, hi = st.ephemeral
    assert all(lo <= p <= hi for p in st.client_ports)
    text = str(st)
    assert text.splitlines()[0].startswith("State") and "TIME-WAIT" in text
    if st.ss is not None:  # iproute2 installed: ss agrees with /proc/net/tcp
        for state in st.states.values():
            assert state in st.ss


@linux_only
def test_ephemeral_port_range_is_the_kernels() -> None:
    text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    assert sockets.ephemeral_port_range() == (int(text[0]), int(text[1]))


def test_ephemeral_port_range_elsewhere_is_ianas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockets, "Path", lambda p: Path("/nonexistent/ip_local_port_range"))
    assert sockets.ephemeral_port_range() == (49152, 65535)


@linux_only
def test_reuse_address_needs_so_reuseaddr_after_time_wait() -> None:
    r = sockets.reuse_address()
    assert r.time_wait == "TIME-WAIT"
    assert r.without == "[Errno 98] Address already in use"
    assert r.with_reuse is None


def test_keepalive_settings_are_the_kernels_or_rfc1122s() -> None:
    got = sockets.keepalive_settings()
    assert set(got) == {"time", "intvl", "probes"}
    for key, value in got.items():
        path = Path(f"/proc/sys/net/ipv4/tcp_keepalive_{key}")
        want = int(path.read_text()) if path.is_file() else sockets.KEEPALIVE_DEFAULTS[key]
        assert value == want
