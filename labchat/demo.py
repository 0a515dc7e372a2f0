"""`labchat demo`: the whole lab in one headless run (the subcommand is `labchat.cli.demo`).

Runs the `tls13-chat` scenario, writes the capture, key log, manifest and a ladder diagram
into one directory, and prints what a learner would look for: the capture mode used, the
three handshake segments, the TLS messages and the decrypted chat lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import analysis, capture, plots

__all__ = ["DEFAULT_OUT", "SCENARIO", "DemoResult", "run_demo"]

DEFAULT_OUT = Path("captures") / "demo"
SCENARIO = "tls13-chat"


@dataclass
class DemoResult:
    capture: capture.CaptureResult
    connection: analysis.Connection
    ladder_png: Path

    def summary(self) -> str:
        conn = self.connection
        mode = self.capture.mode
        lines = [f"capture mode: {mode.name} ({mode.reason})"]
        lines.append(
            f"connection: client {conn.client[0]}:{conn.client[1]} -> "
            f"server {conn.server[0]}:{conn.server[1]}"
        )
        handshake = conn.handshake()
        if handshake is not None:
            lines.append("TCP handshake:")
            for seg in handshake.segments:
                lines.append(f"    {seg.direction}  {seg.label()}")
            for text, ok in handshake.checks():
                lines.append(f"    [{'ok' if ok else 'FAIL'}] {text}")
        lines.append("TLS messages:")
        for msg in conn.tls_messages():
            lock = " (decrypted)" if getattr(msg, "decrypted", False) else ""
            lines.append(f"    {msg.direction}  {msg.name}{lock}")
        lines.append(f"round trips before the first chat line: {analysis.tls_round_trips(conn)}")
        lines.append("decrypted labchat/1 lines:")
        for direction, text in conn.app_lines():
            lines.append(f"    {direction}  {text}")
        lines.append(f"ladder diagram: {self.ladder_png}")
        return "\n".join(lines)


def run_demo(out: str | Path = DEFAULT_OUT, *, mode: str = "auto") -> DemoResult:
    """Capture the tls13-chat scenario into *out* and draw its ladder diagram.

    Raises:
        labchat.capture.CaptureError: no capture mode works and no reference capture exists.
    """
    out = Path(out)
    result = capture.run_scenario(SCENARIO, out, mode=mode)
    cap = analysis.load(result.pcap, keylog=result.keylog)
    conn = cap.connection(0)
    figure = plots.ladder(conn, title="labchat over TLS 1.3: the learner's own capture")
    png = out / "ladder.png"
    figure.savefig(png, dpi=110, bbox_inches="tight")
    return DemoResult(result, conn, png)
