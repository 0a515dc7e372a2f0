"""A loopback sniffer that is known to be listening, sees each segment once, and fails loudly.

Two traps this module avoids (see /work/shared/GUIDE.md):

* A raw packet socket on Linux ``lo`` sees every packet twice, once outgoing and once incoming
  (scapy issue #1702). libpcap drops the outgoing copy on loopback; without libpcap we use a
  packet socket that drops ``PACKET_OUTGOING`` ourselves.
* scapy compiles ``filter=`` with libpcap; without it the sniffer thread dies quietly and the
  error only appears at ``stop()``. We use BPF only when libpcap is present, a Python-side
  filter otherwise, and every sniffer error is raised as `CaptureError`.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from .modes import NO_PCAP_ENV, CaptureError

__all__ = ["Sniffer", "libpcap_available", "load_layers", "quiet_scapy"]

# After the scenario's last step we wait until the wire has been quiet this long before we
# stop the sniffer: libpcap hands packets over in blocks with a 100 ms timeout, so a shorter
# wait could lose the last FIN/ACK.
_QUIET_S = 0.25
_DRAIN_MAX_S = 2.0
_START_TIMEOUT_S = 30.0  # a sniffer starts in milliseconds; 30 s is for a crowded machine


def libpcap_available() -> bool:
    """True if libpcap can be loaded (and ``LABCHAT_CAPTURE_NO_PCAP`` is not set)."""
    if os.environ.get(NO_PCAP_ENV, "") not in ("", "0"):
        return False
    return ctypes.util.find_library("pcap") is not None


def _pcap_listen_socket() -> type | None:
    """scapy's libpcap listen socket, or None if libpcap cannot be loaded."""
    from scapy.config import conf

    if not conf.use_pcap:
        # scapy defines its libpcap classes only once use_pcap is on; it turns it back off
        # (with a warning) if the library cannot be loaded.
        with quiet_scapy():
            conf.use_pcap = True
    if not conf.use_pcap:
        return None
    from scapy.arch.libpcap import L2pcapListenSocket
    from scapy.automaton import select_objects
    from scapy.data import MTU

    class DrainingPcapListenSocket(L2pcapListenSocket):
        """libpcap listen socket that empties libpcap's buffer each time select() wakes it.

        scapy's sniff loop select()s on libpcap's fd and then reads ONE packet. On Linux
        libpcap receives a whole TPACKET_V3 block at once; after the first packet the fd is no
        longer readable, so the rest of the block (typically a connection's last FIN/ACKs)
        waits in libpcap's buffer until more traffic arrives, which at the end of a scenario
        is never. We read the buffer dry (non-blocking) and report ourselves ready until our
        backlog is empty.
        """

        desc = "libpcap listen socket, buffer drained on every wake-up"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._backlog: deque[tuple[float, bytes]] = deque()
            super().__init__(*args, **kwargs)

        def recv_raw(self, x: int = MTU) -> tuple[Any, Any, Any]:
            if not self._backlog:
                self.pcap_fd.setnonblock(True)
                try:
                    while len(self._backlog) < 4096:
                        ts, pkt = self.pcap_fd.next()
                        if pkt is None:
                            break
                        self._backlog.append((ts, pkt))
                finally:
                    self.pcap_fd.setnonblock(False)
            if not self._backlog:
                return None, None, None
            ts, pkt = self._backlog.popleft()
            return self.LL, pkt, ts

        @staticmethod
        def select(sockets: list[Any], remain: float | None = None) -> list[Any]:
            ready = [s for s in sockets if getattr(s, "_backlog", None)]
            if ready:
                return ready + select_objects([s for s in sockets if s not in ready], 0)
            return select_objects(sockets, remain)

    return DrainingPcapListenSocket


def _incoming_only_socket() -> type:
    """A Linux packet socket class that drops the PACKET_OUTGOING copy of each packet.

    On ``lo`` every packet is both sent and received, so a packet socket sees it twice
    (scapy issue #1702). The incoming copy is enough.
    """
    from scapy.arch.linux import L2ListenSocket, get_last_packet_timestamp
    from scapy.data import MTU

    class IncomingOnlyListenSocket(L2ListenSocket):
        desc = "Linux packet socket, incoming copies only (loopback de-duplication)"

        def recv_raw(self, x: int = MTU) -> tuple[Any, Any, Any]:
            pkt, sa_ll, ts = self._recv_raw(self.ins, x)
            if sa_ll[2] == socket.PACKET_OUTGOING:
                return None, None, None
            if ts is None:
                ts = get_last_packet_timestamp(self.ins)
            return self.LL, pkt, ts

    return IncomingOnlyListenSocket


def load_layers() -> None:
    """Register Ethernet/IP/TCP with scapy before any socket or file is opened.

    A scapy socket or reader looks the link type up once, when it opens; if the layers are
    not imported yet, every packet comes back as undissected ``Raw``.
    """
    import scapy.layers.inet  # noqa: F401
    import scapy.layers.inet6  # noqa: F401
    import scapy.layers.l2  # noqa: F401


@contextlib.contextmanager
def quiet_scapy() -> Iterator[None]:
    """Silence scapy's runtime/loading warnings (they would land on a notebook's stderr)."""
    loggers = [logging.getLogger(n) for n in ("scapy.runtime", "scapy.loading")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class Sniffer:
    """A loopback sniffer that is known to be listening, sees each segment once, and fails loudly.

    Args:
        iface: interface to sniff (``lo``).
        port: keep only TCP segments to or from this port; None keeps all TCP.
        use_pcap: force libpcap on/off; None uses it when `libpcap_available`.
        keep_recent: also keep the newest this many packets in `recent` while sniffing (for
            a live view that redraws as packets arrive); 0 keeps none there. With
            ``dissect=False`` they are raw frames.
        dissect: False keeps each frame as raw bytes (with libpcap only): `stop` returns
            them as ``conf.raw_layer`` packets with their times, ready to write to a file.
            scapy dissects a few thousand frames a second at best, less on a busy machine: a
            bulk transfer outruns it, libpcap's 2 MB ring fills and the end of the transfer
            goes missing; and dissecting them afterwards takes seconds nobody needs.

    With libpcap the filter is a BPF program (``tcp port P``) run in the kernel; without it a
    Python ``lfilter`` does the same job after the packets are copied to us.
    """

    def __init__(
        self,
        iface: str = "lo",
        port: int | None = None,
        *,
        use_pcap: bool | None = None,
        keep_recent: int = 0,
        dissect: bool = True,
    ):
        load_layers()
        self.iface = iface
        self.port = port
        self.bpf = f"tcp port {port}" if port else "tcp"
        want_pcap = libpcap_available() if use_pcap is None else use_pcap
        self._socket_cls = _pcap_listen_socket() if want_pcap else None
        self.use_pcap = self._socket_cls is not None
        if self.use_pcap:
            self.method = f"libpcap, BPF filter '{self.bpf}'"
        else:
            why = "libpcap disabled" if not want_pcap else "libpcap could not be loaded"
            self.method = f"packet socket ({why}), Python filter '{self.bpf}'"
        self._sniffer: Any = None
        self._last_packet = 0.0
        self.count = 0
        #: The newest ``keep_recent`` packets, oldest first (appended by the sniffer thread).
        self.recent: deque[Any] = deque(maxlen=keep_recent)
        self.dissect = dissect or not self.use_pcap

    def _match(self, pkt: Any) -> bool:
        from scapy.layers.inet import TCP

        if TCP not in pkt:
            return False
        if self.port is None:
            return True
        return self.port in (pkt[TCP].sport, pkt[TCP].dport)

    def _seen(self, pkt: Any) -> None:
        self._last_packet = time.monotonic()
        self.count += 1
        if self.recent.maxlen:
            self.recent.append(pkt)

    def _raw_socket_cls(self) -> type:
        """The libpcap socket class, made to hand frames over undissected (``dissect=False``)."""
        from scapy.config import conf

        base: Any = self._socket_cls

        class RawFramesPcapListenSocket(base):  # type: ignore[misc, valid-type]
            desc = f"{base.desc}, frames kept raw"

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.LL = conf.raw_layer

        return RawFramesPcapListenSocket

    def start(self, timeout: float = _START_TIMEOUT_S) -> Sniffer:
        """Start sniffing and return once the socket is open and listening.

        Raises:
            CaptureError: the sniffer failed to start (bad filter, no such interface, ...).
        """
        from scapy.sendrecv import AsyncSniffer

        started = threading.Event()
        kwargs: dict[str, Any] = {
            "iface": self.iface,
            "store": True,
            "prn": self._seen,
            "started_callback": started.set,
        }
        if self.use_pcap:
            kwargs["L2socket"] = self._socket_cls if self.dissect else self._raw_socket_cls()
            kwargs["filter"] = self.bpf
        else:
            kwargs["L2socket"] = _incoming_only_socket() if self.iface == "lo" else None
            kwargs["lfilter"] = self._match
        self._sniffer = AsyncSniffer(**kwargs)
        self._sniffer.start()
        deadline = time.monotonic() + timeout
        while not started.wait(0.01):
            thread = self._sniffer.thread
            if self._sniffer.exception is not None or (thread and not thread.is_alive()):
                break
            if time.monotonic() > deadline:
                break
        if not started.is_set() or self._sniffer.exception is not None:
            exc = self._sniffer.exception
            self._sniffer.thread.join(1)
            detail = f"{type(exc).__name__}: {exc}" if exc else "did not start in time"
            raise CaptureError(f"sniffer on {self.iface} ({self.method}) failed: {detail}")
        self._last_packet = time.monotonic()
        return self

    def stop(self, quiet: float = _QUIET_S) -> list[Any]:
        """Wait until the wire has been quiet for ``quiet`` seconds, stop, return the packets.

        Raises:
            CaptureError: the sniffer thread died while capturing.
        """
        sn = self._sniffer
        if sn is None:
            raise CaptureError("sniffer was never started")
        # Quiet is counted from the later of the last packet seen and this call: libpcap
        # hands packets over in TPACKET_V3 blocks that the kernel retires only when full or
        # after the 100 ms block timeout, so the scenario's last packets may not have reached
        # us yet even though the wire went quiet long ago (a bad-login capture lost its
        # ERR, FINs and ACKs this way, one run in two).
        called = time.monotonic()
        deadline = called + _DRAIN_MAX_S
        while (
            time.monotonic() - max(self._last_packet, called) < quiet
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        died_early = not sn.running
        if sn.running:
            sn.stop_cb()
        sn.thread.join(5)
        if sn.exception is not None:
            exc = sn.exception
            raise CaptureError(f"sniffer on {self.iface} failed: {type(exc).__name__}: {exc}")
        if died_early or sn.thread.is_alive():
            raise CaptureError(
                f"sniffer on {self.iface} ({self.method}) stopped before it was asked to; "
                "its socket failed (see scapy's warning above)"
            )
        return list(sn.results or [])

    def __enter__(self) -> Sniffer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        sn = self._sniffer
        if sn is not None and sn.running:
            sn.stop_cb()
            sn.thread.join(5)
