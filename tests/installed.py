"""labchat as a user gets it: a wheel built from this checkout, installed in a fresh venv.

The venv lives in a world-readable temporary directory outside the checkout, made from an
interpreter every user can run, so other system users (the students of tests/test_jupyterhub.py,
``nobody`` in tests/test_install.py) can run it too. CI runs as root in a clone at an unknown
path, possibly under /root (mode 700): nothing installed here may need the checkout.

    wheel = build_wheel(tmp)
    venv = make_venv(tmp / "venv", wheel)            # venv / "bin" / "labchat"
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = [
    "REPO",
    "as_user",
    "build_wheel",
    "make_venv",
    "public_tempdir",
    "world_readable_python",
]

REPO = Path(__file__).resolve().parent.parent
#: pip downloads and installs JupyterLab, matplotlib, scapy, ... (from its cache: ~1 min).
INSTALL_TIMEOUT = 600


def _others_can_run(path: Path) -> bool:
    """Every directory above `path` is searchable by others, and `path` is readable."""
    real = path.resolve()
    for parent in real.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(real.stat().st_mode & stat.S_IROTH)


def world_readable_python() -> str | None:
    """An interpreter (3.10+) that any user can run, with its standard library: this one if
    it qualifies, else the system's ``/usr/bin/python3``; None if there is none."""
    base = Path(getattr(sys, "_base_executable", sys.executable))
    candidates = [(base, Path(sys.base_prefix))]
    system = Path("/usr/bin/python3")
    if system.exists():
        candidates.append((system, Path("/usr")))
    for exe, prefix in candidates:
        lib = prefix / "lib"
        if exe.exists() and _others_can_run(exe) and lib.exists() and _others_can_run(lib):
            probe = subprocess.run(
                [str(exe), "-c", "import sys, venv; print(sys.version_info >= (3, 10))"],
                capture_output=True,
                text=True,
            )
            if probe.stdout.strip() == "True":
                return str(exe)
    return None


def public_tempdir(prefix: str) -> Path:
    """A new directory under /tmp that every user may read and enter (mode 0755)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None))
    path.chmod(0o755)
    return path


#: Not part of a source tree to build from (setuptools would pack a stale build/lib too).
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "node_modules",
    "__pycache__",
    ".*_cache",
    "certs",
    "student",
    "worksheets",
    "demo",  # make demo writes captures/demo: not a reference capture
)


def build_wheel(out: Path) -> Path:
    """``pip wheel`` a clean copy of this checkout into `out`; the wheel's path."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="labchat-src-") as tmp:
        src = Path(tmp) / "labchat"
        shutil.copytree(REPO, src, ignore=_NOT_SOURCE)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "-w",
                str(out),
                str(src),
            ],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{proc.stderr[-3000:]}")
    (wheel,) = out.glob("labchat-*.whl")
    return wheel


def make_venv(where: Path, wheel: Path, *, extras: str = "", python: str | None = None) -> Path:
    """A fresh venv at `where` with the wheel (and its ``[extras]``) installed; its path.

    Raises:
        RuntimeError: no interpreter others can run (the venv would be useless to them).
        subprocess.CalledProcessError: venv or pip failed.
    """
    python = python or world_readable_python()
    if python is None:
        raise RuntimeError("no Python 3.10+ that other users can run (install python3-venv)")
    subprocess.run([python, "-m", "venv", str(where)], check=True, timeout=120)
    spec = f"{wheel}[{extras}]" if extras else str(wheel)
    proc = subprocess.run(
        [str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", spec],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        cwd=where,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip install {spec} failed:\n{proc.stderr[-3000:]}")
    for path in [where, *where.rglob("*")]:  # pip honours the umask; make it readable to all
        if path.is_dir():
            path.chmod(path.stat().st_mode | 0o755)
        elif not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o444)
    return where


def as_user(argv: list[str], uid: int, gid: int) -> list[str]:
    """`argv` run as another user (``setpriv``, util-linux): for tests that run as root."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("setpriv (util-linux) is needed to run a command as another user")
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]
