"""Student editions: answers out, solution cells emptied, check cells kept and still running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from exercise_notebook import ANSWER_TEXT, RIGHT_ANSWERS, exercise_notebook

from labchat import resources
from labchat.classroom import edition
from labchat.classroom.edition import (
    PLACEHOLDER,
    EditionError,
    cell_tags,
    leaks,
    lint,
    secret_lines,
    student_notebook,
    write_student_edition,
)

LAB_NOTEBOOKS = resources.notebooks()


def _text(nb: nbformat.NotebookNode) -> str:
    return json.dumps(nb, ensure_ascii=False)


def test_lab_notebooks_are_found_and_follow_the_convention():
    assert [p.name[:2] for p in LAB_NOTEBOOKS][:8] == [f"{i:02d}" for i in range(8)]
    for path in LAB_NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert lint(nb) == [], path.name
        assert any(edition.ANSWER in cell_tags(c) for c in nb.cells), f"{path.name}: no answers"


@pytest.mark.parametrize("path", LAB_NOTEBOOKS, ids=[p.stem for p in LAB_NOTEBOOKS])
def test_student_edition_of_a_lab_notebook_keeps_questions_and_checks_but_no_answer(
    path: Path, tmp_path: Path
):
    (written,) = write_student_edition(tmp_path, [path])
    source = nbformat.read(path, as_version=4)
    student = nbformat.read(written, as_version=4)
    nbformat.validate(student)
    text = _text(student)

    assert secret_lines(source), "the source notebook has answers to hide"
    assert leaks(source, student) == []
    assert "<details" not in text and "<summary>Answer" not in text
    assert not any(edition.ANSWER in cell_tags(c) for c in student.cells)
    # Every question stays (the text before its <details>), every check cell is unchanged.
    markdown = "\n".join(c.source for c in student.cells if c.cell_type == "markdown")
    # (An exercise's answer may also be a cell of its own after its check cell, holding only
    # the <details> block: the four-cell form of notebooks/README.md. That cell goes.)
    for cell in source.cells:
        if edition.ANSWER in cell_tags(cell) and cell.cell_type == "markdown":
            question = cell.source.split("<details", 1)[0].strip()
            assert question in markdown
    checks = [c.source for c in source.cells if edition.CHECK in cell_tags(c)]
    assert [c.source for c in student.cells if edition.CHECK in cell_tags(c)] == checks
    assert checks, "the lab notebooks' self-checks are tagged"
    # A fresh worksheet: nobody's run shows yet.
    assert all(
        not c.outputs and c.execution_count is None for c in student.cells if c.cell_type == "code"
    )
    assert student.metadata["labchat"]["edition"] == "student"
    assert student.metadata["labchat"]["objectives"] == source.metadata["labchat"]["objectives"]


def test_student_edition_removes_answer_cells_outputs_attachments_and_solutions():
    source = exercise_notebook()
    student = student_notebook(source, keep_outputs=True)
    text = _text(student)

    assert ANSWER_TEXT not in text
    assert "attachment:syn.png" not in text and "attachments" not in text
    assert "worked answer" not in text  # the answer code cell, its source and its output
    assert "iVBORw0KGgo" not in text  # the PNG of the attachment and of the answer's output
    for answer in RIGHT_ANSWERS.values():
        assert answer.splitlines()[0] not in text
    assert leaks(source, student) == []
    # The question of the answer cell stays; the worked-answer code cell goes entirely.
    assert "Put the client's ISN (absolute) into `isn_c`." in student.cells[2].source
    assert len(student.cells) == len(source.cells) - 1
    solutions = [c for c in student.cells if edition.SOLUTION in cell_tags(c)]
    assert [c.source for c in solutions] == [
        "# Exercise 1: the client's ISN\n" + PLACEHOLDER,  # its leading comment stays
        PLACEHOLDER,
    ]
    assert all(c.outputs == [] for c in solutions)


def test_leaks_finds_an_answer_left_anywhere():
    source = exercise_notebook()
    student = student_notebook(source)
    assert leaks(source, student) == []
    student.cells[-1].outputs = [nbformat.v4.new_output("stream", text=ANSWER_TEXT + "\n")]
    assert leaks(source, student) == [ANSWER_TEXT]
    student = student_notebook(source)
    student.cells[0].source += "\n" + RIGHT_ANSWERS["isn_c"]
    assert leaks(source, student) == [RIGHT_ANSWERS["isn_c"]]


def test_write_student_edition_refuses_to_write_an_edition_that_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    src = tmp_path / "99-exercise.ipynb"
    nbformat.write(exercise_notebook(), src)
    monkeypatch.setattr(edition, "student_notebook", lambda nb, **kw: nb)  # a broken converter
    with pytest.raises(EditionError, match="would show"):
        write_student_edition(tmp_path / "out", [src])
    assert not (tmp_path / "out" / src.name).exists()


def test_lint_names_untagged_answers_and_solutions_without_a_check():
    nb = exercise_notebook()
    assert lint(nb) == []
    nb.cells[2].metadata["tags"] = []
    nb.cells[7].metadata["tags"] = []  # the second check
    nb.cells[10].metadata["tags"] = []  # the last check: now solution 6 has none after it
    problems = lint(nb)
    assert problems == [
        "cell 2: a <details> answer in an untagged cell (tag it 'answer')",
        "cell 6: a 'solution' cell with no 'check' after it",
    ]


def test_make_student_writes_every_lab_notebook(tmp_path: Path):
    out = tmp_path / "student"
    proc = subprocess.run(
        [sys.executable, "-m", "labchat", "student-edition", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in LAB_NOTEBOOKS]
    assert proc.stdout.splitlines() == [str(out / p.name) for p in LAB_NOTEBOOKS]


def test_check_cells_run_in_both_editions():
    """Run All goes through in the student edition: checks say "not answered yet"."""
    from nbclient import NotebookClient

    teacher = exercise_notebook()
    student = student_notebook(teacher)
    for nb in (teacher, student):
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
        assert not [
            o
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.outputs
            if o.output_type == "error" or o.get("name") == "stderr"
        ]
    lines = {
        edition_name: [
            o.data["text/plain"]
            for c in nb.cells
            if edition.CHECK in cell_tags(c)
            for o in c.outputs
            if o.output_type == "display_data"
        ]
        for edition_name, nb in (("teacher", teacher), ("student", student))
    }
    assert lines["teacher"] == ["✔ isn_c: right", "✔ login_len: right"]
    assert lines["student"] == [
        "… isn_c: not answered yet (set isn_c above, then run this cell again)",
        "… login_len: not answered yet (set login_len above, then run this cell again)",
    ]


def test_labchat_lab_student_refuses_an_edition_that_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from labchat.classroom.launch import LaunchError, prepare_workdir

    src = tmp_path / "99-exercise.ipynb"
    nbformat.write(exercise_notebook(), src)
    monkeypatch.setattr(edition, "student_notebook", lambda nb, **kw: nb)  # a broken converter
    with pytest.raises(LaunchError, match="would show"):
        prepare_workdir(tmp_path / "work", sources=[src], edition="student")
    assert not (tmp_path / "work" / src.name).exists()
