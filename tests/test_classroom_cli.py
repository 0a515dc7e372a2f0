"""`labchat doctor`, `lab`, `student-edition` and `check` on the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from exercise_notebook import RIGHT_ANSWERS, exercise_notebook, fill

from labchat import resources
from labchat.auth import UserStore
from labchat.certs import create_lab_certs
from labchat.classroom import launch
from labchat.classroom.edition import student_notebook
from labchat.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_doctor_lab_only_prints_the_table_and_exits_0(capsys: pytest.CaptureFixture[str]):
    code, out, err = _run(capsys, "doctor", "--lab-only")
    assert code == 0, out + err
    assert out.splitlines()[-1].startswith("labchat 0.1.0: ready")
    assert "capture private" in out and err == ""


def test_doctor_json_and_a_failure_exit_1_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    create_lab_certs(tmp_path / "certs")
    users = tmp_path / "users.json"
    UserStore(users, n=2**10, p=1).add("ana", "ana-password")
    users.chmod(0o644)
    code, out, err = _run(
        capsys, "doctor", "--json", "--certs", str(tmp_path / "certs"), "--users", str(users)
    )
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert {"check": "users file", "status": "FAIL"}.items() <= next(
        f for f in report["findings"] if f["check"] == "users file"
    ).items()
    assert err == "labchat: error: the lab cannot run here: users file (the fix is under each)\n"


def test_doctor_strict_fails_on_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code, _, err = _run(
        capsys,
        "doctor",
        "--strict",
        "--certs",
        str(tmp_path / "none"),
        "--users",
        str(tmp_path / "none.json"),
    )
    assert code == 1 and err.startswith("labchat: error: warnings with --strict: certificates")


def test_doctor_fix_capture_has_nothing_to_do_where_private_capture_works(
    capsys: pytest.CaptureFixture[str],
):
    from labchat import capture

    if capture.probe_modes()["private"] is not None:
        pytest.skip("private capture does not work here; tests/test_doctor.py covers the fix")
    code, out, _ = _run(capsys, "doctor", "--fix-capture")
    assert (code, out) == (0, "nothing to fix: private capture works here\n")


def test_student_edition_with_worksheets(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code, out, err = _run(capsys, "student-edition", str(tmp_path), "--worksheets")
    assert code == 0, err
    names = [Path(line).name for line in out.splitlines()]
    books = [p.name for p in resources.notebooks()]
    assert names == books + [n.replace(".ipynb", ".html") for n in books]
    nb = nbformat.read(tmp_path / books[1], as_version=4)
    assert nb.metadata["labchat"]["edition"] == "student"


def test_student_edition_of_a_missing_notebook_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code, out, err = _run(capsys, "student-edition", str(tmp_path), "nope.ipynb")
    assert code == 2 and out == ""
    assert err.startswith("labchat: error: ") and err.count("\n") == 1 and "nope.ipynb" in err


def test_check_prints_json_or_writes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "99-exercise.ipynb"
    nbformat.write(fill(student_notebook(exercise_notebook()), RIGHT_ANSWERS), path)
    code, out, _ = _run(capsys, "check", str(path), "--student", "ana")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["student"] == "ana"
    code, out, _ = _run(capsys, "check", str(path), "--out", str(tmp_path / "ana.json"))
    assert code == 0
    summary = "99-exercise.ipynb: 2 right, 0 wrong, 0 unanswered; self-checks passed"
    assert out == f"{summary} -> {tmp_path / 'ana.json'}\n"
    assert json.loads((tmp_path / "ana.json").read_text())["ok"] is True


def test_check_of_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code, _, err = _run(capsys, "check", str(tmp_path / "missing.ipynb"))
    assert code == 2 and err == f"labchat: error: no notebook {tmp_path / 'missing.ipynb'}\n"


def test_lab_copies_the_notebooks_then_becomes_jupyter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    ran: list[list[str]] = []
    monkeypatch.setattr(launch, "run", lambda argv: ran.append(list(argv)) or 0)
    root = ["--allow-root"] if os.geteuid() == 0 else []
    code, out, err = _run(
        capsys,
        "lab",
        str(tmp_path / "work"),
        "--no-browser",
        "--port",
        "8899",
        *root,
        "--jupyter",
        "--debug",
    )
    assert code == 0, err
    assert out == f"copied {len(resources.notebooks())} notebooks into {tmp_path / 'work'}\n"
    (argv,) = ran
    assert argv[1:4] == ["-m", "jupyter", "lab"] and argv[-1] == "--debug"
    assert "--ServerApp.port=8899" in argv and "--no-browser" in argv
    if root:
        assert "running Jupyter as root (--allow-root)" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="checks what labchat lab does when run as root")
def test_lab_as_root_without_allow_root_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code, out, err = _run(capsys, "lab", str(tmp_path / "work"))
    assert code == 2 and out == "" and not (tmp_path / "work").exists()
    assert err.startswith("labchat: error: refusing to run JupyterLab as root")
