"""Shared pieces of the benchmarks: lab certificates, bench users, servers in their own process.

Everything binds 127.0.0.1 only. Every process started here is stopped by the same code that
started it (context managers), with a timeout, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labchat.auth import hash_password
from labchat.certs import create_lab_certs, lab_cert_paths

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PASSWORD = "bench-password"

# The bench measures chat, not password hashing: bench accounts are hashed with tiny scrypt
# parameters (the record carries its parameters, labchat.auth.verify_password honours them),
# so logging in 1000 clients costs milliseconds instead of the ~1000 x 60 ms that the real
# OWASP-strength default would (docs/performance.md gives the real per-login cost).
BENCH_SCRYPT = {"n": 16, "r": 1, "p": 1}

# Flood control (5 lines/s after a burst of 10) would be what "as fast as they can" measures;
# the bench lifts it. Everything else keeps its default except max_clients (capacity test).
SERVER_LIMITS = {
    "flood_rate": 1e9,
    "flood_burst": 1_000_000,
    "max_clients": 6000,
    # Every bench client connects from 127.0.0.1, where a classroom has one address per
    # student: lift the per-address budgets (bench/attacks.py keeps the defaults).
    "max_pending_per_source": 6000,
    "max_handshakes_per_source": 6000,
}


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Lab:
    """A temporary directory with lab certificates and a users file of bench accounts."""

    dir: Path
    ca: Path
    cert: Path
    key: Path
    users: Path

    def client_context(self, tls_version: str | None = None) -> ssl.SSLContext:
        from labchat.tls import client_context

        return client_context(cafile=self.ca, tls_version=tls_version)


def user_name(i: int) -> str:
    return f"u{i}"


@contextlib.contextmanager
def lab(n_users: int = 0) -> Iterator[Lab]:
    """Certificates (EC P-256, labchat.certs defaults) and *n_users* bench accounts."""
    tmp = Path(tempfile.mkdtemp(prefix="labchat-bench-"))
    try:
        create_lab_certs(tmp)
        paths = lab_cert_paths(tmp)
        users = tmp / "users.json"
        write_users(users, n_users)
        yield Lab(tmp, Path(paths.ca_cert), Path(paths.server_cert), Path(paths.server_key), users)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_users(path: Path, n: int) -> None:
    record = hash_password(PASSWORD, **BENCH_SCRYPT)  # one salt for all: bench only
    data = {"version": 1, "users": {user_name(i): record for i in range(n)}}
    path.write_text(json.dumps(data))
    os.chmod(path, 0o600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def labchat_server(
    lab_: Lab,
    *,
    tls_version: str | None = None,
    extra: dict | None = None,
    root: Path | None = None,
) -> Iterator[tuple[int, subprocess.Popen]]:
    """`python -m labchat serve` in its own process on a free loopback port.

    *root* is the directory whose ``labchat/`` package runs (A/B runs of a changed copy);
    `python -m` puts the working directory first on sys.path.
    """
    port = free_port()
    limits = {**SERVER_LIMITS, **(extra or {})}
    cmd = [sys.executable, "-m", "labchat", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--certs", str(lab_.dir), "--users", str(lab_.users)]
    if tls_version:
        cmd += ["--tls-version", tls_version]
    for name, value in limits.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(
        cmd,
        cwd=root or ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc=proc)
        yield port, proc
    finally:
        stop(proc)


def redis_tls_supported() -> str | None:
    """None if redis-server with TLS is usable, else what to install."""
    exe = shutil.which("redis-server")
    if exe is None:
        return (
            "redis-server not found: apt-get install -y redis-server (or run `make bench` as root)"
        )
    return None


@contextlib.contextmanager
def redis_server(lab_: Lab) -> Iterator[tuple[int, subprocess.Popen]]:
    """Debian's redis-server, TLS only (`--port 0`), on a free loopback port, no persistence."""
    port = free_port()
    cmd = [
        "redis-server",
        "--port", "0",
        "--tls-port", str(port),
        "--bind", HOST,
        "--tls-cert-file", str(lab_.cert),
        "--tls-key-file", str(lab_.key),
        "--tls-ca-cert-file", str(lab_.ca),
        "--tls-auth-clients", "no",
        "--save", "",
        "--appendonly", "no",
        "--maxclients", "6000",
        "--protected-mode", "no",
        "--dir", str(lab_.dir),
        "--logfile", "",
        "--loglevel", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            wait_port(port, proc=proc)
        except RuntimeError:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"redis-server failed: {err[-500:]}") from None
        yield port, proc
    finally:
        stop(proc)


@contextlib.contextmanager
def openssl_server(lab_: Lab, tls_version: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """`openssl s_server` with the same certificate and key, one version."""
    port = free_port()
    flag = {"1.2": "-tls1_2", "1.3": "-tls1_3"}[tls_version]
    cmd = ["openssl", "s_server", "-accept", f"{HOST}:{port}", "-cert", str(lab_.cert)]
    cmd += ["-key", str(lab_.key), flag, "-quiet", "-naccept", "100000000"]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, proc=proc)
        yield port, proc
    finally:
        stop(proc)


def rss_kib(pid: int) -> int:
    """VmRSS of *pid* in KiB (from /proc/PID/status)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", text, re.M).group(1))


def thread_count(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", text, re.M).group(1))


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    openssl_cli = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
    redis = ""
    if shutil.which("redis-server"):
        redis = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True
        ).stdout.split(" sha=")[0]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_openssl": ssl.OPENSSL_VERSION,
        "openssl_cli": openssl_cli.strip(),
        "redis": redis.strip(),
        "loadavg_at_start": os.getloadavg(),
    }


def percentile_from_hist(hist: list[int], q: float) -> float:
    """The q-quantile (0..1) of a `Hist` bucket list, in seconds."""
    total = sum(hist)
    if not total:
        return float("nan")
    rank = q * (total - 1)
    seen = 0
    for i, count in enumerate(hist):
        seen += count
        if seen > rank:
            return Hist.upper(i)
    return Hist.upper(len(hist) - 1)


class Hist:
    """Latency histogram: log buckets of 2 % from 10 us to 100 s (bounded memory, mergeable)."""

    LO = 1e-5
    RATIO = 1.02
    BUCKETS = 820  # 1e-5 * 1.02**820 ~ 1.1e2 s

    import math as _math

    _LOG_RATIO = _math.log(RATIO)

    def __init__(self) -> None:
        self.counts = [0] * self.BUCKETS
        self.max = 0.0

    def add(self, seconds: float) -> None:
        if seconds > self.max:
            self.max = seconds
        if seconds <= self.LO:
            i = 0
        else:
            i = int(self._math.log(seconds / self.LO) / self._LOG_RATIO) + 1
            if i >= self.BUCKETS:
                i = self.BUCKETS - 1
        self.counts[i] += 1

    @classmethod
    def upper(cls, i: int) -> float:
        return cls.LO * cls.RATIO**i
