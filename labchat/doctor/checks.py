"""One function per thing the lab needs; each returns `Finding`s.

Every function takes what it looks at as arguments (paths, ports, a `Probes` of injectable
system probes), so a test can show each failure path: an expired certificate, a users file
others can read, a busy port, a kernel that restricts user namespaces.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import platform
import shutil
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import capture, resources
from ..capture import modes
from ..certs import lab_cert_paths
from .fixes import host_fix, private_fix

__all__ = [
    "FAIL",
    "NO",
    "OK",
    "WARN",
    "Finding",
    "Probes",
    "check_capture",
    "check_certificates",
    "check_notebooks",
    "check_ports",
    "check_python",
    "check_scapy",
    "check_tshark",
    "check_users",
]

#: Statuses, from good to bad. NO: not available, and the lab does not need it.
OK, NO, WARN, FAIL = "ok", "no", "warn", "FAIL"

#: A certificate expiring sooner than this is worth a warning before a class.
EXPIRY_WARNING = dt.timedelta(days=14)


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's table.

    Attributes:
        check: what was checked (``python``, ``capture private``, ``port 5050``, ...).
        status: ``ok``, ``no`` (unavailable, not needed), ``warn`` or ``FAIL`` (the lab
            needs it).
        detail: what was found.
        fix: what to do about it ("" if nothing).
    """

    check: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Probes:
    """What the doctor asks the system; a test replaces any of them.

    The capture modes are probed by the capture layer (`labchat.capture.probe_modes`,
    `detect_mode`); the doctor only hands it `sysctl` and `userns_probe` for the private mode,
    so a test can play another kernel (Ubuntu's AppArmor restriction, say) end to end.

    Attributes:
        platform: ``sys.platform``.
        sysctl: reads a sysctl file by its path (``/proc/sys/kernel/...``).
        userns_probe: really tries a user+network namespace: (worked, error).
        checks: other capture-mode checks to replace (mode -> why not, or None).
        now: the current time (UTC).
        python: the interpreter the lab runs on.
        which: finds a program on PATH.
    """

    platform: str = sys.platform
    sysctl: Callable[[str], str | None] = modes.read_sysctl
    userns_probe: Callable[[], tuple[bool, str]] = modes.probe_private_namespace
    checks: dict[str, Callable[[], str | None]] = field(default_factory=dict)
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.timezone.utc))
    python: str = sys.executable
    which: Callable[[str], str | None] = shutil.which

    def _mode_checks(self) -> dict[str, Callable[[], str | None]]:
        def private() -> str | None:
            return modes.private_unavailable(read=self.sysctl, probe=self.userns_probe)

        return {"private": private, **self.checks}

    def modes(self) -> dict[str, str | None]:
        """Every capture mode -> why it is unavailable here, None if it works."""
        return capture.probe_modes(checks=self._mode_checks())

    def chosen(self) -> capture.CaptureMode:
        """The mode the notebooks will use (``LABCHAT_CAPTURE_MODE`` honoured).

        Raises:
            labchat.capture.CaptureError: no mode works.
        """
        return capture.detect_mode(checks=self._mode_checks())


def check_python() -> list[Finding]:
    """The interpreter, and an OpenSSL that speaks TLS 1.3 (labchat itself needs 3.10+)."""
    version = f"{platform.python_version()} ({sys.executable})"
    if not ssl.HAS_TLSv1_3:
        fix = "a Python built with OpenSSL 1.1.1 or newer"
        return [Finding("python", FAIL, f"{version}, {ssl.OPENSSL_VERSION}: no TLS 1.3", fix)]
    return [Finding("python", OK, f"{version}, {ssl.OPENSSL_VERSION}")]


def check_scapy(libpcap: Callable[[], bool] = capture.libpcap_available) -> list[Finding]:
    """scapy importable; libpcap for BPF filters in the kernel (else a Python-side filter)."""
    if importlib.util.find_spec("scapy") is None:
        return [Finding("scapy", FAIL, "not installed", "pip install scapy")]
    import scapy

    found = [Finding("scapy", OK, scapy.__version__)]
    if libpcap():
        found.append(Finding("libpcap", OK, "found: BPF filters run in the kernel"))
    else:
        found.append(
            Finding(
                "libpcap",
                WARN,
                "not found: captures filter in Python (slower, same packets)",
                "apt install libpcap0.8 / brew install libpcap / Npcap on Windows",
            )
        )
    return found


def check_tshark(probes: Probes) -> list[Finding]:
    """tshark, to open the lab's captures outside Python (optional)."""
    exe = probes.which("tshark")
    if exe is None:
        fix = "apt install tshark (or Wireshark, which has it)"
        return [Finding("tshark", WARN, "not found: only labchat can read the captures", fix)]
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20)
        first = (proc.stdout.splitlines() or ["?"])[0]
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Finding("tshark", WARN, f"{exe} does not run: {exc}")]
    return [Finding("tshark", OK, first.split(" (Git")[0].rstrip("."))]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_certificates(directory: Path, probes: Probes) -> list[Finding]:
    """The lab CA and server certificate: present, in date, key matching, key private."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from ..tls import KeyPermissionError, check_private_key_permissions

    paths = lab_cert_paths(directory)
    missing = [
        p.name for p in (paths.ca_cert, paths.server_cert, paths.server_key) if not p.is_file()
    ]
    if missing:
        return [
            Finding(
                "certificates",
                WARN,
                f"{directory}/: no {', '.join(missing)} (labchat serve needs them; the "
                "notebooks make their own)",
                "labchat init",
            )
        ]
    try:
        ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        key = load_pem_private_key(paths.server_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        fix = f"labchat certs --dir {directory} --force"
        return [Finding("certificates", FAIL, f"cannot read them: {exc}", fix)]
    now = probes.now()
    remake = f"labchat certs --dir {directory} --force (then hand out the new ca.pem)"
    problems = []
    for name, c in (("server.pem", cert), ("ca.pem", ca)):
        if now > c.not_valid_after_utc:
            problems.append(f"{name} expired on {c.not_valid_after_utc:%Y-%m-%d}")
        elif now < c.not_valid_before_utc:
            problems.append(f"{name} is not valid before {c.not_valid_before_utc:%Y-%m-%d}")
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        problems.append("server.key does not belong to server.pem")
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        problems.append("server.pem is not signed by ca.pem (an old or another CA's)")
    if problems:
        return [Finding("certificates", FAIL, "; ".join(problems), remake)]
    try:
        check_private_key_permissions(paths.server_key)
    except KeyPermissionError as exc:
        return [Finding("certificates", FAIL, str(exc).split(". ")[0], f"chmod 600 {exc.filename}")]
    left = cert.not_valid_after_utc - now
    detail = f"{directory}/server.pem valid until {cert.not_valid_after_utc:%Y-%m-%d}"
    if left < EXPIRY_WARNING:
        return [Finding("certificates", WARN, f"{detail}: {left.days} days left", remake)]
    return [Finding("certificates", OK, f"{detail}, key matches, signed by ca.pem")]


def check_users(path: Path) -> list[Finding]:
    """The users file: present, private (it holds password hashes), readable, not empty."""
    from ..auth import AuthError, UserStore

    if not path.is_file():
        return [Finding("users file", WARN, f"{path}: none yet", "labchat init (or adduser)")]
    mode = _mode(path)
    if os.name != "nt" and mode & 0o077:
        return [
            Finding(
                "users file",
                FAIL,
                f"{path} has mode {mode:#o}: others can read the password hashes",
                f"chmod 600 {path}",
            )
        ]
    try:
        names = UserStore(path).names()
    except (AuthError, OSError) as exc:
        return [Finding("users file", FAIL, f"{path}: {exc}", f"restore it, or remove {path}")]
    if not names:
        return [Finding("users file", WARN, f"{path}: no accounts", "labchat adduser NAME")]
    accounts = f"{len(names)} account{'s' if len(names) != 1 else ''}"
    return [Finding("users file", OK, f"{path}: {accounts}, mode {mode:#o}")]


def _port_busy(port: int, host: str = "127.0.0.1") -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind it
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def check_ports(ports: dict[int, str]) -> list[Finding]:
    """Each port (number -> who needs it) free on 127.0.0.1."""
    found = []
    for port, user in ports.items():
        busy = _port_busy(port)
        if busy is None:
            found.append(Finding(f"port {port}", OK, f"free ({user})"))
        else:
            found.append(
                Finding(
                    f"port {port}",
                    WARN,
                    f"in use ({busy}): {user} needs another port",
                    f"`ss -ltnp 'sport = :{port}'` shows who has it; or pick another with --port",
                )
            )
    return found


def check_notebooks(probes: Probes) -> list[Finding]:
    """The notebooks are there, JupyterLab is installed, and the kernel imports labchat."""
    books = resources.notebooks()
    if not books:
        where = resources.notebooks_dir()
        return [Finding("notebooks", FAIL, f"none in {where}", "reinstall labchat")]
    if importlib.util.find_spec("jupyterlab") is None:
        return [Finding("notebooks", FAIL, "JupyterLab is not installed", "pip install jupyterlab")]
    code = "import ipykernel, matplotlib, scapy, labchat; print(labchat.__version__)"
    try:
        proc = subprocess.run(
            [probes.python, "-c", code], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Finding("notebooks", FAIL, f"the kernel's Python does not run: {exc}")]
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["?"])[-1]
        fix = f"{probes.python} -m pip install labchat"
        return [Finding("notebooks", FAIL, f"the kernel cannot import the lab: {why}", fix)]
    return [
        Finding(
            "notebooks",
            OK,
            f"{len(books)} in {resources.notebooks_dir()}; the kernel imports labchat "
            f"{proc.stdout.strip()}",
        )
    ]


def _bpf_readable() -> bool | None:
    dev = Path("/dev/bpf0")
    return os.access(dev, os.R_OK | os.W_OK) if dev.exists() else None


_AVAILABLE: dict[str, Callable[[], str]] = {
    "private": lambda: "available: a namespace of its own, only the lab's packets",
    "host": lambda: "available: this user may capture the host's loopback",
    "offline": lambda: (
        f"available: {len(list(resources.captures_dir().glob('*/capture.pcapng')))} "
        f"reference captures in {resources.captures_dir()}"
    ),
}


def check_capture(probes: Probes) -> list[Finding]:
    """Each capture mode: available or why not, and the fix; then the mode notebooks use."""
    why_not = probes.modes()
    live = [m for m in ("private", "host") if why_not.get(m) is None]
    found = []
    for mode in ("private", "host", "offline"):
        why = why_not.get(mode)
        if why is None:
            found.append(Finding(f"capture {mode}", OK, _AVAILABLE[mode]()))
            continue
        if mode == "private":
            fix = private_fix(why, platform=probes.platform, sysctl=probes.sysctl)
        elif mode == "host":
            bpf = _bpf_readable() if probes.platform == "darwin" else None
            fix = host_fix(why, platform=probes.platform, bpf_ok=bpf)
        else:
            fix = "reinstall labchat: the wheel ships the reference captures"
        # Without private mode the notebooks quietly read someone else's packets: warn,
        # unless host capture works instead. Host capture alone is for live sessions.
        needed = (mode == "private" and not live) or (mode == "offline" and not live)
        status = NO if not needed else (FAIL if mode == "offline" else WARN)
        found.append(Finding(f"capture {mode}", status, why, fix))
    try:
        chosen = probes.chosen()
        found.append(Finding("capture used", OK, f"{chosen.name}: {chosen.reason}"))
    except (capture.CaptureError, ValueError) as exc:
        found.append(Finding("capture used", FAIL, str(exc)))
    return found
