"""Which way of getting packets works here, and why the others do not.

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
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import resources

__all__ = [
    "CAPTURES_ENV",
    "DEFAULT_PORT",
    "MODES",
    "MODE_ENV",
    "NO_PCAP_ENV",
    "PROJECT_ROOT",
    "CaptureError",
    "CaptureMode",
    "detect_mode",
    "host_unavailable",
    "offline_unavailable",
    "private_unavailable",
    "probe_modes",
    "probe_private_namespace",
    "read_sysctl",
    "reference_dir",
    "unshare_command",
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

#: The directory that holds the ``labchat`` package (and, in a clone, ``captures/``). Child
#: processes get it on their PYTHONPATH so they import this very copy of labchat.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class CaptureError(RuntimeError):
    """A capture could not be made (mode unavailable, sniffer failed, child crashed)."""


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


def read_sysctl(path: str) -> str | None:
    """The text of a sysctl file (``/proc/sys/...``), stripped, or None if it cannot be read."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


# What the probe child does: exactly what the capture child needs (lo up, packet socket).
_PROBE_CODE = (
    "import socket,sys;sys.path.insert(0,sys.argv[1]);"
    "from labchat.capture.child import bring_up_loopback;bring_up_loopback();"
    "socket.socket(socket.AF_PACKET,socket.SOCK_RAW,0).close()"
)


def unshare_command() -> list[str] | None:
    """The ``unshare`` command line that starts a program in a private user + network namespace.

    Returns:
        ``[unshare, --user, --map-root-user, --net, --]``, or None without an ``unshare`` binary.
    """
    exe = shutil.which("unshare")
    if exe is None:
        return None
    return [exe, "--user", "--map-root-user", "--net", "--"]


def probe_private_namespace() -> tuple[bool, str]:
    """Really try: enter a user+net namespace, bring lo up, open a packet socket.

    Returns:
        ``(True, "")`` if that worked, else ``(False, the last line unshare or Python said)``.
    """
    cmd = unshare_command()
    if cmd is None:
        return False, "no unshare binary"
    try:
        proc = subprocess.run(
            [*cmd, sys.executable, "-c", _PROBE_CODE, str(PROJECT_ROOT)],
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


def private_unavailable(
    *,
    read: Callable[[str], str | None] = read_sysctl,
    probe: Callable[[], tuple[bool, str]] = probe_private_namespace,
) -> str | None:
    """Why the private namespace mode cannot be used here, or None if it can.

    Args:
        read: reads a sysctl (`read_sysctl`); a test passes one that plays another kernel.
        probe: really tries the namespace (`probe_private_namespace`); likewise replaceable.

    Returns:
        One sentence a learner can act on, or None.
    """
    if not sys.platform.startswith("linux"):
        return f"user and network namespaces are Linux-only (this is {sys.platform})"
    if unshare_command() is None:
        return "no `unshare` binary on PATH (install util-linux)"
    max_ns = read("/proc/sys/user/max_user_namespaces")
    if max_ns is not None and max_ns.isdigit() and int(max_ns) == 0:
        return "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
    if read("/proc/sys/kernel/unprivileged_userns_clone") == "0" and _euid() != 0:
        return (
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0; "
            "`sudo sysctl kernel.unprivileged_userns_clone=1` enables them)"
        )
    ok, err = probe()
    if ok:
        return None
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return (
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns=1, the Ubuntu 23.10+ default; "
            f"unshare said: {err})"
        )
    return f"could not enter a user+network namespace: {err}"


def host_unavailable() -> str | None:
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
    """The directory holding the shipped reference captures (in the wheel or the checkout)."""
    env = os.environ.get(CAPTURES_ENV)
    return Path(env) if env else resources.captures_dir()


def offline_unavailable(scenario: str | None = None) -> str | None:
    """Why the shipped captures (of ``scenario``, or any) cannot be used, or None if they can."""
    root = reference_dir()
    if scenario is not None:
        if not (root / scenario / "capture.pcapng").is_file():
            return f"no reference capture {root / scenario / 'capture.pcapng'}"
        return None
    if not any(root.glob("*/capture.pcapng")):
        return f"no reference captures in {root}"
    return None


# Looked up at call time (not bound here), so a patched module function is the one called.
_CHECKS: dict[str, Callable[[], str | None]] = {
    "private": lambda: private_unavailable(),
    "host": lambda: host_unavailable(),
    "offline": lambda: offline_unavailable(),
}

_WHY_CHOSEN = {
    "private": "a private user+network namespace: its loopback carries only the lab's traffic",
    "host": "host loopback with capture rights",
    "offline": "the shipped reference captures",
}


def probe_modes(
    *, checks: Mapping[str, Callable[[], str | None]] | None = None
) -> dict[str, str | None]:
    """Try every capture mode here, whatever ``LABCHAT_CAPTURE_MODE`` says (`labchat doctor`).

    Args:
        checks: mode -> its check, replacing the real one (as for `detect_mode`).

    Returns:
        Mode name -> why it cannot be used here, or None if it can; in `detect_mode`'s order.

    Raises:
        ValueError: `checks` names an unknown mode.
    """
    if checks and not set(checks) <= set(_CHECKS):
        raise ValueError(f"checks for unknown modes: {sorted(set(checks) - set(_CHECKS))}")
    merged = {**_CHECKS, **(checks or {})}
    return {name: check() for name, check in merged.items()}


def detect_mode(
    preferred: str = "auto", *, checks: Mapping[str, Callable[[], str | None]] | None = None
) -> CaptureMode:
    """Choose how to get packets, and say why.

    Args:
        preferred: ``auto`` (try private, host, offline in that order; the environment
            variable ``LABCHAT_CAPTURE_MODE`` overrides it), or one mode to insist on.
        checks: mode name -> a function that says why that mode is unavailable (None: it is
            available), replacing `private_unavailable`, `host_unavailable` or
            `offline_unavailable` for that mode; how a test plays a restricted machine.

    Returns:
        The chosen `CaptureMode`, with the reason each other mode was not used.

    Raises:
        ValueError: unknown mode name.
        CaptureError: an explicitly requested mode is not available here.
    """
    if preferred not in MODES:
        raise ValueError(f"unknown capture mode {preferred!r}; choose one of {MODES}")
    if checks and not set(checks) <= set(_CHECKS):
        raise ValueError(f"checks for unknown modes: {sorted(set(checks) - set(_CHECKS))}")
    checks = {**_CHECKS, **(checks or {})}
    forced_by = None
    if preferred == "auto":
        env = os.environ.get(MODE_ENV, "").strip()
        if env and env != "auto":
            if env not in MODES:
                raise ValueError(f"{MODE_ENV}={env!r} is not one of {MODES}")
            preferred, forced_by = env, f"{MODE_ENV}={env}"
    if preferred != "auto":
        why_not = checks[preferred]()
        if why_not is not None:
            via = f" (from {forced_by})" if forced_by else ""
            raise CaptureError(f"capture mode {preferred!r}{via} is not available: {why_not}")
        reason = f"requested{f' by {forced_by}' if forced_by else ''}: {_WHY_CHOSEN[preferred]}"
        others = {m: "not tried: a mode was requested" for m in _CHECKS if m != preferred}
        return CaptureMode(preferred, reason, others)
    unavailable: dict[str, str] = {}
    chosen: str | None = None
    for name, check in checks.items():
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
