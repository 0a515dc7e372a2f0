"""Auto-checked work: run a learner's notebook and report every check as JSON.

``labchat check NOTEBOOK`` executes the notebook from top to bottom in a fresh kernel (errors
do not stop the run, a hung cell is interrupted), then reads the cells tagged ``check``:

* each `labchat.classroom.check` call in them left a record (MIME type
  `labchat.classroom.exercise.MIME`): the exercise is ``right``, ``wrong`` or ``unanswered``;
* a check cell that only asserts the lesson's facts is a *self-check*: ``passed``, or
  ``failed`` with the assertion's message (``error`` if it raised anything else);
* an exception in any other cell is listed under ``errors``.

The report is one JSON object (`NotebookReport.to_json`) a teacher can collect, one per
learner and notebook. `collect` reads an already executed notebook, for a run made elsewhere
(a learner's server on JupyterHub, say).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .. import __version__
from .edition import cell_tags
from .exercise import CHECK, MIME, STATUSES

__all__ = [
    "CELL_TIMEOUT",
    "EXERCISE_STATUSES",
    "SELF_CHECK_STATUSES",
    "Exercise",
    "NotebookReport",
    "SelfCheck",
    "check_notebook",
    "collect",
]

#: Seconds one cell may run before it is interrupted (nbval's limit in `make test` too).
CELL_TIMEOUT = 120

PASSED, FAILED, ERROR, NOT_RUN = "passed", "failed", "error", "not run"
SELF_CHECK_STATUSES = (PASSED, FAILED, ERROR, NOT_RUN)
EXERCISE_STATUSES = (*STATUSES, ERROR, NOT_RUN)

# The exercises of a check cell that never ran, read from its source: check("name", ...).
_CHECK_CALL = re.compile(r"\bcheck\(\s*[\"']([A-Za-z_]\w*)[\"']")


@dataclass(frozen=True)
class Exercise:
    """One `check()` result: the variable it checked and what it said."""

    name: str
    status: str  # right, wrong, unanswered; error (the cell raised first), not run
    message: str
    cell: int
    cell_id: str | None


@dataclass(frozen=True)
class SelfCheck:
    """A check cell without `check()` calls: the lesson's facts asserted on the capture."""

    title: str
    status: str  # passed, failed, error, not run
    message: str
    cell: int
    cell_id: str | None


@dataclass
class NotebookReport:
    """Everything ``labchat check`` found in one notebook."""

    notebook: str
    student: str | None
    exercises: list[Exercise] = field(default_factory=list)
    self_checks: list[SelfCheck] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float | None = None
    checked_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    )

    @property
    def ok(self) -> bool:
        """Every exercise right and every self-check passed (and at least one of them)."""
        results = [e.status == "right" for e in self.exercises]
        results += [s.status == PASSED for s in self.self_checks]
        return bool(results) and all(results)

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts per status, every status named (0 if none)."""
        ex = Counter(e.status for e in self.exercises)
        sc = Counter(s.status for s in self.self_checks)
        return {
            "exercises": {s: ex.get(s, 0) for s in EXERCISE_STATUSES},
            "self_checks": {s: sc.get(s, 0) for s in SELF_CHECK_STATUSES},
        }

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON-ready object."""
        return {
            "notebook": self.notebook,
            "student": self.student,
            "checked_at": self.checked_at,
            "labchat": __version__,
            "seconds": self.seconds,
            "ok": self.ok,
            "summary": self.summary(),
            "exercises": [asdict(e) for e in self.exercises],
            "self_checks": [asdict(s) for s in self.self_checks],
            "errors": self.errors,
        }


def _title(nb: Any, index: int) -> str:
    """The nearest markdown heading above cell `index` (what the self-check is about)."""
    for cell in reversed(nb.cells[:index]):
        if cell.cell_type != "markdown":
            continue
        for line in reversed(cell.source.splitlines()):
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return f"cell {index}"


def _error(outputs: list[Any]) -> Any | None:
    return next((o for o in outputs if o.get("output_type") == "error"), None)


def collect(nb: Any, *, notebook: str = "", student: str | None = None) -> NotebookReport:
    """Read the checks of an executed notebook (no kernel is started).

    Args:
        nb: the executed notebook (``nbformat.NotebookNode``).
        notebook: its name, for the report.
        student: whose work it is, for the report.

    Returns:
        The `NotebookReport` (``seconds`` is None: nothing was run here).
    """
    report = NotebookReport(notebook, student)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        error = _error(cell.get("outputs", []))
        cell_id = cell.get("id")
        if CHECK not in cell_tags(cell):
            if error is not None:
                report.errors.append(
                    {"cell": i, "cell_id": cell_id, "ename": error.ename, "evalue": error.evalue}
                )
            continue
        records = [
            o["data"][MIME]
            for o in cell.get("outputs", [])
            if o.get("output_type") == "display_data" and MIME in o.get("data", {})
        ]
        for r in records:
            report.exercises.append(Exercise(r["name"], r["status"], r["message"], i, cell_id))
        if records and error is None:
            continue
        if records:  # it reported, then raised: the cell's later checks never ran
            report.exercises.append(
                Exercise("(rest of the cell)", ERROR, f"{error.ename}: {error.evalue}", i, cell_id)
            )
            continue
        title = _title(nb, i)
        if cell.get("execution_count") is None and not cell.get("outputs"):
            names = _CHECK_CALL.findall(cell.source)
            for name in names:
                report.exercises.append(Exercise(name, NOT_RUN, "the cell did not run", i, cell_id))
            if not names:
                message = "the cell did not run"
                report.self_checks.append(SelfCheck(title, NOT_RUN, message, i, cell_id))
        elif error is None:
            report.self_checks.append(SelfCheck(title, PASSED, "", i, cell_id))
        elif error.ename == "AssertionError":
            report.self_checks.append(SelfCheck(title, FAILED, error.evalue, i, cell_id))
        else:
            message = f"{error.ename}: {error.evalue}"
            report.self_checks.append(SelfCheck(title, ERROR, message, i, cell_id))
    return report


def _owner(path: Path) -> str | None:
    try:
        import pwd

        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (ImportError, KeyError, OSError):
        return None


def check_notebook(
    path: str | Path,
    *,
    student: str | None = None,
    cell_timeout: int = CELL_TIMEOUT,
    kernel_name: str = "python3",
) -> NotebookReport:
    """Run a learner's notebook in a fresh kernel and report its checks.

    The notebook runs in its own directory, every cell even after an error; a cell running
    longer than `cell_timeout` is interrupted and counts as an error. The file is not changed.

    Args:
        path: the ``.ipynb`` file.
        student: whose work it is (default: the file's owner).
        cell_timeout: seconds per cell.
        kernel_name: the Jupyter kernel to run it in (``python3``: this Python).

    Returns:
        The `NotebookReport`.

    Raises:
        FileNotFoundError: no such file.
        nbformat.reader.NotJSONError: the file is not a notebook.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name=kernel_name,
        allow_errors=True,
        interrupt_on_timeout=True,
        resources={"metadata": {"path": str(path.resolve().parent)}},
    )
    t0 = time.monotonic()
    stopped = None
    try:
        client.execute()
    except (DeadKernelError, CellTimeoutError) as exc:  # the cells after it count as not run
        stopped = {"cell": None, "cell_id": None, "ename": type(exc).__name__, "evalue": str(exc)}
    report = collect(nb, notebook=path.name, student=student or _owner(path))
    if stopped is not None:
        report.errors.append(stopped)
    report.seconds = round(time.monotonic() - t0, 1)
    return report
