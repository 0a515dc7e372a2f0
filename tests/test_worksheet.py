"""One printable page per notebook, generated from the notebooks (`make worksheets`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from exercise_notebook import ANSWER_TEXT, exercise_notebook

from labchat import resources
from labchat.classroom.edition import ANSWER, cell_tags, strip_answer
from labchat.classroom.worksheet import exercises, print_pdf, worksheet_html, write_worksheets

LAB_NOTEBOOKS = resources.notebooks()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _answers(nb: nbformat.NotebookNode) -> list[str]:
    """The first sentence of every folded answer, as the markdown filter renders it."""
    from nbconvert.filters import markdown2html_mistune

    found = []
    for cell in nb.cells:
        if ANSWER in cell_tags(cell) and cell.cell_type == "markdown":
            body = cell.source[len(strip_answer(cell.source).rstrip()) :]
            body = re.sub(r"</?details>|<summary>.*?</summary>", "", body).strip()
            html = markdown2html_mistune(body.split("\n\n")[0])
            found.append(re.sub(r"</?p>", "", html).strip()[:60])
    return found


def test_every_lab_notebook_gets_a_worksheet_with_its_objectives_and_questions(tmp_path: Path):
    written = write_worksheets(tmp_path)
    assert [p.name for p in written] == [p.stem + ".html" for p in LAB_NOTEBOOKS]
    for source, page in zip(LAB_NOTEBOOKS, written, strict=True):
        nb = nbformat.read(source, as_version=4)
        html = page.read_text()
        meta = nb.metadata["labchat"]
        assert f"about {meta['minutes']} minutes" in html
        for objective in meta["objectives"]:
            assert objective["objective"].split("`")[0] in html
        numbers = [n for n, _ in exercises(nb)]
        assert numbers == list(range(1, len(numbers) + 1)) and numbers
        assert html.count('<li value="') == len(numbers)
        assert "<details" not in html and "Answer</summary>" not in html
        for answer in _answers(nb):
            assert answer not in html, (source.name, answer)


def test_a_worksheet_lists_written_and_computed_exercises_without_answers():
    html = worksheet_html(exercise_notebook(), "99-exercise.ipynb")
    assert "Put the client&#x27;s ISN" in html or "Put the client's ISN" in html
    assert "How many bytes did alice" in html  # the computed exercise's question
    assert ANSWER_TEXT not in html and "segments[0].seq" not in html


def test_make_worksheets_command_writes_them(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "labchat.classroom.worksheet", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "ws").glob("*.html"))) == len(LAB_NOTEBOOKS)


def _pages(pdf: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf.read_bytes()))


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium to print (.ci/run installs it)")
def test_every_worksheet_prints_on_one_page(tmp_path: Path):
    for page in write_worksheets(tmp_path):
        pdf = print_pdf(page, page.with_suffix(".pdf"))
        assert _pages(pdf) == 1, page.name
