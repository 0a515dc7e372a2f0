"""Lab latency: wall time of every capture scenario and of every notebook, end to end.

Part of ``make bench`` (``bench.run --only lab``); on its own, for the notebooks alone::

    .venv/bin/python -m bench.labtime                      # every notebook, capture mode auto
    LABCHAT_CAPTURE_MODE=offline .venv/bin/python -m bench.labtime 03 10 11
    .venv/bin/python -m bench.labtime --scenarios          # the capture scenarios too

It prints one line per notebook and the total (issue 13 asks for all notebooks together to
stay under 90 s); it asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT


def scenarios(log=print) -> list[dict]:
    try:
        from labchat.capture import run_scenario
        from labchat.capture import scenarios as sc
    except ImportError as exc:
        log(f"  scenarios not available: {exc}")
        return []
    rows = []
    for name in sc.names():
        out = Path(tempfile.mkdtemp(prefix=f"labchat-bench-{name}-"))
        t = time.perf_counter()
        try:
            result = run_scenario(name, out)
            mode = getattr(getattr(result, "mode", None), "name", str(getattr(result, "mode", "")))
            error = None
        except Exception as exc:  # report it, keep timing the others
            mode, error = "", f"{type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(out, ignore_errors=True)
        rows.append(
            {"scenario": name, "seconds": time.perf_counter() - t, "mode": mode, "error": error}
        )
        log(f"  scenario {name:12s} {rows[-1]['seconds']:6.2f} s  {mode} {error or ''}")
    return rows


def notebooks(timeout: float = 180.0, log=print, only: list[str] | None = None) -> list[dict]:
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(prefix) for prefix in only)]
    if not paths:
        log("  no notebooks in notebooks/")
        return []
    import nbformat
    from nbclient import NotebookClient

    rows = []
    for path in paths:
        # Executed in memory from notebooks/ (as nbval does): the .ipynb is never rewritten.
        nb = nbformat.read(path, as_version=4)
        t = time.perf_counter()
        error = None
        try:
            NotebookClient(
                nb,
                timeout=int(timeout),
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
            ).execute()
        except Exception as exc:
            lines = str(exc).strip().splitlines() or [""]
            error = f"{type(exc).__name__}: {lines[-1][:200]}"
        seconds = time.perf_counter() - t
        rows.append({"notebook": path.name, "seconds": seconds, "error": error})
        log(f"  notebook {path.name:34s} {seconds:6.2f} s  {error or 'ok'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Time the notebooks (and, with ``--scenarios``, the capture scenarios); print a table."""
    import os

    parser = argparse.ArgumentParser(prog="python -m bench.labtime", description=__doc__)
    parser.add_argument("only", nargs="*", help="notebook name prefixes (default: all)")
    parser.add_argument("--scenarios", action="store_true", help="time the scenarios too")
    args = parser.parse_args(argv)
    mode = os.environ.get("LABCHAT_CAPTURE_MODE", "auto")
    if args.scenarios:
        scenarios()
    rows = notebooks(only=args.only)
    total = sum(r["seconds"] for r in rows)
    failed = [r["notebook"] for r in rows if r["error"]]
    print(
        f"  {len(rows)} notebooks, capture mode {mode}: {total:.1f} s in all"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
