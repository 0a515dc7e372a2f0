"""One printable page per notebook: objectives, time, the exercise questions and room to answer.

Generated from the notebooks themselves, so it never drifts from them: the title, the time
estimate and the learning objectives (each with the exercises that practise it) come from
the notebook's ``metadata.labchat``; the questions are the ``answer`` cells without their
answers (`labchat.classroom.edition`), rendered with nbconvert's markdown filter. The page is
HTML with print styles for A4 and US Letter; `print_pdf` turns it into a PDF with a headless
Chromium if there is one.

    python -m labchat.classroom.worksheet OUT      # what `make worksheets` runs
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat

from ..resources import notebooks
from .edition import cell_tags, strip_answer
from .exercise import ANSWER, CHECK, SOLUTION

__all__ = ["exercises", "lab_metadata", "main", "print_pdf", "worksheet_html", "write_worksheets"]

_NUMBER = re.compile(r"^\*\*(\d+)\.\*\*\s*")

_STYLE = """
@page { size: A4; margin: 14mm 16mm; }
body { font: 10pt/1.35 "DejaVu Sans", Helvetica, Arial, sans-serif; color: #111; margin: 0; }
header { display: flex; justify-content: space-between; align-items: baseline;
         border-bottom: 1.5pt solid #111; padding-bottom: 2mm; margin-bottom: 3mm; }
h1 { font-size: 15pt; margin: 0; }
.meta { font-size: 9pt; text-align: right; }
.who { margin: 0 0 3mm; font-size: 9.5pt; }
h2 { font-size: 11pt; margin: 3mm 0 1.5mm; }
ul.objectives { margin: 0; padding-left: 5mm; font-size: 9.5pt; }
ol.questions { margin: 0; padding-left: 6mm; }
ol.questions > li { margin-bottom: 1.5mm; page-break-inside: avoid; }
ol.questions p { margin: 0; }
.answer { border-bottom: 0.6pt solid #999; height: 6.2mm; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 9pt; }
footer { margin-top: 3mm; font-size: 8pt; color: #555; border-top: 0.6pt solid #999;
         padding-top: 1.5mm; }
"""


def lab_metadata(nb: Any) -> dict[str, Any]:
    """``metadata.labchat`` of a lab notebook: ``minutes`` and ``objectives`` (may be empty)."""
    return dict(nb.metadata.get("labchat", {}))


def exercises(nb: Any) -> list[tuple[int, str]]:
    """(number, question markdown) of each exercise, answers removed.

    A written exercise is an ``answer`` markdown cell (its text before the ``<details>``); a
    computed one is the markdown cell before a ``solution`` cell. Questions start with their
    number in bold (``**3.**``); one without a number gets the next.
    """
    found: list[tuple[int, str]] = []
    for i, cell in enumerate(nb.cells):
        tags = cell_tags(cell)
        if cell.cell_type == "markdown" and ANSWER in tags:
            question = strip_answer(cell.source).strip()
        elif SOLUTION in tags:
            before = [c for c in nb.cells[:i] if c.cell_type == "markdown"]
            question = before[-1].source.strip() if before else ""
        else:
            continue
        match = _NUMBER.match(question)
        number = int(match.group(1)) if match else (found[-1][0] + 1 if found else 1)
        text = _NUMBER.sub("", question)
        if question and all(n != number for n, _ in found):
            found.append((number, text))
    return found


def _title(nb: Any) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "labchat"


def _markdown(text: str) -> str:
    from nbconvert.filters import markdown2html_mistune

    return markdown2html_mistune(text)


#: What one A4 page holds in `_STYLE`: about 52 lines of 10 pt text; a ruled answer line is
#: 1.3 of them. Header, headings and footer take about 10; a question about 1 line per 95
#: characters of its text, an objective about one.
_PAGE_LINES, _RULED, _FIXED, _CHARS_PER_LINE = 52, 1.3, 10, 95


def _answer_lines(found: list[tuple[int, str]], objectives: int) -> int:
    """Ruled lines under each question so the page stays one page: 8 at most, 2 at least."""
    n = max(1, len(found))
    text = _FIXED + objectives + sum(1 + len(q) // _CHARS_PER_LINE for _, q in found)
    room = int((_PAGE_LINES - text) / _RULED)
    # 22 // n was the rule when the questions were short; a long question takes room from it.
    return max(2, min(8, 22 // n, room // n))


def worksheet_html(nb: Any, name: str, *, answer_lines: int | None = None) -> str:
    """The worksheet of one notebook, as a standalone HTML page.

    Args:
        nb: the (teacher's) notebook; its answers never reach the page.
        name: the notebook's file name (``01-watch-a-tcp-handshake.ipynb``).
        answer_lines: ruled lines under each question (default: what fills one page, 2 to 8).

    Returns:
        The HTML.
    """
    meta = lab_metadata(nb)
    title = html.escape(_title(nb))
    minutes = meta.get("minutes")
    number = name[:2]
    checks = sum(1 for c in nb.cells if CHECK in cell_tags(c))
    objectives = "".join(
        f"<li>{_markdown(o['objective'])[3:-5]}"
        f" <em>(exercise{'s' if len(o['exercises']) > 1 else ''} "
        f"{', '.join(str(e) for e in o['exercises'])})</em></li>"
        for o in meta.get("objectives", [])
    )
    found = exercises(nb)
    if answer_lines is None:
        answer_lines = _answer_lines(found, len(meta.get("objectives", [])))
    questions = "".join(
        f'<li value="{n}">{_markdown(text)}' + '<div class="answer"></div>' * answer_lines + "</li>"
        for n, text in found
    )
    time_text = f"about {minutes} minutes" if minutes else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>labchat {number}: {title}</title>
<style>{_STYLE}</style></head>
<body>
<header><h1>{number} · {title}</h1>
<div class="meta">labchat lab · {html.escape(name)}<br>{time_text}</div></header>
<p class="who">Name: ______________________________ &nbsp; Date: ______________ &nbsp;
Self-checks passed: ____ / {checks}</p>
<h2>You will be able to</h2>
<ul class="objectives">{objectives}</ul>
<h2>Exercises</h2>
<ol class="questions">{questions}</ol>
<footer>Open <code>{html.escape(name)}</code> in JupyterLab (<code>labchat lab</code>), run it,
then answer here. Generated from the notebook by <code>make worksheets</code>.</footer>
</body></html>
"""


def print_pdf(page: Path, pdf: Path, *, browser: str | None = None) -> Path:
    """Print an HTML page to PDF with headless Chromium.

    Raises:
        FileNotFoundError: no Chromium or Chrome on PATH.
        subprocess.CalledProcessError: it failed.
    """
    browser = browser or next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    if browser is None:
        raise FileNotFoundError("no chromium or google-chrome to print the PDF with")
    with tempfile.TemporaryDirectory(prefix="labchat-print-") as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",  # as root (CI) the sandbox cannot start
                "--disable-gpu",
                "--no-pdf-header-footer",
                f"--user-data-dir={profile}",
                f"--print-to-pdf={pdf}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return pdf


def write_worksheets(
    out: str | Path, sources: Sequence[str | Path] | None = None, *, pdf: bool = False
) -> list[Path]:
    """Write ``NN-name.html`` (and ``.pdf`` if asked) per notebook into `out`; the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in [Path(p) for p in (sources if sources is not None else notebooks())]:
        nb = nbformat.read(path, as_version=4)
        page = out / f"{path.stem}.html"
        page.write_text(worksheet_html(nb, path.name), encoding="utf-8")
        written.append(page)
        if pdf:
            written.append(print_pdf(page, page.with_suffix(".pdf")))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labchat.classroom.worksheet OUT [--pdf]``."""
    parser = argparse.ArgumentParser(prog="python -m labchat.classroom.worksheet")
    parser.add_argument("out", metavar="OUT")
    parser.add_argument("--pdf", action="store_true", help="also print each to PDF (Chromium)")
    args = parser.parse_args(argv)
    try:
        for path in write_worksheets(args.out, pdf=args.pdf):
            print(path)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"labchat: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
