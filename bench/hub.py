"""How many students one machine holds: JupyterHub, N students running notebook 01 at once.

The set-up of docs/classroom.md (tests/hubclass.py makes it: the built wheel in a venv every
user can read, one system user per student, LocalProcessSpawner). All students' servers are
started at once; then, for each N in --steps, the first N students run notebook 01 at the
same moment (a whole class pressing Run All together: the worst case), each in a kernel of
their own server, capturing in a private namespace of their own. Per step: how many passed
every self-check, the median and slowest run, peak memory of all student processes.

"Holds N" means: every one of the N runs passed and the slowest finished within --limit
seconds (60 by default: a learner waits a minute for Run All). Larger steps still run, to show
how it degrades, until one has a run that fails. Needs root and `make hub-deps`. Writes
bench/results/hub.json (with the load average before each step: other work on the machine
slows every number).

    sudo .venv/bin/python -m bench.hub                       # steps 1,5,10,15,20,30
    sudo .venv/bin/python -m bench.hub --steps 1,5,10 --venv /tmp/labchat-venv
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hubclass import find_proxy, run_class, stop_all, student_processes, trial_hub  # noqa: E402
from installed import build_wheel, make_venv, public_tempdir  # noqa: E402

RESULTS = ROOT / "bench" / "results"
NOTEBOOK = "01-watch-a-tcp-handshake.ipynb"


class RssSampler(threading.Thread):
    """Peak total resident memory (MiB) of the processes of `uids`, sampled every 0.5 s."""

    def __init__(self, uids: set[int]) -> None:
        super().__init__(daemon=True)
        self.uids = uids
        self.peak = 0.0
        self.stop = threading.Event()

    def total(self) -> float:
        kib = 0
        for pid in student_processes(self.uids):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        kib += int(line.split()[1])
            except OSError:
                continue
        return kib / 1024

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.peak = max(self.peak, self.total())


def measure(venv: Path, steps: list[int], limit: float) -> dict:
    proxy = find_proxy()
    if proxy is None:
        raise SystemExit("configurable-http-proxy is missing: run `make hub-deps`")
    rows = []
    biggest = max(steps)
    with trial_hub(venv, proxy, students=biggest) as hub:
        uids = hub.uids()

        # The class logs in: one server alone, then all the others at once.
        async def start(names: list[str]) -> float:
            async with hub.client() as client:
                await client.add_users(hub.students)
                t0 = time.monotonic()
                await asyncio.gather(*(client.start(s) for s in names))
                return time.monotonic() - t0

        first_start = asyncio.run(start(hub.students[:1]))
        all_start = asyncio.run(start(hub.students[1:])) if biggest > 1 else 0.0
        idle = RssSampler(uids).total()
        print(
            f"servers: 1 alone started in {first_start:.1f} s, the other {biggest - 1} at once "
            f"in {all_start:.1f} s; {biggest} idle servers use {idle:.0f} MiB",
            flush=True,
        )
        holds = 0
        for n in steps:
            sampler = RssSampler(uids)
            sampler.start()
            load_before = os.getloadavg()[0]
            run = asyncio.run(run_class(hub, NOTEBOOK, hub.students[:n]))
            sampler.stop.set()
            sampler.join()
            ok = [s for s, r in run.reports.items() if not isinstance(r, BaseException) and r.ok]
            times = [t["run"] for t in run.timings.values()]
            row = {
                "students": n,
                "passed": len(ok),
                "median_s": round(statistics.median(times), 1) if times else None,
                "max_s": round(max(times), 1) if times else None,
                "wall_s": round(run.run_seconds, 1),
                "peak_rss_mib": round(sampler.peak),
                "load_before": round(load_before, 2),
            }
            rows.append(row)
            print(
                f"N={n:3d}  passed {row['passed']:3d}/{n:<3d} median {row['median_s']:6.1f} s"
                f"  slowest {row['max_s']:6.1f} s  peak memory {row['peak_rss_mib']:6d} MiB",
                flush=True,
            )
            for student, report in run.reports.items():
                if isinstance(report, BaseException):
                    print(f"    {student}: {type(report).__name__}: {report}", flush=True)
                elif not report.ok:
                    bad = [
                        f"{c.title}: {c.status} {c.message}"
                        for c in report.self_checks
                        if c.status != "passed"
                    ]
                    bad += [f"{e['ename']}: {e['evalue']}" for e in report.errors]
                    print(f"    {student}: {'; '.join(bad)[:300]}", flush=True)
            if row["passed"] == n and (row["max_s"] or 0) <= limit:
                holds = n
            if row["passed"] < n:  # beyond this, larger classes fail too: stop
                break
        stop_all(hub)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "notebook": NOTEBOOK,
        "limit_s": limit,
        "servers": {
            "one_start_s": round(first_start, 1),
            "others_at_once_start_s": round(all_start, 1),
            "started": biggest,
            "idle_rss_mib": round(idle),
        },
        "steps": rows,
        "holds": holds,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hub", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="1,5,10,15,20,30", help="class sizes, ascending")
    parser.add_argument("--limit", type=float, default=60.0, help="slowest run allowed (s)")
    parser.add_argument("--venv", type=Path, help="reuse this venv (labchat[hub] installed)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.hub needs root (it creates system users and runs JupyterHub)")
        return 2
    steps = sorted({int(s) for s in args.steps.split(",")})
    tmp = None
    venv = args.venv
    if venv is None:
        tmp = public_tempdir("labchat-benchhub-")
        venv = make_venv(tmp / "venv", build_wheel(tmp / "wheel"), extras="hub")
    try:
        result = measure(venv, steps, args.limit)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hub.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"holds {result['holds']} students running {NOTEBOOK} at once within "
        f"{args.limit:.0f} s -> {RESULTS / 'hub.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
