"""The exact fix for each capture mode that does not work here, per platform.

Linux's *private* mode needs unprivileged user namespaces. Ubuntu 23.10 and later restrict
them through AppArmor (``kernel.apparmor_restrict_unprivileged_userns=1``): only programs with
an AppArmor profile that says ``userns,`` may use them. `apparmor_profile` writes such a profile
for the lab's own Python, and `install_apparmor_profile` installs it (root only; that is what
``sudo labchat doctor --fix-capture`` runs).

A profile attaches to the *resolved* path of a program, like a file capability does. A venv's
``bin/python`` is usually a link to the system's ``/usr/bin/python3.X``, and a profile (or
``setcap``) for that would let every user and every Python program on the machine do the same.
So the fix is written only for an interpreter of the lab's own: a venv made with ``--copies``.

*Host* capture needs root or CAP_NET_RAW on Linux, read access to ``/dev/bpf*`` on macOS
(Wireshark's ChmodBPF: the ``access_bpf`` group), and Npcap on Windows.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import __version__

__all__ = [
    "APPARMOR_DIR",
    "APPARMOR_SYSCTL",
    "FixResult",
    "apparmor_profile",
    "apparmor_profile_path",
    "dedicated_interpreter",
    "fix_capture",
    "host_fix",
    "install_apparmor_profile",
    "macos_bpf_fix",
    "private_fix",
    "WINDOWS_NPCAP_FIX",
]

APPARMOR_DIR = Path("/etc/apparmor.d")
#: 1 on Ubuntu 23.10+ by default: unprivileged user namespaces need an AppArmor profile.
APPARMOR_SYSCTL = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"

WINDOWS_NPCAP_FIX = (
    "install Npcap (https://npcap.com) with 'Support loopback traffic' ticked, then capture "
    "the 'Adapter for loopback traffic capture' with Wireshark or tshark "
    "(-f 'tcp port 5050' -w chat.pcapng) and read it with `labchat inspect chat.pcapng`"
)


def macos_bpf_fix() -> str:
    """What Wireshark's ChmodBPF does, as commands: the access_bpf group may read /dev/bpf*."""
    return (
        "install Wireshark's 'Install ChmodBPF.pkg' (it is in the Wireshark .dmg), or by hand: "
        "`sudo dseditgroup -o create access_bpf; "
        'sudo dseditgroup -o edit -a "$USER" -t user access_bpf; '
        "sudo chgrp access_bpf /dev/bpf*; sudo chmod g+rw /dev/bpf*` (ChmodBPF repeats the "
        "last two at every boot), log out and in; then capture lo0 with Wireshark or "
        "`tshark -i lo0 -f 'tcp port 5050' -w chat.pcapng` and read it with `labchat inspect`"
    )


def dedicated_interpreter(
    python: str | Path = sys.executable,
    *,
    prefix: str | Path = sys.prefix,
    base_prefix: str | Path = sys.base_prefix,
) -> Path | None:
    """The real file of `python` if only this environment uses it, else None.

    A venv made with ``--copies`` has its own interpreter file inside its prefix; one made
    the usual way links to the system's, which other users and programs share.
    """
    real = Path(python).resolve()
    prefix = Path(prefix).resolve()
    if prefix == Path(base_prefix).resolve():
        return None  # not a venv: this is the system's (or a shared) interpreter
    return real if real.is_relative_to(prefix) else None


def apparmor_profile_path(python: Path) -> Path:
    """Where the profile for `python` goes: one file per interpreter, named by its path."""
    digest = hashlib.sha256(str(python).encode()).hexdigest()[:10]
    return APPARMOR_DIR / f"labchat-python-{digest}"


def apparmor_profile(python: Path, unshare: str | None = None) -> str:
    """An AppArmor profile that lets `python` (and the unshare it runs) use user namespaces.

    Args:
        python: the resolved path of the lab's own interpreter.
        unshare: the ``unshare`` binary labchat runs to make the namespace (found on PATH).

    Returns:
        The profile text, for ``/etc/apparmor.d/``.
    """
    unshare = str(Path(unshare or shutil.which("unshare") or "/usr/bin/unshare").resolve())
    name = apparmor_profile_path(python).name
    # Ubuntu's own profiles for programs that need user namespaces have this shape (an
    # unconfined profile that adds `userns,`). The capture child is made by unshare(1), so
    # the profile keeps unshare in it (ix: inherit) instead of leaving it unconfined, where
    # the restriction would apply again.
    return f"""\
# Written by `labchat doctor --fix-capture` (labchat {__version__}).
# Lets this one interpreter, a venv's own copy, create unprivileged user namespaces:
# labchat's private capture mode on Ubuntu 23.10+
# (kernel.apparmor_restrict_unprivileged_userns=1).
# Remove: sudo apparmor_parser -R {APPARMOR_DIR / name} && sudo rm {APPARMOR_DIR / name}
abi <abi/4.0>,
include <tunables/global>

profile {name} {python} flags=(unconfined) {{
  userns,
  {unshare} ix,

  include if exists <local/{name}>
}}
"""


@dataclass(frozen=True)
class FixResult:
    """What `fix_capture` did or would do.

    Attributes:
        applied: the fix was made (a profile installed and loaded).
        text: what to tell the user: the profile and commands, or why nothing was done.
    """

    applied: bool
    text: str


def install_apparmor_profile(
    python: Path,
    *,
    directory: Path = APPARMOR_DIR,
    run: Callable[[Sequence[str]], subprocess.CompletedProcess] | None = None,
) -> Path:
    """Write the profile for `python` into `directory` and load it (``apparmor_parser -r``).

    Raises:
        PermissionError: not root.
        OSError: ``apparmor_parser`` is missing or refused the profile.
    """
    run = run or (lambda argv: subprocess.run(argv, capture_output=True, text=True, timeout=60))
    path = directory / apparmor_profile_path(python).name
    path.write_text(apparmor_profile(python))
    path.chmod(0o644)
    proc = run(["apparmor_parser", "-r", str(path)])
    if proc.returncode != 0:
        raise OSError(f"apparmor_parser -r {path} failed: {(proc.stderr or '').strip()}")
    return path


def private_fix(why: str, *, platform: str, sysctl: Callable[[str], str | None]) -> str:
    """The fix for private mode, given why the capture layer said it is unavailable."""
    if not platform.startswith("linux"):
        return "none: user namespaces are Linux-only; use host capture (below) or offline"
    if "unshare" in why and "binary" in why:
        return "install util-linux (`sudo apt install util-linux`), which has unshare"
    if "max_user_namespaces" in why:
        return "`sudo sysctl -w user.max_user_namespaces=15000` (and in /etc/sysctl.d/ to keep it)"
    if "unprivileged_userns_clone" in why:
        return (
            "`sudo sysctl -w kernel.unprivileged_userns_clone=1` (and in /etc/sysctl.d/ to keep it)"
        )
    if sysctl(APPARMOR_SYSCTL) == "1":
        return (
            "`sudo labchat doctor --fix-capture`: an AppArmor profile that lets only the lab's "
            "own Python create user namespaces (needs a venv made with `python3 -m venv "
            "--copies`); never turn the restriction off for the whole machine"
        )
    return "see the message; `unshare --user --map-root-user --net true` shows the same error"


def host_fix(
    why: str, *, platform: str, labchat: str = "labchat", bpf_ok: bool | None = None
) -> str:
    """The fix for host capture on this platform."""
    if platform == "darwin":
        state = {True: "you can read /dev/bpf*; ", False: "you cannot read /dev/bpf*; "}.get(
            bpf_ok, ""
        )
        return state + macos_bpf_fix()
    if platform.startswith("win"):
        return WINDOWS_NPCAP_FIX
    return (
        f"root for that one command (`sudo {labchat} capture live --port 5050 --out DIR`), or "
        "a sudoers rule for exactly that command (docs/classroom.md); never setcap a shared "
        "interpreter"
    )


def fix_capture(
    *,
    platform: str = sys.platform,
    sysctl: Callable[[str], str | None],
    private_why: str | None,
    python: str | Path = sys.executable,
    prefix: str | Path = sys.prefix,
    euid: int | None = None,
    directory: Path = APPARMOR_DIR,
    run: Callable[[Sequence[str]], subprocess.CompletedProcess] | None = None,
) -> FixResult:
    """``labchat doctor --fix-capture``: install the AppArmor profile, or say what to do.

    Args:
        platform: ``sys.platform``.
        sysctl: reads a sysctl file by its path (None if it does not exist).
        private_why: why private mode is unavailable (None: it works, nothing to fix).
        python: the lab's interpreter.
        prefix: its environment (``sys.prefix``): the interpreter must be its own copy.
        euid: the effective user id (root installs, anyone else gets the text to run).
        directory: where AppArmor profiles live.
        run: runs ``apparmor_parser`` (tests pass a fake).

    Returns:
        A `FixResult`; ``applied`` only if a profile was installed and loaded.
    """
    if private_why is None:
        return FixResult(False, "nothing to fix: private capture works here")
    if platform == "darwin":
        return FixResult(
            False, "macOS has no user namespaces; for host capture: " + macos_bpf_fix()
        )
    if platform.startswith("win"):
        return FixResult(False, "Windows has no user namespaces; " + WINDOWS_NPCAP_FIX)
    if sysctl(APPARMOR_SYSCTL) != "1":
        fix = private_fix(private_why, platform=platform, sysctl=sysctl)
        return FixResult(False, f"not an AppArmor restriction ({private_why}); fix: {fix}")
    own = dedicated_interpreter(python, prefix=prefix)
    if own is None:
        real = Path(python).resolve()
        return FixResult(
            False,
            f"{python} is {real}, an interpreter other users and programs share: a profile "
            "for it would let all of them create user namespaces. Make the lab a venv with "
            "its own interpreter and fix that one:\n"
            "    python3 -m venv --copies ~/labchat-venv\n"
            "    ~/labchat-venv/bin/pip install labchat\n"
            "    sudo ~/labchat-venv/bin/labchat doctor --fix-capture",
        )
    profile = apparmor_profile(own)
    target = directory / apparmor_profile_path(own).name
    if (os.geteuid() if euid is None else euid) != 0:
        return FixResult(
            False,
            f"run `sudo {Path(python).parent / 'labchat'} doctor --fix-capture`, or install "
            f"this profile yourself as {target} and load it with "
            f"`sudo apparmor_parser -r {target}`:\n\n{profile}",
        )
    path = install_apparmor_profile(own, directory=directory, run=run)
    return FixResult(True, f"installed and loaded {path}:\n\n{profile}")
