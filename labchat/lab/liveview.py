"""A live view of a chat room for the classroom projector (notebook 05).

`live_room_view` logs in as a watcher, and once a ``refresh`` period asks the server who is in
the room (WHO), counts the messages that arrived, times a PING and, where this machine may
capture on the host (root or CAP_NET_RAW), takes the newest TCP segments of the server's port.
It puts those numbers into a `RoomView`; `labchat.plots.room_view` draws it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import analysis, capture
from .. import protocol as p
from ..client import Client

__all__ = ["RoomView", "live_room_view"]

#: Packets the sniffer keeps for the ladder panel (enough for ``ladder_segments`` many times).
_KEEP_PACKETS = 400


@dataclass
class RoomView:
    """What the live view shows at one refresh.

    Attributes:
        host: the server's host, as given.
        port: the server's port.
        members: who is in the room (WHO).
        times: seconds watched at each refresh so far.
        rates: messages per second at each refresh.
        rtts: PING round trip at each refresh (ms).
        newest: the newest segments of the newest connection on the port, or None. Their
            times are seconds since the view started (the clock of ``times``); their seq and
            ack numbers count from the first packet of the window (the sniffer keeps only the
            newest packets, so the connection's SYN is usually long gone).
        window_packets: how many of the newest packets that window held.
        no_capture: why there is no live capture here (None: there is one).
    """

    host: str
    port: int
    members: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    rtts: list[float] = field(default_factory=list)
    newest: analysis.Connection | None = None
    window_packets: int = 0
    no_capture: str | None = None


def _live_capture_unavailable() -> str | None:
    forced = os.environ.get(capture.MODE_ENV, "").strip()
    if forced == "offline":
        return f"{capture.MODE_ENV}=offline: no live capture"
    if not sys.platform.startswith("linux"):
        return "live capture needs Linux packet sockets"
    try:
        capture.detect_mode("host")
    except capture.CaptureError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def _newest_connection(packets: list[Any], port: int, tmp: Path) -> analysis.Connection | None:
    if not packets:
        return None
    path = capture.write_pcapng(tmp / "live.pcapng", packets)
    conns = analysis.load(path, tls_ports=[port]).connections()
    if not conns:
        return None
    conn = max(conns, key=lambda c: c.segments[-1].time if c.segments else -1)
    if conn.server[1] != port:
        # No SYN in the window: analysis guessed the roles from the port numbers (the lower
        # one as the server's). We know the server's port, so put the roles right.
        flip = {analysis.C2S: analysis.S2C, analysis.S2C: analysis.C2S}
        fixed = copy.copy(conn)
        fixed.client, fixed.server = conn.server, conn.client
        fixed.segments = [
            dataclasses.replace(x, direction=flip[x.direction]) for x in conn.segments
        ]
        conn = fixed
    return conn


def _last_segments(
    conn: analysis.Connection | None, n: int, shift: float = 0.0
) -> analysis.Connection | None:
    """The last ``n`` segments of ``conn``, their times moved ``shift`` seconds later.

    The analysis counts times from the window's first packet; adding when that packet came
    (in seconds since the view started) puts the ladder on the view's clock.
    """
    if conn is None or not conn.segments:
        return None
    newest = copy.copy(conn)
    newest.segments = [dataclasses.replace(s, time=s.time + shift) for s in conn.segments[-n:]]
    return newest


def live_room_view(
    host: str,
    port: int,
    *,
    user: str,
    password: str,
    cafile: str | Path | None,
    server_hostname: str | None = None,
    duration: float = 5.0,
    refresh: float = 1.0,
    iface: str = "lo",
    ladder_segments: int = 10,
) -> dict[str, Any]:
    """Watch a chat room for ``duration`` seconds, redrawing one figure every ``refresh`` s.

    The view logs in as ``user`` (a teacher's account) and shows, readable on a projector:
    who is in the room (WHO), messages per second, the server's round-trip time (PING), and,
    where this machine may capture (host mode: root or CAP_NET_RAW), the newest TCP segments
    of the port as a ladder. Works for a server in this notebook or one on the LAN.

    Args:
        host: the server's address.
        port: its port.
        user: the watcher's account.
        password: its password.
        cafile: the lab CA that signed the server's certificate.
        server_hostname: the name to check in that certificate.
        duration: seconds to watch.
        refresh: seconds between redraws.
        iface: interface to capture on.
        ladder_segments: how many of the newest segments the ladder shows.

    Returns:
        A summary: ``{"refreshes", "members", "messages", "rtt_ms", "capture"}`` (``capture``
        says whether the ladder panel was live and, if not, why).
    """
    from IPython.display import display

    from .. import plots

    view = RoomView(host, port, no_capture=_live_capture_unavailable())
    sniffer = None
    if view.no_capture is None:
        try:
            sniffer = capture.Sniffer(iface, port, keep_recent=_KEEP_PACKETS).start()
        except capture.CaptureError as exc:
            view.no_capture = str(exc)
    handle = None
    total = 0
    t_start = time.monotonic()
    wall_start = time.time()  # packets carry wall-clock times
    try:
        with tempfile.TemporaryDirectory(prefix="labchat-live-") as tmp, Client(
            host, port, cafile=cafile, server_hostname=server_hostname, timeout=5.0
        ) as watcher:  # fmt: skip
            watcher.login(user, password)
            t_last = t_start
            while True:
                # Ticks on a fixed schedule, so drawing time does not stretch the refresh
                # period; a tick that is already late still reads what has arrived.
                t_next = max(
                    t_start + refresh * (len(view.times) + 1), time.monotonic() + 0.2 * refresh
                )
                count = 0
                while True:
                    left = t_next - time.monotonic()
                    e = watcher.recv(timeout=max(0.0, left))
                    if isinstance(e, p.Msg):
                        count += 1
                    elif e is None and left <= 0:
                        break
                total += count
                view.members = watcher.who()
                view.rtts.append(watcher.ping() * 1000)
                now = time.monotonic()
                view.times.append(now - t_start)
                view.rates.append(count / (now - t_last))
                t_last = now
                if sniffer is not None:
                    # Only the newest packets: decoding hundreds of TLS records every second
                    # would take longer than the refresh period.
                    packets = list(sniffer.recent)[-4 * ladder_segments :]
                    conn = _newest_connection(packets, port, Path(tmp))
                    view.window_packets = len(packets)
                    shift = float(packets[0].time) - wall_start if packets else 0.0
                    view.newest = _last_segments(conn, ladder_segments, shift)
                fig = plots.room_view(view)
                if handle is None:
                    handle = display(fig, display_id=True)
                else:
                    handle.update(fig)
                if time.monotonic() - t_start >= duration:
                    break
            watcher.quit()
    finally:
        if sniffer is not None:
            with contextlib.suppress(capture.CaptureError):
                sniffer.stop(quiet=0.0)
    return {
        "refreshes": len(view.times),
        "members": view.members,
        "messages": total,
        "rtt_ms": view.rtts,
        "capture": "live" if view.no_capture is None else view.no_capture,
    }
