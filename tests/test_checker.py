"""`labchat.classroom.checker`: a learner's notebook run, every check reported as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from exercise_notebook import RIGHT_ANSWERS, WRONG_ANSWERS, exercise_notebook, fill

from labchat import resources
from labchat.classroom.checker import check_notebook, collect
from labchat.classroom.edition import student_notebook, write_student_edition


def _student_file(tmp_path: Path, answers: dict[str, str] | None = None) -> Path:
    """The fixture's student edition, filled in with `answers`, as a learner saves it."""
    nb = student_notebook(exercise_notebook())
    if answers:
        nb = fill(nb, answers)
    path = tmp_path / "99-exercise.ipynb"
    nbformat.write(nb, path)
    return path


def _statuses(report) -> dict[str, str]:  # noqa: ANN001
    return {e.name: e.status for e in report.exercises}


def test_empty_student_edition_reports_every_exercise_unanswered(tmp_path: Path):
    report = check_notebook(_student_file(tmp_path), student="ana")
    assert _statuses(report) == {"isn_c": "unanswered", "login_len": "unanswered"}
    assert [(s.title, s.status) for s in report.self_checks] == [
        ("Self-check: the handshake rule", "passed")
    ]
    assert report.errors == [] and report.ok is False
    data = json.loads(json.dumps(report.to_json()))
    assert data["student"] == "ana" and data["notebook"] == "99-exercise.ipynb"
    assert data["summary"] == {
        "exercises": {"right": 0, "wrong": 0, "unanswered": 2, "error": 0, "not run": 0},
        "self_checks": {"passed": 1, "failed": 0, "error": 0, "not run": 0},
    }
    assert data["ok"] is False and data["seconds"] > 0


def test_filled_in_student_edition_reports_every_exercise_right(tmp_path: Path):
    path = _student_file(tmp_path, RIGHT_ANSWERS)
    before = path.read_bytes()
    report = check_notebook(path, student="ben")
    assert _statuses(report) == {"isn_c": "right", "login_len": "right"}
    assert report.ok is True and report.errors == []
    assert path.read_bytes() == before, "checking does not change the learner's file"


def test_wrong_and_broken_answers_are_reported_with_the_hint_and_the_error(tmp_path: Path):
    answers = {"isn_c": WRONG_ANSWERS["isn_c"], "login_len": "login_len = len(no_such_name)"}
    report = check_notebook(_student_file(tmp_path, answers))
    by_name = {e.name: e for e in report.exercises}
    assert by_name["isn_c"].status == "wrong"
    assert by_name["isn_c"].message == "✘ isn_c: not what your capture says"
    # The solution cell raised: the check still runs and says unanswered; the error is listed.
    assert by_name["login_len"].status == "unanswered"
    assert [(e["ename"], e["evalue"]) for e in report.errors] == [
        ("NameError", "name 'no_such_name' is not defined")
    ]
    assert report.ok is False


def test_a_wrong_type_gets_the_hint_never_the_expected_value(tmp_path: Path):
    report = check_notebook(_student_file(tmp_path, {"login_len": WRONG_ANSWERS["login_len"]}))
    (login,) = [e for e in report.exercises if e.name == "login_len"]
    assert login.status == "wrong"
    assert login.message == "✘ login_len: not what your capture says (count the newline too)"
    assert "34" not in login.message


def test_failing_self_check_reports_its_assertion_message():
    nb = exercise_notebook()
    nb.cells[10].source = "assert hs.syn_ack.ack == hs.client_isn, 'the SYN-ACK acks ISN + 1'"
    nb.cells[10].outputs = [
        nbformat.v4.new_output(
            "error", ename="AssertionError", evalue="the SYN-ACK acks ISN + 1", traceback=[]
        )
    ]
    nb.cells[10].execution_count = 9
    report = collect(nb)
    assert [(s.status, s.message) for s in report.self_checks] == [
        ("failed", "the SYN-ACK acks ISN + 1")
    ]
    # Never run at all: everything "not run", read from the check cells' sources.
    unrun = collect(exercise_notebook())
    assert [(e.name, e.status) for e in unrun.exercises] == [
        ("isn_c", "not run"),
        ("login_len", "not run"),
    ]
    assert [s.status for s in unrun.self_checks] == ["not run"] and unrun.ok is False


@pytest.mark.parametrize("mode", ["offline"])
def test_student_edition_of_notebook_01_passes_its_self_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
):
    monkeypatch.setenv("LABCHAT_CAPTURE_MODE", mode)
    source = next(p for p in resources.notebooks() if p.name.startswith("01-"))
    (path,) = write_student_edition(tmp_path, [source])
    report = check_notebook(path)
    assert report.errors == []
    assert [s.status for s in report.self_checks] == ["passed"] * 4
    assert report.exercises == [] and report.ok is True
