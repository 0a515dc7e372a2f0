"""Handshakes per second: `labchat serve` vs `openssl s_server`, same certificate, key and version.

Two clients drive both servers: `openssl s_time -new` (a fresh full handshake per connection)
and a Python loop of `ssl` handshakes. Servers are measured interleaved (A B A B ...) so that
load from other processes on the machine hits both alike; the ratio is the median of the
per-pair ratios.
"""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import time

from bench.common import HOST, Lab, labchat_server, openssl_server


def s_time(port: int, lab_: Lab, version: str, seconds: float) -> float:
    flag = {"1.2": "-tls1_2", "1.3": "-tls1_3"}[version]
    cmd = ["openssl", "s_time", "-connect", f"{HOST}:{port}", "-new", flag]
    cmd += ["-time", str(int(seconds)), "-CAfile", str(lab_.ca)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
    if not m:
        raise RuntimeError(f"unexpected s_time output: {out[-300:]}")
    # "real seconds" is whole seconds (time(NULL)); -time is the budget it ran for.
    return int(m.group(1)) / max(float(m.group(2)), seconds)


def python_handshakes(port: int, lab_: Lab, version: str, seconds: float) -> float:
    ctx = lab_.client_context(version)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        with socket.create_connection((HOST, port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=HOST):
                count += 1
    return count / (time.perf_counter() - start)


def run(lab_: Lab, *, pairs: int = 3, seconds: float = 2.0, log=print) -> list[dict]:
    rows = []
    for version in ("1.3", "1.2"):
        with (
            labchat_server(lab_, tls_version=version) as (lport, _),
            openssl_server(lab_, version) as (oport, _),
        ):
            for client_name, client in (("s_time -new", s_time), ("python ssl", python_handshakes)):
                client(lport, lab_, version, 1)  # warm-up (imports, page cache)
                client(oport, lab_, version, 1)
                lab_rates, ossl_rates, ratios = [], [], []
                for i in range(pairs):
                    order = ((lport, lab_rates), (oport, ossl_rates))
                    for port, bucket in order if i % 2 == 0 else order[::-1]:
                        bucket.append(client(port, lab_, version, seconds))
                    ratios.append(lab_rates[-1] / ossl_rates[-1])
                row = {
                    "tls": version,
                    "client": client_name,
                    "labchat_per_s": statistics.median(lab_rates),
                    "openssl_per_s": statistics.median(ossl_rates),
                    "ratio": statistics.median(ratios),
                    "labchat_runs": lab_rates,
                    "openssl_runs": ossl_rates,
                }
                rows.append(row)
                log(
                    f"  TLS {version} {client_name:12s} labchat {row['labchat_per_s']:7.0f}/s  "
                    f"s_server {row['openssl_per_s']:7.0f}/s  ratio {row['ratio']:.2f}"
                )
    return rows
