"""Capacity and memory: how many logged-in TLS clients one `labchat serve` process holds.

One server process (`python -m labchat serve`); members are added in steps (each step only
pays the JOIN lines of its newcomers). At every step every member sends 1 message per minute
(staggered) for a measuring window; the step passes when nothing is lost and p99 < 200 ms.
Resident memory is VmRSS of the server process from /proc/PID/status after the step settles.
"""

from __future__ import annotations

import time

from bench.common import Lab, labchat_server, rss_kib, thread_count
from bench.fanout import Generator

STEPS = (250, 500, 1000, 1500, 2000, 3000, 4000)
P99_LIMIT_MS = 200.0
RATE = 1 / 60  # messages per second per client


def run(lab_: Lab, *, budget: float = 150.0, window: float = 10.0, log=print) -> dict:
    start = time.monotonic()
    rows = []
    best = 0
    stopped = "all steps passed"
    with labchat_server(lab_) as (port, proc):
        time.sleep(0.5)
        base_kib = rss_kib(proc.pid)
        with Generator("labchat", port, lab_.ca, max(STEPS)) as gen:
            for n in STEPS:
                if time.monotonic() - start > budget:
                    stopped = f"time budget ({budget:.0f} s) spent before {n} clients"
                    break
                t_add = time.monotonic()
                try:
                    gen.add(n - gen.members, processes=2 if n - gen.members <= 500 else 4)
                except (RuntimeError, TimeoutError) as exc:
                    stopped = f"could not connect {n} clients: {exc}"
                    break
                setup_s = time.monotonic() - t_add
                kib = rss_kib(proc.pid)
                r = gen.run(window, list(range(n)), RATE, drain=10.0)
                ok = r["lost"] == 0 and r["dup"] == 0 and r["dead"] == 0
                ok = ok and r["p99_ms"] < P99_LIMIT_MS
                row = {
                    "clients": n,
                    "rss_mib": kib / 1024,
                    "rss_per_client_kib": (kib - base_kib) / n,
                    "threads": thread_count(proc.pid),
                    "setup_s": setup_s,
                    "messages": r["sent"],
                    "deliveries": r["deliveries"],
                    "p50_ms": r["p50_ms"],
                    "p99_ms": r["p99_ms"],
                    "max_ms": r["max_ms"],
                    "lost": r["lost"],
                    "dup": r["dup"],
                    "ok": ok,
                }
                rows.append(row)
                log(
                    f"  {n:5d} clients  RSS {row['rss_mib']:7.1f} MiB "
                    f"({row['rss_per_client_kib']:5.1f} KiB/client)  threads {row['threads']:5d}  "
                    f"p50 {r['p50_ms']:6.1f} p99 {r['p99_ms']:6.1f} max {r['max_ms']:6.1f} ms  "
                    f"lost {r['lost']}  setup {setup_s:5.1f} s  {'ok' if ok else 'FAIL'}"
                )
                if not ok:
                    stopped = f"p99 or loss limit failed at {n} clients"
                    break
                best = n
    return {
        "max_clients_ok": best,
        "stopped": stopped,
        "baseline_rss_mib": base_kib / 1024,
        "steps": rows,
        "rate_per_client_per_s": RATE,
        "p99_limit_ms": P99_LIMIT_MS,
    }
