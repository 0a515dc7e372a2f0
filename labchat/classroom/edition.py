"""Student editions: the lab notebooks with their answers removed and solution cells emptied.

The source notebooks mark answers with cell tags (`labchat.classroom`): ``answer`` cells lose
their ``<details>`` blocks (or go entirely), ``solution`` cells are emptied, ``check`` cells
stay. `student_notebook` makes one edition in memory; `write_student_edition` writes them all
and first proves, with `leaks`, that no line of an answer survived anywhere in the result: not
in a cell, an output or an attachment. ``labchat student-edition OUT`` (``make student``) runs it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat

from ..resources import notebooks
from .exercise import ANSWER, CHECK, SOLUTION

__all__ = [
    "PLACEHOLDER",
    "EditionError",
    "cell_tags",
    "checked_student_edition",
    "leaks",
    "lint",
    "secret_lines",
    "strip_answer",
    "student_notebook",
    "write_student_edition",
]

#: What an emptied solution cell says (after the cell's leading comment lines, which stay).
PLACEHOLDER = "# your code here\n"

# An answer in markdown: a folded <details> block, with the blank lines after it.
_DETAILS = re.compile(r"<details\b[^>]*>.*?</details>[ \t]*\n?", re.DOTALL | re.IGNORECASE)
_ATTACHMENT_REF = re.compile(r"attachment:([^\s)\"'>]+)")
# Shorter lines ("x = 1", "</details>") are too common to prove a leak; lines shared with
# the notebook's public part never count.
_MIN_SECRET = 8


class EditionError(RuntimeError):
    """A student edition would leak an answer, or a notebook breaks the tag convention."""


def cell_tags(cell: Any) -> list[str]:
    """The tags of a notebook cell (an empty list if it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def strip_answer(source: str) -> str:
    """A markdown answer cell's source without its ``<details>`` answers: the question."""
    return _DETAILS.sub("", source).rstrip() + "\n" if _DETAILS.search(source) else ""


def _strings(node: Any) -> Iterator[str]:
    """Every string inside a JSON-like value (dict keys excluded)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _strings(value)


def _lines(texts: Iterable[str]) -> set[str]:
    return {line.strip() for text in texts for line in text.splitlines() if line.strip()}


def _answer_parts(cell: Any) -> tuple[list[str], list[str]]:
    """(secret texts, public texts) of one cell: what only the teacher's edition may show."""
    tags = cell_tags(cell)
    whole = [cell.get("source", "")]
    extra = [*_strings(cell.get("outputs", [])), *_strings(cell.get("attachments", {}))]
    if SOLUTION in tags:
        head = _leading_comments(cell.get("source", ""))
        return [cell.get("source", "")[len(head) :], *extra], [head]
    if ANSWER in tags and cell.cell_type == "code":
        return whole + extra, []
    if ANSWER in tags:
        source = cell.get("source", "")
        blocks = _DETAILS.findall(source)
        if not blocks:  # an answer cell without <details> is an answer as a whole
            return whole + extra, []
        question = _DETAILS.sub("", source)
        used = set(_ATTACHMENT_REF.findall(question))
        attachments = cell.get("attachments", {})
        hidden = [*_strings({k: v for k, v in attachments.items() if k not in used})]
        shown = [*_strings({k: v for k, v in attachments.items() if k in used})]
        return blocks + hidden, [question, *shown]
    return [], whole + extra


def secret_lines(nb: Any) -> set[str]:
    """Lines that only answers and solutions hold in `nb` (what a student edition must lack).

    Every line of an answer block, a solution cell, and their outputs and attachments (base64
    images are single long lines), minus lines the public part of the notebook shows anyway.
    """
    secret: list[str] = []
    public: list[str] = []
    for cell in nb.cells:
        s, p = _answer_parts(cell)
        secret += s
        public += p
    common = _lines(public)
    return {line for line in _lines(secret) - common if len(line) >= _MIN_SECRET}


def leaks(source: Any, student: Any) -> list[str]:
    """The answer lines of `source` that appear anywhere in `student` (empty: no leak)."""
    text = "\n".join(_strings(dict(student)))
    return sorted(line for line in secret_lines(source) if line in text)


def _leading_comments(source: str) -> str:
    """The comment lines a cell starts with (a solution cell's instructions), with newlines."""
    head = []
    for line in source.splitlines(keepends=True):
        if not line.lstrip().startswith("#"):
            break
        head.append(line)
    return "".join(head)


def _empty_solution(source: str) -> str:
    """Keep a solution cell's leading comment lines, replace the rest by `PLACEHOLDER`."""
    head = _leading_comments(source)
    return head + ("" if not head or head.endswith("\n") else "\n") + PLACEHOLDER


def student_notebook(nb: Any, *, keep_outputs: bool = False) -> Any:
    """The student edition of one notebook (a new object; `nb` is not changed).

    Args:
        nb: a notebook (``nbformat.NotebookNode``, version 4).
        keep_outputs: keep the outputs of ordinary code cells (those of solution and check
            cells always go); by default every output goes, so the learner's run is the only
            one they see.

    Returns:
        The student edition: ``answer`` cells without their answers, ``solution`` cells
        emptied, every ``check`` cell as it was, ``metadata.labchat.edition = "student"``
        (the rest of ``metadata.labchat``, objectives and minutes, stays).
    """
    out = copy.deepcopy(nb)
    cells = []
    for cell in out.cells:
        tags = cell_tags(cell)
        if ANSWER in tags:
            if cell.cell_type == "code":
                continue
            question = strip_answer(cell.source)
            if not question.strip():
                continue
            cell.source = question
            cell.metadata["tags"] = [t for t in tags if t != ANSWER]
            if not cell.metadata["tags"]:
                del cell.metadata["tags"]
            used = set(_ATTACHMENT_REF.findall(cell.source))
            if "attachments" in cell:
                cell.attachments = {k: v for k, v in cell.attachments.items() if k in used}
                if not cell.attachments:
                    del cell["attachments"]
        if cell.cell_type == "code":
            cell.metadata.pop("execution", None)  # the teacher's run's timestamps
            if SOLUTION in tags:
                cell.source = _empty_solution(cell.source)
            if not keep_outputs or SOLUTION in tags or CHECK in tags:
                cell.outputs = []
                cell.execution_count = None
        cells.append(cell)
    out.cells = cells
    out.metadata["labchat"] = {**out.metadata.get("labchat", {}), "edition": "student"}
    return out


def lint(nb: Any) -> list[str]:
    """Where `nb` breaks the answer/check convention (notebooks/README.md); empty if nowhere.

    Checks: every markdown cell with a ``<details>`` answer is tagged ``answer``; ``solution``
    and ``check`` cells are code cells; no cell is both an answer and a solution or check;
    every solution cell has a check cell after it; learning objectives, where the notebook
    has them, map every exercise and only real ones.
    """
    problems = []
    pending_solution: int | None = None
    for i, cell in enumerate(nb.cells):
        tags = set(cell_tags(cell))
        where = f"cell {i}"
        if cell.cell_type == "markdown" and _DETAILS.search(cell.source) and ANSWER not in tags:
            problems.append(f"{where}: a <details> answer in an untagged cell (tag it {ANSWER!r})")
        for tag in (SOLUTION, CHECK):
            if tag in tags and cell.cell_type != "code":
                problems.append(f"{where}: only code cells can be tagged {tag!r}")
        if ANSWER in tags and tags & {SOLUTION, CHECK}:
            problems.append(f"{where}: an {ANSWER!r} cell cannot also be {sorted(tags)}")
        if SOLUTION in tags and pending_solution is None:
            pending_solution = i
        if CHECK in tags:
            pending_solution = None
    if pending_solution is not None:
        problems.append(f"cell {pending_solution}: a {SOLUTION!r} cell with no {CHECK!r} after it")
    return problems + _lint_objectives(nb)


def _lint_objectives(nb: Any) -> list[str]:
    """Objectives (``metadata.labchat.objectives``), if given, name real exercises, all of them."""
    from .worksheet import exercises

    objectives = nb.metadata.get("labchat", {}).get("objectives")
    if objectives is None:
        return []
    numbers = {n for n, _ in exercises(nb)}
    mapped = {e for o in objectives for e in o.get("exercises", [])}
    problems = [
        f"objectives name exercise {e}, which does not exist" for e in sorted(mapped - numbers)
    ]
    problems += [f"exercise {e} is in no objective" for e in sorted(numbers - mapped)]
    return problems


def checked_student_edition(path: str | Path, *, keep_outputs: bool = False) -> Any:
    """The student edition of one notebook, refused if the notebook breaks the convention or
    the edition would leak an answer.

    Args:
        path: the teacher's notebook.
        keep_outputs: keep the outputs of ordinary cells.

    Returns:
        The student edition (an nbformat notebook, validated).

    Raises:
        EditionError: the convention is broken, or an answer would show.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    problems = lint(nb)
    if problems:
        raise EditionError(f"{path.name}: {problems[0]}")
    edition = student_notebook(nb, keep_outputs=keep_outputs)
    leaked = leaks(nb, edition)
    if leaked:
        raise EditionError(f"{path.name}: the student edition would show {leaked[0]!r}")
    nbformat.validate(edition)
    return edition


def write_student_edition(
    out: str | Path,
    sources: Sequence[str | Path] | None = None,
    *,
    keep_outputs: bool = False,
) -> list[Path]:
    """Write the student edition of each notebook into `out`.

    Args:
        out: the output directory (created if missing; files of the same name are replaced).
        sources: notebooks to convert; the lab's own notebooks if None.
        keep_outputs: see `student_notebook`.

    Returns:
        The paths written, in order.

    Raises:
        EditionError: a notebook breaks the convention, or its edition would leak an answer
            (nothing is written for it).
        FileNotFoundError: a source notebook does not exist.
    """
    paths = [Path(p) for p in (sources if sources is not None else notebooks())]
    if not paths:
        raise EditionError("no notebooks to convert")
    out = Path(out)
    written = []
    for path in paths:
        edition = checked_student_edition(path, keep_outputs=keep_outputs)
        out.mkdir(parents=True, exist_ok=True)
        target = out / path.name
        nbformat.write(edition, target)
        written.append(target)
    return written
