"""Teaching with labchat: the answer/check convention, student editions, auto-checked work.

The lab's notebooks mark their answers with **cell tags** (notebooks/README.md, "Writing an
exercise"):

``answer``
    A cell that holds an answer. In a markdown cell every ``<details>...</details>`` block is
    the answer (the question before it stays); a code cell tagged ``answer`` is a worked
    solution and goes entirely, outputs and attachments too.
``solution``
    A code cell the learner writes: it computes a value into a variable. The student
    edition empties it.
``check``
    A self-check cell: it says whether the learner's value matches *their own* capture (with
    `labchat.classroom.check`), or asserts the lesson's facts on it. It is kept in the student
    edition and must run there too, saying "not answered yet" instead of failing with a
    NameError.

`labchat.classroom.edition` writes the student edition and lints a notebook for the
convention; `labchat.classroom.checker` runs a learner's notebook and reports every check as
JSON. Only `check` (used inside notebooks) is imported here, so a notebook's import stays cheap.
"""

from .exercise import ANSWER, CHECK, SOLUTION, CheckRecord, check

__all__ = ["ANSWER", "CHECK", "SOLUTION", "CheckRecord", "check"]
