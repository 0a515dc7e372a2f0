"""Self-check cells: does the learner's value match their own capture?

An exercise asks the learner to compute a value into a variable (in a cell tagged
``solution``); the cell after it (tagged ``check``) compares that variable with what the
learner's own capture says::

    from labchat.classroom import check

    check("isn_c", hs.client_isn)        # the client's ISN, read from *this* capture

`check` never raises for the learner's sake: a variable that is not set yet (the student
edition empties solution cells), ``None`` or ``...`` counts as "not answered yet", so Run All
goes through in both editions. It shows one line, and alongside it a machine-readable record
(MIME type `MIME`) that ``labchat check`` collects from the executed notebook.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ANSWER",
    "CHECK",
    "MIME",
    "RIGHT",
    "SOLUTION",
    "STATUSES",
    "UNANSWERED",
    "WRONG",
    "CheckRecord",
    "check",
    "evaluate",
]

#: Cell tag: the cell holds an answer (markdown: its ``<details>`` blocks; code: all of it).
ANSWER = "answer"
#: Cell tag: a code cell the learner writes; emptied in the student edition.
SOLUTION = "solution"
#: Cell tag: a self-check cell, kept in the student edition and reported by ``labchat check``.
CHECK = "check"

#: MIME type of the record `check` displays next to its text line.
MIME = "application/vnd.labchat.check+json"

RIGHT, WRONG, UNANSWERED = "right", "wrong", "unanswered"
STATUSES = (RIGHT, WRONG, UNANSWERED)

_MARK = {RIGHT: "✔", WRONG: "✘", UNANSWERED: "…"}
_MISSING = object()


@dataclass(frozen=True)
class CheckRecord:
    """The outcome of one check.

    Attributes:
        name: the variable checked (it names the exercise in reports).
        status: ``right``, ``wrong`` or ``unanswered``.
        message: the line shown to the learner.
    """

    name: str
    status: str
    message: str

    def to_json(self) -> dict[str, str]:
        """The record as the JSON object displayed under `MIME`."""
        return asdict(self)


def _namespace(depth: int) -> Mapping[str, Any]:
    """The notebook's variables: IPython's user namespace, else the globals `depth` frames up."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None else None
    if ip is not None:
        return ip.user_ns
    # 0 is this function, 1 its caller. sys._getframe is the sys module's documented frame
    # API (underscored only as CPython-specific), not another module's private name.
    return sys._getframe(depth).f_globals  # noqa: SLF001


def _same(value: Any, expected: Any, tol: float | None) -> bool:
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected or value == expected
    if isinstance(value, numbers.Real) and isinstance(expected, numbers.Real):
        if tol is not None:
            return abs(float(value) - float(expected)) <= tol
        if isinstance(value, numbers.Integral) and isinstance(expected, numbers.Integral):
            # Exact: ISNs are ~2**32, where a relative tolerance would forgive "ISN + 3".
            return int(value) == int(expected)
        return math.isclose(float(value), float(expected), rel_tol=1e-6, abs_tol=1e-12)
    if isinstance(value, str) and isinstance(expected, str):
        return value.strip() == expected.strip()
    return bool(value == expected)


def evaluate(
    name: str,
    expected: Any,
    *,
    compare: Callable[[Any, Any], bool] | None = None,
    tol: float | None = None,
    hint: str | None = None,
    namespace: Mapping[str, Any] | None = None,
) -> CheckRecord:
    """Compare the learner's variable `name` with `expected`, without showing anything.

    Args:
        name: the variable the exercise asks for.
        expected: the value the learner's own capture gives.
        compare: ``compare(value, expected) -> bool`` instead of the default comparison
            (integers exactly, floats to 1 ppm, strings ignoring surrounding blanks).
        tol: absolute tolerance for numbers.
        hint: said when the value is wrong (never the expected value itself).
        namespace: where to look the variable up (default: the notebook's variables).

    Returns:
        The `CheckRecord`.
    """
    ns = namespace if namespace is not None else _namespace(2)  # evaluate's caller
    value = ns.get(name, _MISSING)
    if value is _MISSING or value is None or value is Ellipsis:
        return CheckRecord(
            name,
            UNANSWERED,
            f"{_MARK[UNANSWERED]} {name}: not answered yet (set {name} above, then run this "
            "cell again)",
        )
    try:
        ok = compare(value, expected) if compare is not None else _same(value, expected, tol)
    except Exception as exc:  # a learner's odd value must not break the check cell
        ok, hint = False, f"could not compare it: {type(exc).__name__}: {exc}"
    if ok:
        return CheckRecord(name, RIGHT, f"{_MARK[RIGHT]} {name}: right")
    why = hint
    if why is None and type(value) is not type(expected) and compare is None:
        if not all(issubclass(t, numbers.Real) for t in (type(value), type(expected))):
            why = (
                f"your value has type {type(value).__name__}, "
                f"the answer has type {type(expected).__name__}"
            )
    message = f"{_MARK[WRONG]} {name}: not what your capture says"
    return CheckRecord(name, WRONG, message + (f" ({why})" if why else ""))


def check(
    name: str,
    expected: Any,
    *,
    compare: Callable[[Any, Any], bool] | None = None,
    tol: float | None = None,
    hint: str | None = None,
    namespace: Mapping[str, Any] | None = None,
) -> None:
    """Show whether the learner's variable `name` matches `expected` (see `evaluate`).

    In a notebook it displays one line plus the record under `MIME` (which ``labchat check``
    reads); elsewhere it prints the line. It returns None so that a ``check(...)`` on a cell's
    last line does not print its result twice.
    """
    ns = namespace if namespace is not None else _namespace(2)  # check's caller
    record = evaluate(name, expected, compare=compare, tol=tol, hint=hint, namespace=ns)
    shell = sys.modules.get("IPython")
    if shell is not None and shell.get_ipython() is not None:
        from IPython.display import display

        display({"text/plain": record.message, MIME: record.to_json()}, raw=True)
    else:
        print(record.message)
