"""Capture a scenario and load it: one call from a notebook to an analysed connection.

`capture_scenario` runs a scripted scenario (`labchat.capture.run_scenario`), in whichever
capture mode works here, and loads it as an eavesdropper sees it (the key log embedded in the
pcapng is ignored); `Captured.decrypted` loads it again with the keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import analysis, capture

__all__ = ["Captured", "capture_scenario", "capture_scenarios"]


@dataclass
class Captured:
    """A scenario's capture, loaded.

    Attributes:
        result: the files on disk and how they were made (``result.mode``).
        capture: the analysed capture without any key (the file's embedded key log removed):
            what an eavesdropper sees.
        conn: its first TCP connection.
    """

    result: capture.CaptureResult
    capture: analysis.Capture
    conn: analysis.Connection

    @property
    def mode(self) -> capture.CaptureMode:
        """How the packets were obtained (private, host or offline) and why."""
        return self.result.mode

    @property
    def server_port(self) -> int:
        """The scenario server's TCP port."""
        return int(self.result.manifest.get("server", {}).get("port", self.conn.server[1]))

    def decrypted(self) -> analysis.Capture:
        """The same capture loaded with its key log (TLS records decrypted).

        Raises:
            ValueError: the scenario is not TLS (it has no key log).
        """
        if self.result.keylog is None:
            raise ValueError(f"{self.result.scenario} has no key log (it is not TLS)")
        return analysis.load(
            self.result.pcap, keylog=self.result.keylog, tls_ports=[self.server_port]
        )

    def wire_bytes(self) -> bytes:
        """Every TCP payload byte in the capture, in capture order (what a sniffer sees)."""
        return b"".join(s.payload for c in self.capture.connections() for s in c.segments)


def _load(result: capture.CaptureResult) -> Captured:
    port = int(result.manifest.get("server", {}).get("port", 0)) or capture.DEFAULT_PORT
    # Only TLS scenarios get their port decoded as TLS: a plaintext chat on the same port
    # must stay plaintext (its lines are the lesson).
    # As an eavesdropper sees it: the key log embedded in the pcapng is not used.
    tls_ports = [port] if result.manifest.get("tls") else []
    cap = analysis.load(result.pcap, tls_ports=tls_ports, embedded_keys=False)
    return Captured(result, cap, cap.connection(0))


def capture_scenario(name: str, workdir: str | Path, *, mode: str = "auto") -> Captured:
    """Run (or, offline, load) one scenario into ``workdir/<name>`` and analyse it.

    Args:
        name: a loopback scenario (`labchat.capture.scenarios.names()`), e.g. ``tcp-chat``.
        workdir: parent directory of the capture.
        mode: capture mode (see `labchat.capture.detect_mode`).

    Returns:
        The capture, loaded without its keys.

    Raises:
        KeyError: unknown scenario.
        labchat.capture.CaptureError: the capture failed or the mode is unavailable.
    """
    return _load(capture.run_scenario(name, Path(workdir) / name, mode=mode))


def capture_scenarios(
    names: Sequence[str], workdir: str | Path, *, mode: str = "auto"
) -> dict[str, Captured]:
    """Several scenarios at once (one private namespace for all: faster).

    Returns:
        scenario name -> its capture, loaded as `capture_scenario` does.
    """
    results = capture.run_scenarios(list(names), workdir, mode=mode)
    return {r.scenario: _load(r) for r in results}
