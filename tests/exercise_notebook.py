"""A small exercise notebook that follows the answer/check convention (notebooks/README.md).

It has everything the lab notebooks 00-07 lack so far: solution cells, checks with
`labchat.classroom.check`, an answer block with an attachment, and a worked answer in a code
cell with an output. It reads the shipped `tcp-chat` capture (offline), so it runs in a few
seconds anywhere. Import it as ``from exercise_notebook import exercise_notebook``.
"""

from __future__ import annotations

import copy

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

__all__ = ["ANSWER_TEXT", "RIGHT_ANSWERS", "WRONG_ANSWERS", "exercise_notebook", "fill"]

#: A sentence that only the folded answer holds.
ANSWER_TEXT = "The SYN's own sequence number is the client's ISN, read it from segment 0."
#: A tiny PNG, attached to the answer cell (it must not survive in the student edition).
_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwAD"
    "hgGAWjR9awAAAABJRU5ErkJggg=="
)

#: Solution cell sources a learner might write: right ones and wrong ones.
RIGHT_ANSWERS = {
    "isn_c": "isn_c = cap.conn.segments[0].seq",
    "login_len": (
        "login_len = next(s.payload_len for s in cap.conn.segments\n"
        '                 if s.direction == "c->s" and s.payload_len)'
    ),
}
WRONG_ANSWERS = {
    "isn_c": "isn_c = cap.conn.segments[0].seq + 1",
    "login_len": "login_len = 'thirty-four'",
}

_SETUP = """\
import tempfile

from labchat import lab
from labchat.classroom import check

work = tempfile.TemporaryDirectory(prefix="labchat-exercise-")
cap = lab.capture_scenario("tcp-chat", work.name, mode="offline")
hs = cap.conn.handshake()
print(f"{len(cap.conn.segments)} segments in alice's connection")"""


def _cell(cell: nbformat.NotebookNode, *tags: str) -> nbformat.NotebookNode:
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def exercise_notebook() -> nbformat.NotebookNode:
    """The teacher's edition: solutions filled in, answers folded, outputs on answer cells."""
    worked = new_code_cell(
        "login = next(s for s in cap.conn.segments if s.payload_len)\n"
        "print('worked answer: the LOGIN segment is', login.index)",
        outputs=[
            new_output("stream", name="stdout", text="worked answer: the LOGIN segment is 5\n"),
            new_output("display_data", data={"image/png": _PNG, "text/plain": "<Figure 42>"}),
        ],
        execution_count=7,
    )
    answer_md = new_markdown_cell(
        "**1.** Put the client's ISN (absolute) into `isn_c`.\n\n"
        f"<details><summary>Answer</summary>\n\n{ANSWER_TEXT}\n\n"
        "![the SYN](attachment:syn.png)\n\n</details>"
    )
    answer_md["attachments"] = {"syn.png": {"image/png": _PNG}}
    cells = [
        new_markdown_cell("# Exercise fixture\n\nTwo exercises on the shipped `tcp-chat`."),
        new_code_cell(_SETUP),
        _cell(answer_md, "answer"),
        _cell(
            new_code_cell(f"# Exercise 1: the client's ISN\n{RIGHT_ANSWERS['isn_c']}"), "solution"
        ),
        _cell(new_code_cell('check("isn_c", hs.client_isn)'), "check"),
        new_markdown_cell("**2.** How many bytes did alice's `LOGIN` segment carry? `login_len`."),
        _cell(new_code_cell(RIGHT_ANSWERS["login_len"]), "solution"),
        _cell(
            new_code_cell(
                'line = next(text for d, text in cap.conn.app_lines() if d == "c->s")\n'
                'check("login_len", len(line) + 1, hint="count the newline too")'
            ),
            "check",
        ),
        _cell(worked, "answer"),
        new_markdown_cell("### Self-check: the handshake rule"),
        _cell(
            new_code_cell(
                "assert hs.syn_ack.ack == hs.client_isn + 1, 'the SYN-ACK acknowledges ISN + 1'\n"
                "print('self-check passed')"
            ),
            "check",
        ),
        new_code_cell("work.cleanup()"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def fill(nb: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """What a learner does in the student edition: write code into the solution cells.

    Each solution cell's placeholder is replaced by the answer for the variable its check cell
    (the next ``check`` cell) asks for; variables missing from `answers` stay unanswered.
    """
    nb = copy.deepcopy(nb)
    cells = nb.cells
    for i, cell in enumerate(cells):
        if "solution" not in cell.metadata.get("tags", []):
            continue
        check_cell = next(c for c in cells[i + 1 :] if "check" in c.metadata.get("tags", []))
        for name, source in answers.items():
            if f'check("{name}"' in check_cell.source:
                cell.source = cell.source.replace("# your code here", source)
    return nb
