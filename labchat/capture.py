"""Getting packets: a private network namespace, host loopback, or the shipped captures.

Three ways, tried in this order by ``mode="auto"``:

``private``
    The scenario runs in a child process inside a fresh user + network namespace
    (``unshare --user --map-root-user --net``). The child is "root" only inside that namespace,
    brings its own ``lo`` up and sniffs it. That loopback carries nothing but the lab's traffic,
    and no real privilege is needed: an ordinary user can do it on most Linux kernels.
``host``
    The host's loopback, which needs root or CAP_NET_RAW. This is what a live, interactive
    session uses (``labchat capture live``): people chat in terminals while we listen.
``offline``
    The reference captures shipped in ``captures/<scenario>/``.

Whichever mode is chosen, `CaptureMode` says why, and why each other mode was not used.

Two traps this module avoids (see docs in /work/shared/GUIDE.md):

* A raw packet socket on Linux ``lo`` sees every packet twice, once outgoing and once incoming
  (scapy issue #1702). libpcap drops the outgoing copy on loopback; without libpcap we use a
  packet socket that drops ``PACKET_OUTGOING`` ourselves.
* scapy compiles ``filter=`` with libpcap; without it the sniffer thread dies quietly and the
  error only appears at ``stop()``. We use BPF only when libpcap is present, a Python-side
  filter otherwise, and every sniffer error is raised as `CaptureError`.

Captures are written as pcapng with the TLS key log embedded in a Decryption Secrets Block
(pcapng spec, section 4.7: block type 0x0000000A, secrets type 0x544c534b "TLSK"), so
Wireshark/tshark decrypt them with no settings; the key log is also written beside the
capture as ``keys.log`` (NSS key log format).
"""

from __future__ import annotations

import contextlib
import ctypes.util
import fcntl
import json
import logging
import os
import platform
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .pcapng import write_pcapng

__all__ = [
    "MODES",
    "DEFAULT_PORT",
    "CaptureError",
    "CaptureMode",
    "CaptureResult",
    "Sniffer",
    "detect_mode",
    "libpcap_available",
    "run_scenario",
    "run_scenarios",
    "capture_live",
    "load_reference",
    "reference_dir",
    "write_pcapng",
]

#: Capture modes, in the order ``auto`` tries them (``auto`` itself first).
MODES = ("auto", "private", "host", "offline")

#: Server port scenarios use inside a private namespace. Nothing else lives there, so a fixed
#: port is safe and makes the reference captures look the same every time.
DEFAULT_PORT = 5050

#: Environment variable that overrides ``mode="auto"`` (CI sets it to ``offline``).
MODE_ENV = "LABCHAT_CAPTURE_MODE"
#: Environment variable that pretends libpcap is missing (to exercise the Python-filter path).
NO_PCAP_ENV = "LABCHAT_CAPTURE_NO_PCAP"
#: Environment variable that points at another reference capture directory.
CAPTURES_ENV = "LABCHAT_CAPTURES_DIR"

# After the scenario's last step we wait until the wire has been quiet this long before we
# stop the sniffer: libpcap hands packets over in blocks with a 100 ms timeout, so a shorter
# wait could lose the last FIN/ACK.
_QUIET_S = 0.25
_DRAIN_MAX_S = 2.0
_START_TIMEOUT_S = 5.0
_CHILD_TIMEOUT_S = 120.0

_PKG_ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger(__name__)


class CaptureError(RuntimeError):
    """A capture could not be made (mode unavailable, sniffer failed, child crashed)."""


# --------------------------------------------------------------------------------------------
# Mode detection
# --------------------------------------------------------------------------------------------


@dataclass
class CaptureMode:
    """The capture mode used, why, and why each other mode was not used.

    Attributes:
        name: one of ``private``, ``host``, ``offline``.
        reason: why this mode was chosen.
        unavailable: for every other mode, why it was not used.
    """

    name: str
    reason: str
    unavailable: dict[str, str] = field(default_factory=dict)

    def explain(self) -> str:
        """One paragraph for a terminal or a notebook."""
        lines = [f"capture mode: {self.name} ({self.reason})"]
        for other, why in self.unavailable.items():
            lines.append(f"  not {other}: {why}")
        return "\n".join(lines)


def _euid() -> int:
    return os.geteuid()


def _read_sysctl(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


# What the probe child does: exactly what the capture child needs (lo up, packet socket).
_PROBE_CODE = (
    "import socket,sys;sys.path.insert(0,sys.argv[1]);"
    "from labchat.capture import _bring_up_loopback;_bring_up_loopback();"
    "socket.socket(socket.AF_PACKET,socket.SOCK_RAW,0).close()"
)


def _unshare_command() -> list[str] | None:
    exe = shutil.which("unshare")
    if exe is None:
        return None
    return [exe, "--user", "--map-root-user", "--net", "--"]


def _probe_private_namespace() -> tuple[bool, str]:
    """Really try: enter a user+net namespace, bring lo up, open a packet socket."""
    cmd = _unshare_command()
    if cmd is None:
        return False, "no unshare binary"
    try:
        proc = subprocess.run(
            [*cmd, sys.executable, "-c", _PROBE_CODE, str(_PKG_ROOT)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if proc.returncode == 0:
        return True, ""
    err = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return False, err


def _private_unavailable() -> str | None:
    """Why the private namespace mode cannot be used here, or None if it can."""
    if not sys.platform.startswith("linux"):
        return f"user and network namespaces are Linux-only (this is {sys.platform})"
    if _unshare_command() is None:
        return "no `unshare` binary on PATH (install util-linux)"
    max_ns = _read_sysctl("/proc/sys/user/max_user_namespaces")
    if max_ns is not None and max_ns.isdigit() and int(max_ns) == 0:
        return "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
    if _read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0" and _euid() != 0:
        return (
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0; "
            "`sudo sysctl kernel.unprivileged_userns_clone=1` enables them)"
        )
    ok, err = _probe_private_namespace()
    if ok:
        return None
    if _read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return (
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns=1, the Ubuntu 23.10+ default; "
            f"unshare said: {err})"
        )
    return f"could not enter a user+network namespace: {err}"


def _host_unavailable() -> str | None:
    """Why host loopback capture cannot be used here, or None if it can."""
    if not sys.platform.startswith("linux"):
        return f"packet sockets are Linux-only here (this is {sys.platform})"
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        return (
            f"capturing on the host needs root or CAP_NET_RAW (you are uid {_euid()}); "
            "use sudo, or the private mode"
        )
    except OSError as exc:
        return f"cannot open a packet socket: {exc}"
    return None


def reference_dir() -> Path:
    """The directory holding the shipped reference captures (``captures/``)."""
    env = os.environ.get(CAPTURES_ENV)
    return Path(env) if env else _PKG_ROOT / "captures"


def _offline_unavailable(scenario: str | None = None) -> str | None:
    root = reference_dir()
    if scenario is not None:
        if not (root / scenario / "capture.pcapng").is_file():
            return f"no reference capture {root / scenario / 'capture.pcapng'}"
        return None
    if not any(root.glob("*/capture.pcapng")):
        return f"no reference captures in {root}"
    return None


# Looked up at call time (not bound here) so tests can simulate a restricted machine.
_CHECKS: dict[str, Callable[[], str | None]] = {
    "private": lambda: _private_unavailable(),
    "host": lambda: _host_unavailable(),
    "offline": lambda: _offline_unavailable(),
}

_WHY_CHOSEN = {
    "private": "a private user+network namespace: its loopback carries only the lab's traffic",
    "host": "host loopback with capture rights",
    "offline": "the shipped reference captures",
}


def detect_mode(preferred: str = "auto") -> CaptureMode:
    """Choose how to get packets, and say why.

    Args:
        preferred: ``auto`` (try private, host, offline in that order; the environment
            variable ``LABCHAT_CAPTURE_MODE`` overrides it), or one mode to insist on.

    Returns:
        The chosen `CaptureMode`, with the reason each other mode was not used.

    Raises:
        ValueError: unknown mode name.
        CaptureError: an explicitly requested mode is not available here.
    """
    if preferred not in MODES:
        raise ValueError(f"unknown capture mode {preferred!r}; choose one of {MODES}")
    forced_by = None
    if preferred == "auto":
        env = os.environ.get(MODE_ENV, "").strip()
        if env and env != "auto":
            if env not in MODES:
                raise ValueError(f"{MODE_ENV}={env!r} is not one of {MODES}")
            preferred, forced_by = env, f"{MODE_ENV}={env}"
    if preferred != "auto":
        why_not = _CHECKS[preferred]()
        if why_not is not None:
            via = f" (from {forced_by})" if forced_by else ""
            raise CaptureError(f"capture mode {preferred!r}{via} is not available: {why_not}")
        reason = f"requested{f' by {forced_by}' if forced_by else ''}: {_WHY_CHOSEN[preferred]}"
        others = {m: "not tried: a mode was requested" for m in _CHECKS if m != preferred}
        return CaptureMode(preferred, reason, others)
    unavailable: dict[str, str] = {}
    chosen: str | None = None
    for name, check in _CHECKS.items():
        if chosen is not None:
            why_not = check()
            if why_not is None:
                unavailable[name] = f"available, but {chosen} is preferred"
            else:
                unavailable[name] = why_not
            continue
        why_not = check()
        if why_not is None:
            chosen = name
        else:
            unavailable[name] = why_not
    if chosen is None:
        raise CaptureError(
            "no way to get packets: " + "; ".join(f"{m}: {why}" for m, why in unavailable.items())
        )
    if chosen == "offline":
        reason = "live capture is not possible here, using " + _WHY_CHOSEN["offline"]
    else:
        reason = _WHY_CHOSEN[chosen]
    return CaptureMode(chosen, reason, unavailable)


# --------------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------------


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
        with _quiet_scapy():
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


def _load_layers() -> None:
    """Register Ethernet/IP/TCP with scapy before any socket or file is opened.

    A scapy socket or reader looks the link type up once, when it opens; if the layers are
    not imported yet, every packet comes back as undissected ``Raw``.
    """
    import scapy.layers.inet  # noqa: F401
    import scapy.layers.inet6  # noqa: F401
    import scapy.layers.l2  # noqa: F401


@contextlib.contextmanager
def _quiet_scapy() -> Iterator[None]:
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

    With libpcap the filter is a BPF program (``tcp port P``) run in the kernel; without it a
    Python ``lfilter`` does the same job after the packets are copied to us.
    """

    def __init__(self, iface: str = "lo", port: int | None = None, *, use_pcap: bool | None = None):
        _load_layers()
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
            kwargs["L2socket"] = self._socket_cls
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


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class CaptureResult:
    """One capture on disk: ``capture.pcapng``, ``keys.log`` (TLS) and ``manifest.json``.

    Attributes:
        scenario: scenario name (``live`` for a live capture).
        directory: the directory holding the files.
        pcap: the pcapng file.
        keylog: the NSS key log beside it, or None for plaintext scenarios.
        manifest: the parsed manifest.json.
        mode: how the packets were obtained this time.
    """

    scenario: str
    directory: Path
    pcap: Path
    keylog: Path | None
    manifest: dict
    mode: CaptureMode

    def packets(self) -> Any:
        """The packets as a scapy PacketList (TLS is not decrypted here; see analysis)."""
        from scapy.utils import rdpcap

        _load_layers()
        with _quiet_scapy():
            return rdpcap(str(self.pcap))

    def summary(self) -> str:
        """One line: scenario, packet count, connections, mode."""
        cap = self.manifest.get("capture", {})
        conns = self.manifest.get("connections", [])
        return (
            f"{self.scenario}: {cap.get('packets', '?')} packets, {len(conns)} connection(s), "
            f"{self.pcap}; mode {self.mode.name} ({self.mode.reason})"
        )

    @classmethod
    def from_directory(cls, directory: str | Path, mode: CaptureMode) -> CaptureResult:
        """Load a capture directory written by this module."""
        directory = Path(directory)
        manifest = json.loads((directory / "manifest.json").read_text())
        keylog = directory / "keys.log"
        return cls(
            scenario=manifest.get("scenario", directory.name),
            directory=directory,
            pcap=directory / "capture.pcapng",
            keylog=keylog if keylog.is_file() else None,
            manifest=manifest,
            mode=mode,
        )


def versions() -> dict[str, str]:
    """Versions of what shaped a capture, for its manifest."""
    try:
        import scapy

        scapy_version = scapy.__version__
    except ImportError:  # pragma: no cover - scapy is a dependency
        scapy_version = "missing"
    from labchat import __version__

    return {
        "labchat": __version__,
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "scapy": scapy_version,
        "kernel": platform.release(),
    }


def _connections(packets: Sequence[Any], server_port: int, roles: Sequence[str]) -> list[dict]:
    """Client ports in the order their SYNs hit the server port, labelled with the roles."""
    from scapy.layers.inet import TCP

    ports: list[int] = []
    for p in packets:
        if TCP in p and p[TCP].dport == server_port and (int(p[TCP].flags) & 0x12) == 0x02:
            if p[TCP].sport not in ports:
                ports.append(p[TCP].sport)
    conns = []
    for i, port in enumerate(ports):
        role = roles[i] if i < len(roles) else f"client{i + 1}"
        conns.append({"role": role, "client_port": port, "server_port": server_port})
    return conns


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_capture(
    directory: Path,
    *,
    scenario: str,
    packets: Sequence[Any],
    keylog: bytes | None,
    manifest: dict,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if keylog:
        (directory / "keys.log").write_bytes(keylog)
    else:
        (directory / "keys.log").unlink(missing_ok=True)
    write_pcapng(
        directory / "capture.pcapng",
        packets,
        keylog=keylog,
        comment=f"labchat scenario {scenario}",
    )
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _dedupe_keylog(raw: bytes) -> bytes:
    seen: list[bytes] = []
    for line in raw.splitlines():
        line = line.strip()
        if line and not line.startswith(b"#") and line not in seen:
            seen.append(line)
    return b"".join(line + b"\n" for line in seen)


def _capture_scenarios_here(
    names: Sequence[str],
    dirs: Sequence[Path],
    mode: CaptureMode,
    params: dict[str, Any],
    port: int | None,
) -> list[dict]:
    """Run scenarios in this process, sniffing ``lo``. Returns one manifest per scenario."""
    from labchat import scenarios

    manifests = []
    for name, directory in zip(names, dirs, strict=True):
        spec = scenarios.get(name)
        server_port = port or _free_port()
        with tempfile.TemporaryDirectory(prefix=f"labchat-{name}-") as tmp:
            work = Path(tmp)
            sniffer = Sniffer("lo", server_port)
            t0 = time.monotonic()
            with sniffer:  # listening before the scenario's first packet
                run = spec.func(work, port=server_port, **params)
                packets = sniffer.stop()
            elapsed = time.monotonic() - t0
            keylog = None
            if run.keylog is not None and Path(run.keylog).is_file():
                keylog = _dedupe_keylog(Path(run.keylog).read_bytes())
        manifest = {
            "scenario": name,
            "description": spec.description,
            "parameters": {"port": server_port, **params},
            "server": run.server,
            "clients": run.clients,
            "connections": _connections(packets, server_port, [c["role"] for c in run.clients]),
            "tls": run.tls,
            "transcript": run.transcript,
            "notes": run.notes,
            "capture": {
                "mode": mode.name,
                "reason": mode.reason,
                "method": sniffer.method,
                "iface": "lo",
                "filter": sniffer.bpf,
                "packets": len(packets),
                "seconds": round(elapsed, 3),
                "keylog": "keys.log" if keylog else None,
                "decryption_secrets_block": bool(keylog),
            },
            "versions": versions(),
        }
        _write_capture(directory, scenario=name, packets=packets, keylog=keylog, manifest=manifest)
        manifests.append(manifest)
    return manifests


# --------------------------------------------------------------------------------------------
# The private namespace child
# --------------------------------------------------------------------------------------------

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def _bring_up_loopback() -> None:
    """``ip link set lo up`` without iproute2: SIOCSIFFLAGS on a socket (netdevice(7))."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            ifreq = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifreq))[1]
            if not flags & _IFF_UP:
                fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    except OSError:
        ip = shutil.which("ip")
        if ip is None:
            raise
        subprocess.run([ip, "link", "set", "lo", "up"], check=True, capture_output=True)


def _child_main(argv: Sequence[str]) -> int:
    """Entry point of the capture child inside the private namespace."""
    import argparse

    parser = argparse.ArgumentParser(prog="labchat-capture-child")
    parser.add_argument("--result", required=True)
    parser.add_argument("--mode-json", required=True)
    parser.add_argument("--params-json", default="{}")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("pairs", nargs="+", help="NAME=DIR")
    args = parser.parse_args(argv)
    result: dict[str, Any]
    try:
        _bring_up_loopback()
        mode = CaptureMode(**json.loads(args.mode_json))
        names = [p.split("=", 1)[0] for p in args.pairs]
        dirs = [Path(p.split("=", 1)[1]) for p in args.pairs]
        params = json.loads(args.params_json)
        manifests = _capture_scenarios_here(names, dirs, mode, params, args.port)
        result = {"ok": True, "manifests": manifests}
    except Exception as exc:  # reported to the parent as one line
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    Path(args.result).write_text(json.dumps(result))
    return 0 if result["ok"] else 1


def _run_private(
    names: Sequence[str], dirs: Sequence[Path], mode: CaptureMode, params: dict[str, Any]
) -> None:
    cmd = _unshare_command()
    if cmd is None:
        raise CaptureError("private mode needs the `unshare` binary (util-linux)")
    port = int(params.pop("port", DEFAULT_PORT))
    with tempfile.TemporaryDirectory(prefix="labchat-capture-") as tmp:
        result_file = Path(tmp) / "result.json"
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        argv = [
            *cmd,
            sys.executable,
            "-c",
            "import sys; from labchat.capture import _child_main; "
            "sys.exit(_child_main(sys.argv[1:]))",
            "--result",
            str(result_file),
            "--mode-json",
            json.dumps(asdict(mode)),
            "--params-json",
            json.dumps(params),
            "--port",
            str(port),
            *(f"{n}={d.resolve()}" for n, d in zip(names, dirs, strict=True)),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_PKG_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S, env=env
            )
        except subprocess.TimeoutExpired as exc:
            raise CaptureError(f"capture child timed out after {exc.timeout} s") from None
        if result_file.is_file():
            result = json.loads(result_file.read_text())
            if not result.get("ok"):
                raise CaptureError(f"capture in the private namespace failed: {result['error']}")
            return
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise CaptureError(f"capture child failed before reporting: {tail}")


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def run_scenarios(
    names: Sequence[str],
    out: str | Path,
    *,
    mode: str = "auto",
    **params: Any,
) -> list[CaptureResult]:
    """Capture several scenarios into ``out/<name>/`` (one namespace child for all of them).

    Args:
        names: scenario names (see `labchat.scenarios.SCENARIOS`).
        out: parent directory.
        mode: capture mode (see `detect_mode`).
        **params: passed to every scenario (``port=`` sets the server port).

    Returns:
        One `CaptureResult` per scenario, in order.

    Raises:
        KeyError: unknown scenario.
        CaptureError: the capture failed, or the requested mode is unavailable.
    """
    from labchat import scenarios

    for name in names:
        scenarios.get(name)
    out = Path(out)
    dirs = [out / name for name in names]
    return _run(names, dirs, mode, params)


def _run(
    names: Sequence[str], dirs: Sequence[Path], mode: str, params: dict[str, Any]
) -> list[CaptureResult]:
    chosen = detect_mode(mode)
    if chosen.name == "offline":
        results = []
        for name, d in zip(names, dirs, strict=True):
            ref = load_reference(name)
            d.mkdir(parents=True, exist_ok=True)
            for f in ("capture.pcapng", "keys.log", "manifest.json"):
                src = ref.directory / f
                if src.is_file() and src.resolve() != (d / f).resolve():
                    shutil.copyfile(src, d / f)
            results.append(CaptureResult.from_directory(d, chosen))
        return results
    if chosen.name == "private":
        _run_private(names, dirs, chosen, dict(params))
    else:
        port = params.pop("port", None)
        _capture_scenarios_here(names, dirs, chosen, params, port)
    return [CaptureResult.from_directory(d, chosen) for d in dirs]


def run_scenario(
    name: str, out: str | Path | None = None, *, mode: str = "auto", **params: Any
) -> CaptureResult:
    """Run one scripted chat and capture it.

    Args:
        name: scenario name, e.g. ``tls13-chat`` (`labchat.scenarios.SCENARIOS` lists them).
        out: directory for capture.pcapng, keys.log and manifest.json; a new temporary
            directory if None.
        mode: ``auto``, ``private``, ``host`` or ``offline`` (see `detect_mode`).
        **params: scenario parameters (``port=`` sets the server port; ``pause=`` the gap
            between steps).

    Returns:
        The `CaptureResult`; ``result.mode`` says how the packets were obtained and why.

    Raises:
        KeyError: unknown scenario.
        CaptureError: the capture failed, or the requested mode is unavailable.
    """
    from labchat import scenarios

    scenarios.get(name)
    directory = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"labchat-{name}-"))
    return _run([name], [directory], mode, params)[0]


def capture_live(
    port: int,
    out: str | Path,
    *,
    duration: float | None = None,
    count: int | None = None,
    iface: str = "lo",
    keylog: str | Path | None = None,
    on_start: Callable[[], None] | None = None,
) -> CaptureResult:
    """Capture a live session on host loopback until Ctrl-C, ``duration`` or ``count``.

    Needs root or CAP_NET_RAW (host mode): the people chatting are in the host's network.

    Args:
        port: the labchat server's port (``tcp port P`` is captured).
        out: directory for capture.pcapng, manifest.json (and keys.log).
        duration: stop after this many seconds.
        count: stop after this many packets.
        iface: interface to sniff.
        keylog: a TLS key log written by the server or clients (``--keylog``); embedded as a
            DSB and copied beside the capture.
        on_start: called once the sniffer is listening.

    Returns:
        The `CaptureResult`.

    Raises:
        CaptureError: no capture rights, or the sniffer failed.
    """
    why_not = _host_unavailable()
    if why_not is not None:
        raise CaptureError(f"live capture needs host mode, which is not available: {why_not}")
    mode = CaptureMode(
        "host",
        "live session on host loopback (people chat from terminals in the host's network)",
        {
            "private": "a namespace would hide the terminals' traffic",
            "offline": "a live session was asked for",
        },
    )
    out = Path(out)
    sniffer = Sniffer(iface, port)
    t0 = time.monotonic()
    interrupted = False
    with sniffer:  # listening from here on
        if on_start:
            on_start()
        try:
            while True:
                if duration is not None and time.monotonic() - t0 >= duration:
                    break
                if count is not None and sniffer.count >= count:
                    break
                time.sleep(0.05)
        except KeyboardInterrupt:
            interrupted = True
        packets = sniffer.stop(quiet=0.0 if interrupted else _QUIET_S)
    if count is not None:
        packets = packets[:count]
    key_bytes = None
    if keylog is not None and Path(keylog).is_file():
        key_bytes = _dedupe_keylog(Path(keylog).read_bytes())
    manifest = {
        "scenario": "live",
        "parameters": {"port": port, "duration": duration, "count": count},
        "server": {"host": "127.0.0.1", "port": port, "role": "server"},
        "clients": [],
        "connections": _connections(packets, port, []),
        "tls": None,
        "transcript": [],
        "capture": {
            "mode": mode.name,
            "reason": mode.reason,
            "method": sniffer.method,
            "iface": iface,
            "filter": sniffer.bpf,
            "packets": len(packets),
            "seconds": round(time.monotonic() - t0, 3),
            "keylog": "keys.log" if key_bytes else None,
            "decryption_secrets_block": bool(key_bytes),
            "stopped_by": "ctrl-c" if interrupted else ("count" if count else "duration"),
        },
        "versions": versions(),
    }
    _write_capture(out, scenario="live", packets=packets, keylog=key_bytes, manifest=manifest)
    return CaptureResult.from_directory(out, mode)


def load_reference(name: str) -> CaptureResult:
    """The shipped reference capture ``captures/<name>/``.

    Raises:
        CaptureError: there is no reference capture of that name.
    """
    why_not = _offline_unavailable(name)
    if why_not is not None:
        raise CaptureError(why_not)
    mode = CaptureMode("offline", f"shipped reference capture {reference_dir() / name}", {})
    return CaptureResult.from_directory(reference_dir() / name, mode)
