"""The lab network: two hosts on a 1500-byte Ethernet link that can be slowed down and made lossy.

Loopback is a poor teacher of TCP: its MTU is 65536, so the MSS is 65495 and nothing is ever
lost. This module builds a tiny two-host network instead, without root:

::

    private user namespace (unshare --user --map-root-user --net)
    +-------------------------------+        +-------------------------------+
    | "server" netns                |  veth  | "client" netns                |
    |   veth-s 10.77.0.2/24 ========|========|== veth-c 10.77.0.1/24        |
    |   capture here (libpcap)      |  1500  |                               |
    +-------------------------------+        +-------------------------------+

The capture child of :mod:`labchat.capture.child` already lives in a private user + network
namespace; that namespace is the server's host. The client's host is a second network
namespace, made by a short-lived thread that calls ``unshare(CLONE_NEWNET)`` and keeps a file
descriptor on it. Network namespaces belong to threads, not processes (setns(2)), so code that
must run "on the client" switches its thread there for a moment (:meth:`LabNetwork.client`):
a socket created there stays in the client's namespace for its whole life.

Shaping the link (:class:`labchat.capture.shaping.Shaping`):

* a rate limit: ``tc qdisc tbf`` on both veth ends;
* an added delay: ``tc qdisc netem``, only where the kernel has ``sch_netem`` (many minimal and
  cloud kernels do not; :func:`features` says, and asking for a delay then raises
  :class:`NetworkError` with that message);
* deterministic loss (:class:`labchat.capture.shaping.Drop`): nftables rules that drop the
  Nth SYN, data segment, FIN or pure ACK of one direction, counted with ``numgen inc`` (a
  per-rule counter that starts at 0), so a lesson shows the same event every run;
* random loss at a rate: ``numgen random mod 100 < N``.

Where a segment is lost matters for what the capture shows. The capture point is the server's
interface. A segment travelling towards a host is dropped at that host's *ingress* (the
``prerouting`` hook), after packet taps have seen it: the capture shows the segment, and then
what its loss causes (duplicate ACKs, a retransmission), as a tap on the wire just before the
loss would. A rule can also drop at the sender's *egress* (``output``): then the segment never
reaches the wire, which is what stopping the kernel's RST in the handshake-by-hand lesson needs.

The scenarios that use this network, and their capture, live in
:mod:`labchat.capture.network`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .child import bring_up_loopback
from .modes import DEFAULT_PORT, PROJECT_ROOT, private_unavailable, unshare_command
from .shaping import C2S, DEEP_QUEUE, Drop, Shaping, nft_script, tbf_args

__all__ = [
    "CLIENT_IFACE",
    "CLIENT_IP",
    "DEFAULT_PORT",
    "MTU",
    "SERVER_IFACE",
    "SERVER_IP",
    "LabNetwork",
    "NetworkError",
    "features",
    "in_netns",
    "new_netns",
    "probe_features_here",
    "qdisc_available",
    "run_tool",
]

CLIENT_IP = "10.77.0.1"
SERVER_IP = "10.77.0.2"
PREFIX = 24
#: Ethernet's MTU: the MSS becomes 1500 - 20 (IP) - 20 (TCP) = 1460.
MTU = 1500
CLIENT_IFACE = "veth-c"
SERVER_IFACE = "veth-s"

_CLONE_NEWNET = 0x40000000


class NetworkError(RuntimeError):
    """The lab network cannot be built or shaped as asked (tool or kernel feature missing)."""


# --------------------------------------------------------------------------------------------
# Namespaces, by file descriptor
# --------------------------------------------------------------------------------------------


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetworkError(f"setns(CLONE_NEWNET) failed: {os.strerror(err)}")


def new_netns() -> int:
    """A new network namespace, as an open fd (the namespace lives as long as the fd).

    Raises:
        NetworkError: the kernel refused (no CAP_SYS_ADMIN in this user namespace).
    """
    out: dict[str, Any] = {}

    def make() -> None:
        try:
            if _libc().unshare(_CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise NetworkError(f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}")
            out["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        except BaseException as exc:  # reported in the calling thread
            out["error"] = exc

    # A throwaway thread: it is the only thread that ever enters the new namespace this way.
    t = threading.Thread(target=make, name="labchat-netns")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["fd"]


@contextlib.contextmanager
def in_netns(fd: int) -> Iterator[None]:
    """Run the body (and processes it starts) in another network namespace; this thread only.

    Args:
        fd: an open namespace file descriptor (from `new_netns`).
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def run_tool(cmd: Sequence[str], *, input: str | None = None) -> str:
    """Run ``ip``, ``tc``, ``nft`` or ``iptables`` (found in the sbin directories too).

    Args:
        cmd: the command line.
        input: text for its standard input.

    Returns:
        Its standard output.

    Raises:
        NetworkError: the tool is not installed (the message names the package), or it failed
            (the message carries the first line it printed).
    """
    exe = shutil.which(cmd[0], path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe is None:
        raise NetworkError(f"`{cmd[0]}` is not installed ({_PACKAGE_OF.get(cmd[0], cmd[0])})")
    proc = subprocess.run([exe, *cmd[1:]], input=input, capture_output=True, text=True, timeout=20)
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise NetworkError(f"{' '.join(cmd)}: {detail[0] if detail else proc.returncode}")
    return proc.stdout


_PACKAGE_OF = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables", "iptables": "iptables"}

# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class LabNetwork:
    """Two hosts joined by a veth pair, built inside the current (private) network namespace.

    Two new network namespaces are the hosts: the server (``10.77.0.2`` on ``veth-s``) and the
    client (``10.77.0.1`` on ``veth-c``); the calling process's own namespace is left alone.
    Use it as a context manager; closing it lets both namespaces, their veth ends, qdiscs,
    firewall rules and sysctls go.

    Args:
        shaping: what to do to the link (rate, delay, loss, drops).
        port: the server's TCP port: drop and loss rules only touch this connection.
        mtu: the link MTU.
        sysctls: kernel settings per host (``client``, ``server``), e.g. to turn a timer off.

    Raises:
        NetworkError: a tool is missing or the kernel refuses a feature (the message says which).
    """

    server_ip = SERVER_IP
    client_ip = CLIENT_IP
    server_iface = SERVER_IFACE
    client_iface = CLIENT_IFACE

    def __init__(
        self,
        shaping: Shaping | None = None,
        *,
        port: int = DEFAULT_PORT,
        mtu: int = MTU,
        sysctls: Mapping[str, Mapping[str, str]] | None = None,
    ):
        self.shaping = shaping or Shaping()
        self.port = port
        self.mtu = mtu
        #: Kernel settings per host (``{"client": {"net.ipv4.tcp_early_retrans": "0"}}``),
        #: written to that host's /proc/sys once the link is up.
        self.sysctls = {host: dict(values) for host, values in (sysctls or {}).items()}
        self._client_fd: int | None = None
        self._server_fd: int | None = None
        self._rules: dict[str, list[tuple[str, Drop | None]]] = {"server": [], "client": []}
        #: The nftables ruleset loaded on each host (``nft -f``), by host.
        self.firewall: dict[str, str] = {}
        #: Where the rate limit's queue is (server->client direction), if there is one.
        self.bottleneck: str | None = None
        #: Anything that did not go as planned but did not stop the network either.
        self.notes: list[str] = []

    # ---- building ------------------------------------------------------------------------

    def start(self) -> LabNetwork:
        self._server_fd = new_netns()
        self._client_fd = new_netns()
        try:
            fd_path = f"/proc/{os.getpid()}/fd/{self._client_fd}"
            for host, iface, ip in (("server", SERVER_IFACE, SERVER_IP),
                                    ("client", CLIENT_IFACE, CLIENT_IP)):  # fmt: skip
                with self._in(host):
                    bring_up_loopback()
                    if host == "server":
                        run_tool(["ip", "link", "add", SERVER_IFACE, "mtu", str(self.mtu), "type",
                              "veth", "peer", "name", CLIENT_IFACE, "mtu", str(self.mtu),
                              "netns", fd_path])  # fmt: skip
                    self._link_up(iface, f"{ip}/{PREFIX}")
            self._wait_for_links()
            self._apply(self.shaping)
            self._apply_sysctls()
        except BaseException:
            self.close()
            raise
        return self

    def _link_up(self, iface: str, address: str) -> None:
        """Give ``iface`` (on the current thread's host) its address and bring it up."""
        # One segment per packet: veth would otherwise pass TCP's 64 KB GSO super-packets
        # along unsplit, and the capture would show them whole.
        run_tool(["ip", "link", "set", "dev", iface, "gso_max_segs", "1",
                  "gso_max_size", str(self.mtu)])  # fmt: skip
        run_tool(["ip", "addr", "add", address, "dev", iface])
        run_tool(["ip", "link", "set", iface, "up"])

    def _wait_for_links(
        self,
        links: Sequence[tuple[str, str]] = (("server", SERVER_IFACE), ("client", CLIENT_IFACE)),
        timeout: float = 3.0,
    ) -> None:
        """Wait until every ``(host, interface)`` in ``links`` is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for host, iface in links:
                with self._in(host):
                    # Not /sys/class/net: sysfs shows the namespace it was mounted in.
                    states.append("state UP" in run_tool(["ip", "-o", "link", "show", iface]))
            if all(states):
                return
            time.sleep(0.02)
        raise NetworkError(f"the lab network's links did not come up within {timeout} s")

    def _apply_sysctls(self) -> None:
        for host, values in self.sysctls.items():
            with self._in(host):
                for name, value in values.items():
                    # /proc/sys/net belongs to the network namespace of the thread that opens it.
                    path = "/proc/sys/" + name.replace(".", "/")
                    try:
                        with open(path, "w") as fh:
                            fh.write(f"{value}\n")
                    except OSError as exc:
                        raise NetworkError(f"sysctl {name}={value} on the {host}: {exc}") from None

    def _apply(self, shaping: Shaping) -> None:
        if shaping.delay_ms:
            if not qdisc_available("netem"):
                raise NetworkError(
                    "this kernel has no sch_netem (tc: 'Specified qdisc kind is unknown'), so "
                    "an added delay is not available here; rate limits (tbf) and loss "
                    "(nftables) still work"
                )
            for ns, iface in (("server", SERVER_IFACE), ("client", CLIENT_IFACE)):
                cmd = ["tc", "qdisc", "add", "dev", iface, "root", "netem",
                       "delay", f"{shaping.delay_ms}ms"]  # fmt: skip
                if shaping.rate:
                    cmd += ["rate", shaping.rate]
                with self._in(ns):
                    run_tool(cmd)
        elif shaping.rate:
            # Both directions are shaped on the client host, the far end of the link from the
            # capture point: packet taps see a packet after the sender's qdisc, so a queue at
            # the server would hide itself (the RTT and the bytes in flight the server's
            # capture shows would stay tiny). c->s: tbf on veth-c. s->c: veth-c's ingress is
            # redirected to an IFB device, whose egress tbf is the bottleneck queue.
            tbf = tbf_args(shaping, self.mtu)
            with self.client():
                run_tool(["tc", "qdisc", "add", "dev", CLIENT_IFACE, "root", *tbf])
                try:
                    run_tool(["ip", "link", "add", "ifb0", "type", "ifb"])
                    run_tool(["ip", "link", "set", "ifb0", "up"])
                    run_tool(["tc", "qdisc", "add", "dev", CLIENT_IFACE, "handle", "ffff:",
                              "ingress"])  # fmt: skip
                    run_tool(["tc", "filter", "add", "dev", CLIENT_IFACE, "parent", "ffff:",
                          "protocol", "all", "u32", "match", "u32", "0", "0",
                          "action", "mirred", "egress", "redirect", "dev", "ifb0"])  # fmt: skip
                    run_tool(["tc", "qdisc", "add", "dev", "ifb0", "root", *tbf])
                    self.bottleneck = "client ingress (ifb0)"
                except NetworkError as exc:
                    self.notes.append(
                        f"no IFB/u32/mirred here ({exc}): server->client traffic is shaped on "
                        "the server's interface, in front of the capture point"
                    )
                    self.bottleneck = f"server egress ({SERVER_IFACE})"
            if self.bottleneck.startswith("server"):
                with self.server():
                    run_tool(["tc", "qdisc", "add", "dev", SERVER_IFACE, "root", *tbf])
        if shaping.drops or shaping.loss_percent:
            self._firewall(shaping)

    def _firewall(self, shaping: Shaping) -> None:
        rules: dict[str, list[tuple[str, Drop | None]]] = {"server": [], "client": []}
        for drop in shaping.drops:
            # Ingress: the receiving host. Egress: the sending host.
            receiver = "server" if drop.direction == C2S else "client"
            sender = "client" if drop.direction == C2S else "server"
            host = receiver if drop.at == "ingress" else sender
            rules[host].append((drop.at, drop))
        if shaping.loss_percent:
            rules["server"].append(("ingress", None))
            rules["client"].append(("ingress", None))
        for host, host_rules in rules.items():
            if host_rules:
                script = nft_script(host_rules, self.port, shaping.loss_percent)
                self.firewall[host] = script
                with self._in(host):
                    try:
                        run_tool(["nft", "-f", "-"], input=script)
                    except NetworkError as exc:
                        raise NetworkError(f"nftables rules for the {host}: {exc}") from None
        self._rules = rules

    def dropped(self) -> list[dict[str, Any]]:
        """How many packets each drop rule has dropped so far."""
        out = []
        for host, host_rules in self._rules.items():
            if not host_rules:
                continue
            with self._in(host):
                listing = json.loads(run_tool(["nft", "-j", "list", "table", "inet", "labchat"]))
            counts: dict[str, int] = {}
            for item in listing.get("nftables", []):
                rule = item.get("rule")
                if not rule:
                    continue
                for expr in rule.get("expr", []):
                    if "counter" in expr and rule.get("comment"):
                        counts[rule["comment"]] = expr["counter"]["packets"]
            for i, (_, drop) in enumerate(host_rules):
                what = drop.describe() if drop else "random loss"
                out.append({"host": host, "rule": what, "dropped": counts.get(f"r{i}", 0)})
        return out

    # ---- using ---------------------------------------------------------------------------

    def _in(self, host: str) -> contextlib.AbstractContextManager[None]:
        fd = self._client_fd if host == "client" else self._server_fd
        if fd is None:
            raise NetworkError("the lab network is not started")
        return in_netns(fd)

    def client(self) -> contextlib.AbstractContextManager[None]:
        """Run the body on the client host (this thread only; sockets made there stay there).

        Threads started in the body start on the client host too.
        """
        return self._in("client")

    def server(self) -> contextlib.AbstractContextManager[None]:
        """Run the body on the server host (this thread, and threads started in the body)."""
        return self._in("server")

    def client_command(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a program on the client host (a whole process in the client's namespace)."""
        with self.client():
            return subprocess.run(list(argv), **kwargs)

    def describe(self) -> dict[str, Any]:
        return {
            "client": {"ip": CLIENT_IP, "iface": CLIENT_IFACE},
            "server": {"ip": SERVER_IP, "iface": SERVER_IFACE},
            "mtu": self.mtu,
            "mss": self.mtu - 40,
            "shaping": self.shaping.describe(),
            "rate_bps": self.shaping.rate_bps,
            "queue_bytes": (self.shaping.queue_bytes or DEEP_QUEUE) if self.shaping.rate else None,
            "delay_ms": self.shaping.delay_ms,
            "firewall": dict(self.firewall),
            "bottleneck": self.bottleneck,
            "sysctls": {host: dict(v) for host, v in self.sysctls.items()},
            "notes": list(self.notes),
        }

    def close(self) -> None:
        for attr in ("_client_fd", "_server_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)

    def __enter__(self) -> LabNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def qdisc_available(kind: str) -> bool:
    """Whether tc can create a ``kind`` qdisc (``netem``, ``tbf``) in this user namespace.

    Tried for real, on the loopback of a throwaway network namespace.
    """
    return _probe_qdisc(kind) is None


def _probe_qdisc(kind: str) -> str | None:
    fd = new_netns()
    try:
        with in_netns(fd):
            bring_up_loopback()
            args = {"netem": ["delay", "1ms"], "tbf": ["rate", "1mbit", "burst", "4k",
                                                       "latency", "50ms"]}[kind]  # fmt: skip
            try:
                run_tool(["tc", "qdisc", "add", "dev", "lo", "root", kind, *args])
            except NetworkError as exc:
                return str(exc)
        return None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Feature probe
# --------------------------------------------------------------------------------------------


def _try_in_new_netns(cmd: Sequence[str], *, input: str | None = None) -> str | None:
    """Run one tool in a throwaway network namespace: None if it worked, else why not."""
    fd = new_netns()
    try:
        with in_netns(fd):
            run_tool(cmd, input=input)
        return None
    except Exception as exc:
        return str(exc)
    finally:
        os.close(fd)


def probe_features_here() -> dict[str, Any]:
    """Try every feature inside this (private) namespace; return what worked and why not."""
    out: dict[str, Any] = {"kernel": platform.release()}
    notes: dict[str, str] = {}
    try:
        with LabNetwork():
            out["veth"] = True
    except Exception as exc:
        out["veth"] = False
        notes["veth"] = str(exc)
    for kind in ("tbf", "netem"):
        try:
            why = _probe_qdisc(kind)
        except Exception as exc:
            why = str(exc)
        out[kind] = why is None
        if why:
            notes[kind] = why
    if not out["netem"]:
        notes["netem"] = (
            "no sch_netem in this kernel: an added delay is not available "
            f"({notes.get('netem', '')})"
        )
    # What the drop rules use: a chain, numgen inc (nth segment), numgen random (loss rate).
    script = (
        "table inet probe {\n  chain c {\n    type filter hook output priority 0;\n"
        "    numgen inc mod 10 0 counter\n    numgen random mod 100 < 5 counter\n  }\n}\n"
    )
    tries = (
        ("nftables", ["nft", "-f", "-"], script, ""),
        ("ifb", ["ip", "link", "add", "ifb0", "type", "ifb"], None,
         " (the rate limit's queue then sits at the server, before the tap)"),
        ("iptables", ["iptables", "-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST",
                      "-j", "DROP"], None, ""),
    )  # fmt: skip
    for feature, cmd, stdin, consequence in tries:
        why = _try_in_new_netns(cmd, input=stdin)
        out[feature] = why is None
        if why is not None:
            notes[feature] = why + consequence
    out["notes"] = notes
    return out


def features(*, timeout: float = 30.0) -> dict[str, Any]:
    """What the lab network can do on this machine, tried for real in a private namespace.

    Returns:
        ``{"private": bool, "veth", "tbf", "netem", "ifb", "nftables", "iptables": bool,
        "kernel", "notes": {feature: why not}}``. ``private`` is False (and the rest
        missing) when user namespaces are not available at all.
    """
    why = private_unavailable()
    if why is not None:
        return {"private": False, "kernel": platform.release(), "notes": {"private": why}}
    code = (
        "import json,sys;sys.path.insert(0,sys.argv[1]);"
        "from labchat.capture.netns import probe_features_here;"
        "print(json.dumps(probe_features_here()))"
    )
    unshare = unshare_command()
    if unshare is None:
        raise NetworkError("no `unshare` binary on PATH (install util-linux)")
    cmd = [*unshare, sys.executable, "-c", code, str(PROJECT_ROOT)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"private": False, "kernel": platform.release(), "notes": {"private": tail}}
    return {"private": True, **json.loads(proc.stdout.strip().splitlines()[-1])}
