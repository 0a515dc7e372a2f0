"""The one child-process runner: capture jobs in a private user + network namespace.

`run_private` starts ``python -c`` under ``unshare --user --map-root-user --net`` and calls a
*job* there: a function ``job(names, dirs, mode, params) -> list[manifest]`` named as
``module:function`` (the loopback scenarios' `labchat.capture.loopback.capture_here`, the lab
network's `labchat.capture.network.capture_here`). The child writes one JSON result file;
whatever goes wrong in it comes back to the parent as one `CaptureError` line.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .modes import PROJECT_ROOT, CaptureError, CaptureMode, unshare_command

__all__ = ["Job", "bring_up_loopback", "child_env", "child_main", "run_private"]

#: What `run_private` runs in the child: ``job(names, dirs, mode, params) -> manifests``, with
#: the scenario names, one output directory per scenario, the capture mode to record in each
#: manifest and the job's JSON-able parameters; it returns one manifest per scenario.
Job = Callable[[Sequence[str], Sequence[Path], CaptureMode, dict[str, Any]], list[dict]]

_CHILD_TIMEOUT_S = 120.0

# netdevice(7): get and set an interface's flags.
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def bring_up_loopback() -> None:
    """``ip link set lo up`` without iproute2: SIOCSIFFLAGS on a socket (netdevice(7))."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            ifreq = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifreq))[1]
            if not flags & _IFF_UP:
                fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    except OSError:
        ip = shutil.which("ip")
        if ip is None:
            raise
        subprocess.run([ip, "link", "set", "lo", "up"], check=True, capture_output=True)


def child_env() -> dict[str, str]:
    """The environment for a labchat child process: this labchat first on its PYTHONPATH, and
    the sbin directories on PATH (ip, tc and nft live there, and a normal user's PATH may
    lack them)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    return env


def child_main(argv: Sequence[str]) -> int:
    """Entry point of the capture child inside the private namespace.

    Returns:
        0 when the job succeeded, 1 otherwise (the result file says why).
    """
    parser = argparse.ArgumentParser(prog="labchat-capture-child")
    parser.add_argument("--job", required=True, help="module:function")
    parser.add_argument("--result", required=True)
    parser.add_argument("--mode-json", required=True)
    parser.add_argument("--params-json", default="{}")
    parser.add_argument("pairs", nargs="+", help="NAME=DIR")
    args = parser.parse_args(argv)
    result: dict[str, Any]
    try:
        module, function = args.job.split(":")
        job = getattr(importlib.import_module(module), function)
        mode = CaptureMode(**json.loads(args.mode_json))
        names = [p.split("=", 1)[0] for p in args.pairs]
        dirs = [Path(p.split("=", 1)[1]) for p in args.pairs]
        manifests = job(names, dirs, mode, json.loads(args.params_json))
        result = {"ok": True, "manifests": manifests}
    except Exception as exc:  # reported to the parent as one line
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    Path(args.result).write_text(json.dumps(result))
    return 0 if result["ok"] else 1


def run_private(
    job: str,
    names: Sequence[str],
    dirs: Sequence[Path],
    mode: CaptureMode,
    params: dict[str, Any],
    *,
    label: str = "capture",
) -> list[dict[str, Any]]:
    """Run ``job`` on the scenarios in a child in a fresh private user + network namespace.

    Args:
        job: ``module:function`` of a `Job`, which the child imports and calls.
        names: scenario names.
        dirs: one output directory per scenario (created here, so the child can write them).
        mode: the capture mode, recorded in the manifests.
        params: JSON-able parameters for the job.
        label: what the errors call the child (``capture``, ``lab network capture``).

    Returns:
        The manifests the job returned.

    Raises:
        CaptureError: no ``unshare``, the child timed out, failed, or died before reporting.
    """
    cmd = unshare_command()
    if cmd is None:
        raise CaptureError("private mode needs the `unshare` binary (util-linux)")
    with tempfile.TemporaryDirectory(prefix="labchat-capture-") as tmp:
        result_file = Path(tmp) / "result.json"
        os.chmod(tmp, 0o777)  # writable by the child even when it runs as another user
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        argv = [
            *cmd,
            sys.executable,
            "-c",
            "import sys; from labchat.capture.child import child_main; "
            "sys.exit(child_main(sys.argv[1:]))",
            "--job",
            job,
            "--result",
            str(result_file),
            "--mode-json",
            json.dumps(asdict(mode)),
            "--params-json",
            json.dumps(params),
            *(f"{n}={d.resolve()}" for n, d in zip(names, dirs, strict=True)),
        ]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S, env=child_env()
            )
        except subprocess.TimeoutExpired as exc:
            raise CaptureError(f"{label} child timed out after {exc.timeout} s") from None
        if result_file.is_file():
            result = json.loads(result_file.read_text())
            if not result.get("ok"):
                raise CaptureError(f"{label} in the private namespace failed: {result['error']}")
            return result["manifests"]
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise CaptureError(f"{label} child failed before reporting: {tail}")
