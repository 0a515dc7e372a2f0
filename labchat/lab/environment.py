"""What this machine runs: versions, and the capture mode that works here (notebook 00)."""

from __future__ import annotations

import platform
import ssl
from dataclasses import dataclass

from .. import capture

__all__ = ["EnvironmentReport", "environment_report"]


@dataclass
class EnvironmentReport:
    """Versions and the capture mode that works here (``print()`` it)."""

    versions: dict[str, str]
    mode: capture.CaptureMode | None
    error: str | None = None

    def __str__(self) -> str:
        lines = [f"{k:<12}{v}" for k, v in self.versions.items()]
        if self.mode is None:
            lines.append(f"{'capture':<12}none: {self.error}")
            return "\n".join(lines)
        lines.append(f"{'capture':<12}{self.mode.name}: {self.mode.reason}")
        for other in ("private", "host", "offline"):
            if other in self.mode.unavailable:
                lines.append(f"  not {other:<8}{self.mode.unavailable[other]}")
        return "\n".join(lines)


def environment_report() -> EnvironmentReport:
    """Python, OpenSSL, scapy and matplotlib versions, and which capture mode works here, why."""
    import matplotlib
    import scapy

    versions = {
        "Python": platform.python_version(),
        "OpenSSL": ssl.OPENSSL_VERSION,
        "scapy": scapy.__version__,
        "matplotlib": matplotlib.__version__,
        "libpcap": "found" if capture.libpcap_available() else "not found (Python filter)",
        "system": f"{platform.system()} {platform.release()}",
    }
    try:
        return EnvironmentReport(versions, capture.detect_mode())
    except (capture.CaptureError, ValueError) as exc:
        return EnvironmentReport(versions, None, str(exc))
