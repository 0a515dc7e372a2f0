"""The routed lab network: client, router, server; the bottleneck queue sits in the router.

:class:`labchat.capture.netns.LabNetwork` joins two hosts with one cable. That is enough to
lose chosen segments, but not to fill a queue: a packet queued anywhere before a host's IP
layer has received it (the sender's own qdisc, or an IFB at the far end's ingress) still
belongs to the sending socket, and Linux's TCP Small Queues (``tcp_small_queue_check``)
lets a socket keep only about a millisecond of data there. The sender then sits at a dozen
segments in flight whatever its congestion window, and the queue never builds. A router
receives each packet first (``ip_rcv`` detaches it from its socket) and only then queues it
for the next link, like a real bottleneck router; then the sender's congestion window is
what fills the queue, and loss comes from the queue overflowing:

::

    +--------------------+        +--------------------------------+        +-------------------+
    | client             |  veth  | router            ip_forward=1 |  veth  | server            |
    | 10.77.0.1  veth-c ==========  veth-rc 10.77.0.254            |        |                   |
    | capture here       |  1500  |            10.77.1.254 veth-rs =========  veth-s 10.77.1.2  |
    +--------------------+        |  tbf (+ netem) on both egresses|  1500  +-------------------+
                                  +--------------------------------+

The rate limit is a ``tbf`` on each of the router's two egresses: ``veth-rs`` towards the
server (the upload's bottleneck, with a queue of ``shaping.queue_bytes``) and ``veth-rc``
towards the client. Where the kernel has ``sch_netem``, ``shaping.delay_ms`` adds a netem
delay in front of each tbf (netem as the root qdisc, tbf as its child, as in netem's own
documentation), so the round trip has a floor of twice that; where it has not, the RTT is
the queue's alone (microseconds when it is empty): bufferbloat in its purest form.

The capture point is the client's interface: the sender's view, as in the classic
upload-to-a-server Wireshark lab, so the bytes in flight and the round-trip times tshark and
:mod:`labchat.analysis` compute from it are the sender's.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .child import bring_up_loopback
from .netns import (
    CLIENT_IFACE,
    CLIENT_IP,
    SERVER_IFACE,
    LabNetwork,
    NetworkError,
    in_netns,
    new_netns,
    run_tool,
)
from .shaping import Shaping, tbf_args

__all__ = [
    "ROUTED_SERVER_IP",
    "ROUTER_CLIENT_IFACE",
    "ROUTER_SERVER_IFACE",
    "RoutedNetwork",
    "shaping_commands",
]

#: The server sits on its own subnet, one hop behind the router.
ROUTED_SERVER_IP = "10.77.1.2"
_ROUTER_IPS = {"client": "10.77.0.254", "server": "10.77.1.254"}
#: The router's two interfaces: towards the client, towards the server.
ROUTER_CLIENT_IFACE = "veth-rc"
ROUTER_SERVER_IFACE = "veth-rs"
_LINKS = (("client", CLIENT_IFACE), ("server", SERVER_IFACE),
          ("router", ROUTER_CLIENT_IFACE), ("router", ROUTER_SERVER_IFACE))  # fmt: skip


class RoutedNetwork(LabNetwork):
    """Client and server hosts with a router between them (see the module docstring).

    Same API as `labchat.capture.netns.LabNetwork` (``client()``, ``server()``, ``dropped()``,
    ``describe()``), plus ``router()``; ``server_ip`` is `ROUTED_SERVER_IP`.

    Raises:
        NetworkError: a tool is missing or the kernel refuses a feature (the message says which).
    """

    server_ip = ROUTED_SERVER_IP
    client_ip = CLIENT_IP

    def start(self) -> RoutedNetwork:
        self._router_fd: int | None = new_netns()
        self._server_fd = new_netns()
        self._client_fd = new_netns()
        try:
            with self._in("router"):
                bring_up_loopback()
                pairs = (("client", ROUTER_CLIENT_IFACE, CLIENT_IFACE),
                         ("server", ROUTER_SERVER_IFACE, SERVER_IFACE))  # fmt: skip
                for host, here, there in pairs:
                    fd = self._client_fd if host == "client" else self._server_fd
                    run_tool(["ip", "link", "add", here, "mtu", str(self.mtu), "type", "veth",
                              "peer", "name", there, "mtu", str(self.mtu),
                              "netns", f"/proc/{os.getpid()}/fd/{fd}"])  # fmt: skip
                    self._link_up(here, f"{_ROUTER_IPS[host]}/24")
                with open("/proc/sys/net/ipv4/ip_forward", "w") as fh:  # this netns only
                    fh.write("1\n")
            for host, iface, ip in (("client", CLIENT_IFACE, self.client_ip),
                                    ("server", SERVER_IFACE, self.server_ip)):  # fmt: skip
                with self._in(host):
                    bring_up_loopback()
                    self._link_up(iface, f"{ip}/24")
                    run_tool(["ip", "route", "add", "default", "via", _ROUTER_IPS[host]])
            self._wait_for_links(_LINKS)
            self._shape()
            if self.shaping.drops or self.shaping.loss_percent:
                self._firewall(self.shaping)
            self._apply_sysctls()
        except BaseException:
            self.close()
            raise
        return self

    def _shape(self) -> None:
        shaping = self.shaping
        if not shaping.rate and not shaping.delay_ms:
            return
        with self._in("router"):
            for iface in (ROUTER_SERVER_IFACE, ROUTER_CLIENT_IFACE):
                for cmd in shaping_commands(iface, shaping, self.mtu):
                    try:
                        run_tool(cmd)
                    except NetworkError as exc:
                        if "netem" in cmd:
                            raise NetworkError(
                                "this kernel has no sch_netem, so an added delay is not "
                                f"available here ({exc}); rate limits (tbf) still work"
                            ) from None
                        raise
        self.bottleneck = f"router egress {ROUTER_SERVER_IFACE} (towards the server)"

    def _in(self, host: str) -> Any:
        if host == "router":
            fd = getattr(self, "_router_fd", None)
            if fd is None:
                raise NetworkError("the routed lab network is not started")
            return in_netns(fd)
        return super()._in(host)

    def router(self) -> Any:
        """Run the body on the router (this thread only)."""
        return self._in("router")

    def queue_stats(self) -> dict[str, dict[str, int]]:
        """What each of the router's egress qdiscs did so far: ``{iface: {"packets", "bytes",
        "drops", "overlimits"}}`` (``tc -s qdisc``); the tbf's drops are the queue overflowing.
        """
        out: dict[str, dict[str, int]] = {}
        with self._in("router"):
            for iface in (ROUTER_SERVER_IFACE, ROUTER_CLIENT_IFACE):
                for q in json.loads(run_tool(["tc", "-s", "-j", "qdisc", "show", "dev", iface])):
                    if q.get("kind") == "tbf":
                        keys = ("packets", "bytes", "drops", "overlimits")
                        out[iface] = {k: int(q.get(k, 0)) for k in keys}
        return out

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["server"] = {"ip": self.server_ip, "iface": SERVER_IFACE}
        out["router"] = {
            "ips": dict(_ROUTER_IPS),
            "ifaces": {"client": ROUTER_CLIENT_IFACE, "server": ROUTER_SERVER_IFACE},
            "qdiscs": [
                " ".join(cmd[1:])
                for iface in (ROUTER_SERVER_IFACE, ROUTER_CLIENT_IFACE)
                for cmd in shaping_commands(iface, self.shaping, self.mtu)
            ],
        }
        if self.shaping.rate:
            out["router"]["queue_stats"] = self.queue_stats()
        out["topology"] = "client - router - server"
        return out

    def close(self) -> None:
        fd = getattr(self, "_router_fd", None)
        if fd is not None:
            os.close(fd)
            self._router_fd = None
        super().close()


def shaping_commands(iface: str, shaping: Shaping, mtu: int) -> list[list[str]]:
    """The ``tc`` commands that shape one of the router's egresses.

    Rate only: ``tbf`` as the root qdisc. With a delay: ``netem delay`` as the root and the
    tbf as its child (handle 1:, parent 1:1), so packets wait out the delay and then queue
    for the link.

    Args:
        iface: the router's interface.
        shaping: a `labchat.capture.shaping.Shaping`.
        mtu: the link MTU (tbf's burst is two full frames).

    Returns:
        The command lines, in order.
    """
    cmds: list[list[str]] = []
    parent = ["root"]
    if shaping.delay_ms:
        cmds.append(["tc", "qdisc", "add", "dev", iface, "root", "handle", "1:", "netem",
                     "delay", f"{shaping.delay_ms:g}ms"])  # fmt: skip
        parent = ["parent", "1:1", "handle", "10:"]
    if shaping.rate:
        cmds.append(["tc", "qdisc", "add", "dev", iface, *parent, *tbf_args(shaping, mtu)])
    return cmds
