"""``labchat doctor``: the pre-flight check before a lab or a class.

It checks what the lab needs, one line each: Python, scapy and libpcap, tshark, the lab
certificates (in date, key matching, key private), the users file (private, readable), the
ports, whether the notebooks can run (JupyterLab, a kernel that imports labchat), and each
capture mode: available or why not, and the exact fix for this platform. The capture modes are
probed by the capture layer (`labchat.capture.probe_modes`, `detect_mode`), not here.

    report = diagnose()
    print(report.table())          # a short table; FAIL lines make report.ok False
    sys.exit(0 if report.ok else 1)

``lab_only=True`` leaves out the server's files and ports (certificates, users file, ports),
which the notebooks do not use: that is what notebook 00 shows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..server import DEFAULT_PORT, DEFAULT_USERS
from .checks import (
    FAIL,
    NO,
    OK,
    WARN,
    Finding,
    Probes,
    check_capture,
    check_certificates,
    check_notebooks,
    check_ports,
    check_python,
    check_scapy,
    check_tshark,
    check_users,
)
from .fixes import FixResult, fix_capture

__all__ = [
    "FAIL",
    "NO",
    "OK",
    "WARN",
    "Finding",
    "FixResult",
    "Probes",
    "Report",
    "diagnose",
    "fix_capture",
]

#: The ports a lab uses on this machine, and what for.
DEFAULT_PORTS = {DEFAULT_PORT: "labchat serve", 8888: "jupyter lab"}


@dataclass
class Report:
    """The doctor's findings, in the order checked."""

    findings: list[Finding]

    @property
    def ok(self) -> bool:
        """Nothing the lab needs is missing (no FAIL)."""
        return all(f.status != FAIL for f in self.findings)

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == WARN]

    def get(self, check: str) -> Finding:
        """The finding of one check (``"python"``, ``"capture private"``, ...)."""
        return next(f for f in self.findings if f.check == check)

    def table(self, *, fixes: bool = True) -> str:
        """A short table, one line per check; ``fix:`` lines under what needs one."""
        width = max(len(f.check) for f in self.findings)
        lines = []
        for f in self.findings:
            lines.append(f"{f.status:<5}{f.check:<{width + 2}}{f.detail}")
            if fixes and f.fix and f.status != OK:
                lines.append(f"{'':5}{'':<{width + 2}}fix: {f.fix}")
        verdict = "ready" if self.ok else "NOT ready: fix the FAIL lines"
        if self.ok and self.warnings:
            verdict += f" ({len(self.warnings)} warning{'s' * (len(self.warnings) > 1)})"
        lines.append(f"labchat {__version__}: {verdict}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings]}


def diagnose(
    *,
    certs: str | Path = "certs",
    users: str | Path = DEFAULT_USERS,
    ports: dict[int, str] | None = None,
    lab_only: bool = False,
    probes: Probes | None = None,
) -> Report:
    """Run every check.

    Args:
        certs: the lab certificate directory (``labchat serve --certs``).
        users: the users file (``labchat serve --users``).
        ports: port -> what needs it (default: 5050 for labchat serve, 8888 for Jupyter).
        lab_only: only what the notebooks need (no certificates, users file or ports).
        probes: the system probes (tests replace them).

    Returns:
        The `Report`.
    """
    probes = probes or Probes()
    findings = [*check_python(), *check_scapy(), *check_tshark(probes)]
    if not lab_only:
        findings += check_certificates(Path(certs), probes)
        findings += check_users(Path(users))
        findings += check_ports(DEFAULT_PORTS if ports is None else ports)
    findings += check_notebooks(probes)
    findings += check_capture(probes)
    return Report(findings)
