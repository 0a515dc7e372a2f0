"""Captures on disk: ``capture.pcapng``, ``keys.log`` and ``manifest.json``, and the one manifest.

Every capture labchat makes (a loopback scenario, a live session, a lab-network scenario) is a
directory with the same three files, written by `write_capture` from a manifest built by
`build_manifest`, plus any file the scenario keeps beside them (listed in the manifest's
``files``, e.g. the kernel's ``tcp_info.csv`` samples); `CaptureResult` reads one back. The
shipped reference captures in ``captures/<scenario>/`` have the same shape (`load_reference`,
`copy_references`).

The pcapng carries the TLS key log in a Decryption Secrets Block (pcapng spec, section 4.7),
so Wireshark/tshark decrypt it with no settings; the key log is also written beside the
capture as ``keys.log`` (NSS key log format).
"""

from __future__ import annotations

import json
import platform
import shutil
import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .modes import CaptureError, CaptureMode, offline_unavailable, reference_dir
from .pcapng import write_pcapng
from .sniffer import load_layers, quiet_scapy

if TYPE_CHECKING:
    from .scenarios import ScenarioRun
    from .sniffer import Sniffer

__all__ = [
    "CaptureResult",
    "build_manifest",
    "connections",
    "copy_references",
    "load_reference",
    "read_keylog",
    "save_capture",
    "versions",
    "write_capture",
]


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

        load_layers()
        with quiet_scapy():
            return rdpcap(str(self.pcap))

    def tcp_info(self) -> list[dict[str, Any]] | None:
        """The kernel's samples kept beside the capture (``tcp_info.csv``), on its time axis.

        Each row is a `labchat.capture.tcpinfo` sample plus ``t``: seconds since the
        capture's first packet, the zero `labchat.analysis` counts segment times from.

        Returns:
            The rows, or None when this capture has no samples.
        """
        from .tcpinfo import read_csv

        path = self.directory / "tcp_info.csv"
        if "tcp_info.csv" not in self.manifest.get("files", []) or not path.is_file():
            return None
        start = self.manifest["capture"]["first_packet_time"]
        return [{**row, "t": row["time"] - start} for row in read_csv(path)]

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


def connections(packets: Sequence[Any], server_port: int, roles: Sequence[str]) -> list[dict]:
    """Client ports in the order their SYNs hit the server port, labelled with the roles.

    Args:
        packets: the captured packets.
        server_port: the server's TCP port.
        roles: the clients' roles in connect order; extra connections are ``client<N>``.

    Returns:
        ``[{"role", "client_port", "server_port"}, ...]``, one per connection.
    """
    ports: list[int] = []
    for p in packets:
        # A SYN without ACK: a client opening a connection (retransmitted SYNs count once).
        head = _tcp_head(p)
        if head and head[1] == server_port and head[2] & 0x12 == 0x02 and head[0] not in ports:
            ports.append(head[0])
    conns = []
    for i, port in enumerate(ports):
        role = roles[i] if i < len(roles) else f"client{i + 1}"
        conns.append({"role": role, "client_port": port, "server_port": server_port})
    return conns


def _tcp_head(p: Any) -> tuple[int, int, int] | None:
    """(source port, destination port, flags) of a packet's TCP header, or None.

    A dissected scapy packet, or a raw Ethernet frame (`labchat.capture.Sniffer` with
    ``dissect=False``), read straight from its bytes: Ethernet II, IPv4, TCP.
    """
    from scapy.layers.inet import TCP

    if TCP in p:
        return p[TCP].sport, p[TCP].dport, int(p[TCP].flags)
    raw = bytes(p)
    # EtherType 0x0800 (IPv4) at 12, IP protocol 6 (TCP) at 14 + 9.
    if len(raw) < 54 or raw[12:14] != b"\x08\x00" or raw[23] != 6:
        return None
    tcp = 14 + (raw[14] & 0x0F) * 4
    if len(raw) < tcp + 14:
        return None
    sport, dport = struct.unpack_from("!HH", raw, tcp)
    return sport, dport, raw[tcp + 13]


def read_keylog(path: str | Path | None) -> bytes | None:
    """An NSS key log's secret lines, each once (comments dropped), or None if there is none."""
    if path is None or not Path(path).is_file():
        return None
    seen: list[bytes] = []
    for line in Path(path).read_bytes().splitlines():
        line = line.strip()
        if line and not line.startswith(b"#") and line not in seen:
            seen.append(line)
    return b"".join(line + b"\n" for line in seen)


def build_manifest(
    scenario: str,
    *,
    parameters: dict[str, Any],
    run: ScenarioRun,
    packets: Sequence[Any],
    server_port: int,
    mode: CaptureMode,
    sniffer: Sniffer,
    seconds: float,
    keylog: bytes | None,
    description: str | None = None,
    network: dict[str, Any] | None = None,
    stopped_by: str | None = None,
) -> dict[str, Any]:
    """The manifest.json of one capture: what ran, what was captured, how, and with what.

    Args:
        scenario: scenario name (``live`` for a live session).
        parameters: the parameters it ran with (``port``, ``pause``, ...).
        run: what the scenario did (server, clients, TLS, transcript, notes).
        packets: the captured packets (counted; their SYNs name the connections).
        server_port: the server's TCP port.
        mode: how the packets were obtained.
        sniffer: the sniffer that captured them (its method and filter are recorded).
        seconds: how long the capture took.
        keylog: the key log embedded in the capture, or None.
        description: the scenario's one-line description (None: no such key).
        network: the lab network's description (lab-network scenarios only).
        stopped_by: what ended a live capture (live only).

    Returns:
        The manifest, keys in the order they are written.
    """
    manifest: dict[str, Any] = {"scenario": scenario}
    if description is not None:
        manifest["description"] = description
    manifest["parameters"] = parameters
    if network is not None:
        manifest["network"] = network
    roles = [c.get("role", "client") for c in run.clients]
    manifest.update(
        server=run.server,
        clients=run.clients,
        connections=connections(packets, server_port, roles),
        tls=run.tls,
        transcript=run.transcript,
    )
    if run.notes:
        manifest["notes"] = run.notes
    if run.files:
        manifest["files"] = sorted(run.files)
    capture = {
        "mode": mode.name,
        "reason": mode.reason,
        "method": sniffer.method,
        "iface": sniffer.iface,
        "filter": sniffer.bpf,
        "packets": len(packets),
        # The first packet's time (seconds since the epoch): the zero of the analysis's times,
        # to put other clocks' samples (tcp_info.csv) on the same axis.
        "first_packet_time": round(float(packets[0].time), 6) if packets else None,
        "seconds": round(seconds, 3),
        "keylog": "keys.log" if keylog else None,
        "decryption_secrets_block": bool(keylog),
    }
    if stopped_by is not None:
        capture["stopped_by"] = stopped_by
    manifest["capture"] = capture
    manifest["versions"] = versions()
    return manifest


def write_capture(
    directory: Path,
    packets: Sequence[Any],
    manifest: dict[str, Any],
    *,
    keylog: bytes | None,
    iface: str = "lo",
    comment: str | None = None,
    files: dict[str, Path] | None = None,
) -> None:
    """Write ``capture.pcapng`` (key log embedded), ``keys.log`` and ``manifest.json``.

    Args:
        directory: where to write (created if missing).
        packets: the packets.
        manifest: from `build_manifest`.
        keylog: NSS key log to embed and write beside the capture; None removes a stale one.
        iface: interface name recorded in the pcapng.
        comment: the pcapng section comment (default ``labchat scenario <name>``).
        files: more files to copy beside the capture, by their name there
            (`labchat.capture.scenarios.ScenarioRun.files`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, src in (files or {}).items():
        shutil.copyfile(src, directory / name)
    if keylog:
        (directory / "keys.log").write_bytes(keylog)
    else:
        (directory / "keys.log").unlink(missing_ok=True)
    write_pcapng(
        directory / "capture.pcapng",
        packets,
        keylog=keylog,
        iface=iface,
        comment=comment or f"labchat scenario {manifest['scenario']}",
    )
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def save_capture(
    directory: Path,
    scenario: str,
    *,
    packets: Sequence[Any],
    sniffer: Sniffer,
    keylog: bytes | None,
    comment: str | None = None,
    **manifest: Any,
) -> dict[str, Any]:
    """`build_manifest`, then `write_capture` with the sniffer's interface: one capture saved.

    Args:
        directory: where to write (created if missing).
        scenario: scenario name (``live`` for a live session).
        packets: the captured packets.
        sniffer: the sniffer that captured them (its interface goes into the pcapng).
        keylog: the TLS key log to embed and write beside the capture, or None.
        comment: the pcapng section comment (default ``labchat scenario <name>``).
        **manifest: the rest of `build_manifest`'s arguments (``run``, ``mode``, ...).

    Returns:
        The manifest written.
    """
    built = build_manifest(scenario, packets=packets, sniffer=sniffer, keylog=keylog, **manifest)
    files = getattr(manifest.get("run"), "files", None)  # kept beside the capture
    write_capture(
        directory, packets, built, keylog=keylog, iface=sniffer.iface, comment=comment, files=files
    )
    return built


def load_reference(name: str) -> CaptureResult:
    """The shipped reference capture ``captures/<name>/``.

    Raises:
        CaptureError: there is no reference capture of that name.
    """
    why_not = offline_unavailable(name)
    if why_not is not None:
        raise CaptureError(why_not)
    mode = CaptureMode("offline", f"shipped reference capture {reference_dir() / name}", {})
    return CaptureResult.from_directory(reference_dir() / name, mode)


def copy_references(
    names: Sequence[str], dirs: Sequence[Path], mode: CaptureMode
) -> list[CaptureResult]:
    """Offline mode: copy each scenario's reference capture into its directory.

    Raises:
        CaptureError: a scenario has no reference capture.
    """
    results = []
    for name, d in zip(names, dirs, strict=True):
        ref = load_reference(name)
        d.mkdir(parents=True, exist_ok=True)
        for f in ("capture.pcapng", "keys.log", "manifest.json", *ref.manifest.get("files", [])):
            src = ref.directory / f
            if src.is_file() and src.resolve() != (d / f).resolve():
                shutil.copyfile(src, d / f)
        results.append(CaptureResult.from_directory(d, mode))
    return results
