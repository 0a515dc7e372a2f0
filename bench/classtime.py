"""How long a learner needs for each notebook: measured run time plus reading and exercises.

For every lab notebook it measures what a machine can measure and states the rest as rates:

* **run**: the notebook executed end to end (nbclient, in memory, like nbval), in the capture
  mode this machine uses: the seconds a learner waits for their cells;
* **reading**: the words of its narration (markdown, answers left out) at 130 words a minute,
  a careful pace for technical text with tables and figures (general non-fiction is read at
  about 240: Brysbaert 2019, https://doi.org/10.1016/j.jml.2019.104047);
* **code**: half a minute per code cell to read the code and look at what it printed or drew;
* **exercises**: 4 minutes per written question, 6 per computed one (write code, run the
  check, fix).

The estimate is their sum, rounded up to 5 minutes. ``--write`` stores it as
``metadata.labchat.minutes`` in each notebook (metadata only: no cell or output changes), where
the worksheets and docs/classroom.md take it from. Writes bench/results/classtime.json.

    .venv/bin/python -m bench.classtime [--write] [--docs]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.labtime import notebooks as run_notebooks  # noqa: E402
from labchat.classroom.edition import cell_tags, strip_answer  # noqa: E402
from labchat.classroom.exercise import ANSWER, SOLUTION  # noqa: E402

RESULTS = ROOT / "bench" / "results"
WORDS_PER_MINUTE = 130
CODE_CELL_MIN = 0.5
WRITTEN_MIN = 4.0
COMPUTED_MIN = 6.0

_WORD = re.compile(r"[A-Za-z0-9][\w'-]*")


def narration_words(nb: nbformat.NotebookNode) -> int:
    """Words a learner reads: markdown cells, answers folded away (not read before trying)."""
    words = 0
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        text = strip_answer(cell.source) if ANSWER in cell_tags(cell) else cell.source
        words += len(_WORD.findall(re.sub(r"<[^>]+>", " ", text)))
    return words


def estimate(path: Path, run_s: float) -> dict:
    nb = nbformat.read(path, as_version=4)
    words = narration_words(nb)
    code = sum(1 for c in nb.cells if c.cell_type == "code")
    written = sum(1 for c in nb.cells if ANSWER in cell_tags(c) and c.cell_type == "markdown")
    computed = sum(1 for c in nb.cells if SOLUTION in cell_tags(c))
    parts = {
        "run": run_s / 60,
        "reading": words / WORDS_PER_MINUTE,
        "code": code * CODE_CELL_MIN,
        "exercises": written * WRITTEN_MIN + computed * COMPUTED_MIN,
    }
    total = sum(parts.values())
    return {
        "notebook": path.name,
        "run_s": round(run_s, 1),
        "words": words,
        "code_cells": code,
        "written": written,
        "computed": computed,
        "minutes_parts": {k: round(v, 1) for k, v in parts.items()},
        "minutes": int(5 * math.ceil(total / 5)),
    }


def write_minutes(path: Path, minutes: int) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata.setdefault("labchat", {})["minutes"] = minutes
    nbformat.write(nb, path)


DOC = ROOT / "docs" / "classroom.md"
TABLE_HEAD = "| notebook | minutes | run | learning objectives (exercises) |\n|---|---:|---:|---|\n"


def docs_table(rows: list[dict]) -> str:
    """The time and objectives table of docs/classroom.md, from the notebooks' metadata."""
    lines = [TABLE_HEAD]
    for r in rows:
        path = ROOT / "notebooks" / r["notebook"]
        meta = nbformat.read(path, as_version=4).metadata.get("labchat", {})
        objectives = "<br>".join(
            f"{o['objective']} ({', '.join(str(e) for e in o['exercises'])})"
            for o in meta.get("objectives", [])
        )
        lines.append(
            f"| `{path.stem}` | {meta.get('minutes', r['minutes'])} | {r['run_s']:.0f} s "
            f"| {objectives} |\n"
        )
    return "".join(lines)


def write_docs(rows: list[dict]) -> None:
    """Replace the table in docs/classroom.md (header to the first line that is not a row)."""
    text = DOC.read_text()
    start = text.index(TABLE_HEAD)
    end = start + len(TABLE_HEAD)
    while text.startswith("| `", end):
        end = text.index("\n", end) + 1
    DOC.write_text(text[:start] + docs_table(rows) + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.classtime")
    parser.add_argument("--write", action="store_true", help="store minutes in the notebooks")
    parser.add_argument(
        "--docs", action="store_true", help="rewrite docs/classroom.md's table (after --write)"
    )
    args = parser.parse_args(argv)
    rows = []
    for run in run_notebooks():
        if run["error"]:
            print(f"{run['notebook']}: {run['error']}")
            return 1
        rows.append(estimate(ROOT / "notebooks" / run["notebook"], run["seconds"]))
    print(f"{'notebook':34s} {'run':>6s} {'words':>6s} {'code':>5s} {'ex':>3s} {'minutes':>8s}")
    for r in rows:
        print(
            f"{r['notebook']:34s} {r['run_s']:5.1f}s {r['words']:6d} {r['code_cells']:5d} "
            f"{r['written'] + r['computed']:3d} {r['minutes']:8d}"
        )
    total = sum(r["minutes"] for r in rows)
    print(f"{'all':34s} {'':6s} {'':6s} {'':5s} {'':3s} {total:8d}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "rates": {
            "words_per_minute": WORDS_PER_MINUTE,
            "code_cell_min": CODE_CELL_MIN,
            "written_min": WRITTEN_MIN,
            "computed_min": COMPUTED_MIN,
        },
        "notebooks": rows,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (RESULTS / "classtime.json").write_text(json.dumps(out, indent=2) + "\n")
    if args.write:
        for r in rows:
            write_minutes(ROOT / "notebooks" / r["notebook"], r["minutes"])
    if args.docs:
        write_docs(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
