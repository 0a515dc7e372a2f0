"""Helpers shared by the test modules (fixtures live in conftest.py).

Import them as ``from helpers import wait_until``: pytest puts ``tests/`` on ``sys.path``
(rootdir-relative imports, as conftest.py itself is imported).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

__all__ = [
    "ROOT",
    "TIMEOUT",
    "FakeClock",
    "eventually",
    "nobody_dir",
    "nobody_python",
    "open_fds",
    "private_unavailable",
    "python_env",
    "rss_bytes",
    "run_in_namespace",
    "skip_without_private",
    "wait_until",
]

#: Seconds any single wait in a test may take before it counts as a hang.
TIMEOUT = 5.0

#: The repository (the directory holding labchat/, tests/, notebooks/, captures/).
ROOT = Path(__file__).resolve().parent.parent


def eventually(predicate: Callable[[], object], timeout: float = TIMEOUT) -> bool:
    """Poll *predicate* every 10 ms until it is true or *timeout* seconds have passed.

    Returns:
        Whether it became true. For a wait whose outcome the test reports itself (a figure
        measured after things settle); `wait_until` is the one that fails the test.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT, what: str = "") -> None:
    """Poll *predicate* until it is true, for state that has no event to wait on.

    Args:
        predicate: Called every 10 ms; the wait ends as soon as it returns something true.
        timeout: Seconds before the wait counts as a hang.
        what: Named in the failure message ("timed out after 2.0 s waiting for <what>").

    Raises:
        AssertionError: *predicate* stayed false for *timeout* seconds.
    """
    if not eventually(predicate, timeout):
        raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def python_env(**extra: str) -> dict[str, str]:
    """This environment with this checkout's labchat first on PYTHONPATH (for child Pythons).

    Args:
        **extra: more variables to set.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


# --------------------------------------------------------------------------- processes


def rss_bytes() -> int:
    """This process's resident set size (Linux: VmRSS in /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    """How many file descriptors this process has open (Linux: /proc/self/fd)."""
    return len(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------------- namespaces


@functools.cache
def private_unavailable() -> str | None:
    """Why a private user + network namespace cannot be entered here (None: it can); probed once."""
    from labchat.capture import modes

    return modes.private_unavailable()


def skip_without_private() -> pytest.MarkDecorator:
    """A mark that skips a test where no private user + network namespace can be entered.

    CI runs as root on Debian, where the namespace always works: there the tests run.
    """
    why = private_unavailable()
    return pytest.mark.skipif(why is not None, reason=f"no private user+network namespace: {why}")


def run_in_namespace(code: str, *, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a fresh private user + network namespace (``unshare``).

    Returns:
        The finished process (text output captured); the caller checks its return code.
    """
    from labchat.capture import modes

    unshare = modes.unshare_command()
    assert unshare is not None, "no unshare binary (util-linux)"
    return subprocess.run(
        [*unshare, sys.executable, "-c", code],
        capture_output=True, text=True, timeout=timeout, env=python_env(),
    )  # fmt: skip


def nobody_python() -> tuple[list[str], dict[str, str]]:
    """A command that runs this Python's labchat as uid 65534 (nobody), for the tests of an
    ordinary user's capture; skips the calling test where there is none.

    This venv's interpreter may live under a directory only root can enter (/root/.pyenv):
    then the system Python of the same version stands in, with this checkout and the venv's
    site-packages on its PYTHONPATH.

    Returns:
        ``(argv, env)``: run ``[*argv, "-c", code, ...]`` with ``env``.
    """
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("not root (or no setpriv): cannot switch to uid 65534")
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    site = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *site])
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for exe in (sys.executable, shutil.which(version), f"/usr/bin/{version}"):
        if not exe:
            continue
        # Through sh, so an interpreter nobody may not open directly fails in the probe, here.
        argv = [*drop, "/bin/sh", "-c", 'exec "$0" "$@"', exe]
        probe = [*argv, "-c", "import scapy, cryptography, labchat.capture.network"]
        if subprocess.run(probe, capture_output=True, env=env, timeout=60).returncode == 0:
            return argv, env
    pytest.skip("no Python interpreter that uid 65534 can run with labchat importable")


@contextlib.contextmanager
def nobody_dir(prefix: str = "labchat-nobody-") -> Iterator[Path]:
    """A temporary directory uid 65534 may write in, removed at exit.

    pytest's tmp_path lives under a 0700 directory of root's, where nobody cannot reach.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        path.chmod(0o777)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class FakeClock:
    """A monotonic clock the test moves by hand: pass it as ``clock=`` (LoginThrottle, ...)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
