"""Helpers that keep the lab notebooks short, one module per lesson theme.

==================  =========================================================================
``files``           throwaway certificates and users, and a server using them (03, 04, 05)
``captured``        capture a scripted scenario and load it as an eavesdropper sees it (01-04)
``tcpstate``        TCP states from /proc/net/tcp: a listener that never accepts (01),
                    who ends in TIME_WAIT (02)
``sockets``         a socket in every state as ``ss -tan`` shows it, ephemeral ports,
                    keepalive timers, TIME_WAIT and SO_REUSEADDR (09)
``rooms``           many clients in one room: one order, broadcast latency, chat bots (05)
``liveview``        the room on a projector, redrawn every second (05)
==================  =========================================================================

Nothing here is new protocol or analysis logic: each function strings together what
`labchat.capture`, `labchat.analysis`, `labchat.server` and `labchat.client` already do, so a
notebook cell stays one or two lines. The lab measures; `labchat.plots` draws
(`plot_latency` is `labchat.plots.broadcast_latency`). Every server and socket a helper
opens, it closes again.

Notebooks use it as ``from labchat import lab`` and ``lab.<name>``: every name below.
"""

from __future__ import annotations

from ..plots import broadcast_latency as plot_latency
from .captured import Captured, capture_scenario, capture_scenarios
from .files import LabFiles, client_options, lab_files, running_server
from .liveview import RoomView, live_room_view
from .rooms import ChatBots, RoomStats, measure_broadcast_latency, room_order_check
from .sockets import (
    ReuseResult,
    SocketStates,
    ephemeral_port_range,
    keepalive_settings,
    reuse_address,
    socket_states,
    socket_table,
)
from .tcpstate import TCP_STATES, connect_without_accept, tcp_sockets, time_wait_demo

__all__ = [
    "TCP_STATES",
    "Captured",
    "ChatBots",
    "LabFiles",
    "ReuseResult",
    "RoomStats",
    "RoomView",
    "SocketStates",
    "capture_scenario",
    "capture_scenarios",
    "client_options",
    "connect_without_accept",
    "ephemeral_port_range",
    "keepalive_settings",
    "lab_files",
    "live_room_view",
    "measure_broadcast_latency",
    "reuse_address",
    "plot_latency",
    "room_order_check",
    "running_server",
    "socket_states",
    "socket_table",
    "tcp_sockets",
    "time_wait_demo",
]
