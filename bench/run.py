"""`make bench`: every labchat benchmark, a table on stdout, JSON and plots in bench/results/.

    .venv/bin/python -m bench.run                 # everything (about 8 minutes)
    .venv/bin/python -m bench.run --only fanout   # one part: handshakes|fanout|capacity|lab|attacks
    .venv/bin/python -m bench.run --quick         # smaller N and shorter windows

Only loopback (127.0.0.1) is used; every server and load-generator process is started and
stopped here. Servers are measured interleaved (labchat, Redis, labchat, ...) because the
machine is shared: ratios of neighbours are steadier than absolute rates.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from bench import attacks, capacity, handshakes, labtime
from bench.common import (
    RESULTS,
    lab,
    labchat_server,
    machine,
    raise_nofile,
    redis_server,
    redis_tls_supported,
)
from bench.fanout import Generator, processes_for

FANOUT_N = (10, 50, 100, 200, 500, 1000)
FIXED_SENDERS = 10
FIXED_RATE = 2.0  # messages/s per sender: 20 messages/s for the room
MAX_SENDERS = 8
WINDOW = 16  # own messages in flight per sender in "as fast as they can"
TARGET_N = 200  # every member sends 1 message/s


def log(*args: object) -> None:
    print(*args, flush=True)


def fanout(lab_, ns, seconds: float) -> list[dict]:
    rows = []
    kinds = ["labchat"] + (["redis"] if redis_tls_supported() is None else [])
    if len(kinds) == 1:
        log(f"  Redis skipped: {redis_tls_supported()}")
    for i, n in enumerate(ns):
        order = kinds if i % 2 == 0 else kinds[::-1]
        for kind in order:
            start = labchat_server if kind == "labchat" else redis_server
            t = time.monotonic()
            with start(lab_) as (port, _), Generator(kind, port, lab_.ca, n) as gen:
                s_fixed, s_max = min(n, FIXED_SENDERS), min(n, MAX_SENDERS)
                gen.add(n, processes_for(n), range(max(s_fixed, s_max, n if n == TARGET_N else 0)))
                runs = [("fixed", list(range(s_fixed)), FIXED_RATE)]
                if n == TARGET_N:
                    runs.append(("1/s each", list(range(n)), 1.0))
                runs.append(("max", list(range(s_max)), None))
                for mode, senders, rate in runs:
                    r = gen.run(seconds, senders, rate, WINDOW)
                    r.update(server=kind, mode=mode)
                    rows.append(r)
                    log(
                        f"  {kind:7s} N={n:5d} {mode:8s} S={len(senders):4d} "
                        f"{r['deliveries_per_s']:9.0f} deliveries/s  p50 {r['p50_ms']:7.1f} "
                        f"p99 {r['p99_ms']:7.1f} max {r['max_ms']:7.1f} ms  lost {r['lost']} "
                        f"dup {r['dup']} dead {r['dead']}"
                    )
            log(f"    ({kind} N={n}: {time.monotonic() - t:.1f} s with setup)")
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    for mode in ("fixed", "1/s each", "max"):
        for n in sorted({r["members"] for r in rows}):
            pick = {r["server"]: r for r in rows if r["members"] == n and r["mode"] == mode}
            if "labchat" in pick and "redis" in pick:
                a, b = pick["labchat"], pick["redis"]
                out.append(
                    {
                        "members": n,
                        "mode": mode,
                        "deliveries_ratio": a["deliveries_per_s"] / b["deliveries_per_s"],
                        "p99_ratio": a["p99_ms"] / b["p99_ms"] if b["p99_ms"] else math.nan,
                    }
                )
    return out


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"labchat": ("tab:blue", "o"), "redis": ("tab:red", "s")}
    for kind, (color, marker) in styles.items():
        for mode, line in (("max", "-"), ("fixed", "--")):
            pts = sorted(
                (r["members"], r) for r in rows if r["server"] == kind and r["mode"] == mode
            )
            if not pts:
                continue
            ns = [n for n, _ in pts]
            label = f"{kind}, {'as fast as possible' if mode == 'max' else '20 msg/s total'}"
            ax1.plot(
                ns,
                [r["deliveries_per_s"] for _, r in pts],
                line,
                color=color,
                marker=marker,
                label=label,
            )
            ax2.plot(
                ns, [r["p99_ms"] for _, r in pts], line, color=color, marker=marker, label=label
            )
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="members in the room (N)",
        ylabel="deliveries / s",
        title="Room fan-out throughput",
    )
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="members in the room (N)",
        ylabel="p99 send-to-receipt latency (ms)",
        title="Room fan-out p99 latency",
    )
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def targets(res: dict) -> list[tuple[str, bool | None, str]]:
    out = []
    hs = res.get("handshakes") or []
    for row in hs:
        out.append(
            (
                f"handshakes TLS {row['tls']} ({row['client']}) >= 0.8 x s_server",
                row["ratio"] >= 0.8,
                f"{row['ratio']:.2f}",
            )
        )
    fan = res.get("fanout") or []
    if fan:
        labchat_rows = [r for r in fan if r["server"] == "labchat"]
        bad = [r for r in labchat_rows if r["lost"] or r["dup"]]
        out.append(
            (
                "zero loss/dup at every N (labchat)",
                not bad,
                f"{sum(r['lost'] for r in labchat_rows)} lost, "
                f"{sum(r['dup'] for r in labchat_rows)} dup",
            )
        )
        t = [r for r in labchat_rows if r["members"] == TARGET_N and r["mode"] == "1/s each"]
        if t:
            out.append(
                (
                    f"N={TARGET_N}, 1 msg/s per client: p99 < 50 ms",
                    t[0]["p99_ms"] < 50,
                    f"{t[0]['p99_ms']:.1f} ms",
                )
            )
        q = [x for x in res.get("ratios", []) if x["members"] == 100 and x["mode"] == "max"]
        if q:
            out.append(
                (
                    "N=100 deliveries/s >= 0.25 x Redis",
                    q[0]["deliveries_ratio"] >= 0.25,
                    f"{q[0]['deliveries_ratio']:.3f}",
                )
            )
    att = res.get("attacks")
    if att:
        worst = max((r["login_max_ms"] or math.inf) for r in att["rows"])
        out.append(
            (
                "a classmate's login during every classroom attack < 1 s (worst)",
                worst < 1000,
                f"{worst:.0f} ms",
            )
        )
    cap = res.get("capacity")
    if cap:
        out.append(
            (
                "capacity (p99 < 200 ms at 1 msg/min/client)",
                None,
                f"{cap['max_clients_ok']} clients ({cap['stopped']})",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only", choices=("handshakes", "fanout", "capacity", "lab", "attacks"), action="append"
    )
    ap.add_argument("--quick", action="store_true", help="N up to 200, shorter windows")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    parts = args.only or ["handshakes", "fanout", "capacity", "lab", "attacks"]
    raise_nofile()
    from pathlib import Path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    res: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    m = res["machine"]
    log(
        f"machine: {m['nproc']} x {m['cpu']}, {m['mem_gib']} GiB, Python {m['python']}, "
        f"{m['python_openssl']}, {m['redis']}, load {m['loadavg_at_start']}"
    )
    ns = FANOUT_N if not args.quick else (10, 50, 100, 200)
    with lab(max(max(ns), max(capacity.STEPS))) as lab_:
        if "handshakes" in parts:
            log("\n== 1. TLS handshakes per second (interleaved A/B, median of pairs)")
            res["handshakes"] = handshakes.run(
                lab_, pairs=3, seconds=2 if not args.quick else 1, log=log
            )
        if "fanout" in parts:
            log("\n== 2. Room fan-out (labchat room vs Redis pub/sub channel, both TLS)")
            res["fanout"] = fanout(lab_, ns, 4.0 if not args.quick else 2.0)
            res["ratios"] = ratios(res["fanout"])
            for x in res["ratios"]:
                log(
                    f"  labchat/Redis N={x['members']:5d} {x['mode']:8s} deliveries/s ratio "
                    f"{x['deliveries_ratio']:.3f}  p99 ratio {x['p99_ratio']:.2f}"
                )
            plot(res["fanout"], out / "fanout.png")
        if "capacity" in parts:
            log("\n== 3. Capacity and memory (1 msg/min/client, p99 < 200 ms, zero loss)")
            res["capacity"] = capacity.run(lab_, budget=120 if not args.quick else 30, log=log)
    if "lab" in parts:
        log("\n== 4. Lab latency (capture scenarios, notebooks)")
        res["scenarios"] = labtime.scenarios(log=log)
        res["notebooks"] = labtime.notebooks(log=log)
    if "attacks" in parts:
        log("\n== 5. Classroom attacks (issue 11) against labchat serve, a classmate logging in")
        res["attacks"] = attacks.run(quick=args.quick, log=log)
    res["elapsed_s"] = time.monotonic() - t0
    log("\n== Targets")
    for name, ok, value in targets(res):
        mark = "n/a " if ok is None else ("MET " if ok else "MISS")
        log(f"  [{mark}] {name}: {value}")
    name = (
        "latest.json"
        if set(parts) == {"handshakes", "fanout", "capacity", "lab", "attacks"}
        else ("latest-" + "-".join(parts) + ".json")
    )
    (out / name).write_text(json.dumps(res, indent=1, default=str) + "\n")
    log(
        f"\nwrote {out / name}"
        + (f" and {out / 'fanout.png'}" if "fanout" in parts else "")
        + f" in {res['elapsed_s']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
