"""`labchat.classroom.launch`: the work folder and the Jupyter command of `labchat lab`."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

from labchat import resources
from labchat.classroom.launch import LaunchError, jupyter_argv, prepare_workdir


def test_prepare_workdir_copies_the_missing_notebooks_and_never_overwrites(tmp_path: Path):
    work = tmp_path / "work"
    copied = prepare_workdir(work)
    assert [p.name for p in copied] == [p.name for p in resources.notebooks()]
    first = work / "00-start-here.ipynb"
    first.write_text("my own work")
    (work / "02-close-a-connection.ipynb").unlink()
    again = prepare_workdir(work)
    assert [p.name for p in again] == ["02-close-a-connection.ipynb"]
    assert first.read_text() == "my own work"


def test_prepare_workdir_can_hand_out_the_student_edition(tmp_path: Path):
    prepare_workdir(tmp_path, edition="student")
    nb = nbformat.read(tmp_path / "01-watch-a-tcp-handshake.ipynb", as_version=4)
    assert nb.metadata["labchat"]["edition"] == "student"
    assert not any("<details" in c.source for c in nb.cells)
    with pytest.raises(ValueError, match="unknown edition"):
        prepare_workdir(tmp_path, edition="answers")


def test_jupyter_argv_refuses_root_unless_allowed_and_passes_allow_root_on(tmp_path: Path):
    with pytest.raises(LaunchError, match="refusing to run JupyterLab as root"):
        jupyter_argv(tmp_path, euid=0)
    argv = jupyter_argv(tmp_path, euid=0, allow_root=True, browser=False, port=8890)
    assert argv[:4] == [sys.executable, "-m", "jupyter", "lab"]
    assert f"--ServerApp.root_dir={tmp_path.resolve()}" in argv
    assert "--LabApp.default_url=/lab/tree/00-start-here.ipynb" in argv
    assert argv[-3:] == ["--no-browser", "--ServerApp.port=8890", "--allow-root"]
    assert "--allow-root" not in jupyter_argv(tmp_path, euid=1000)


def test_jupyter_argv_for_a_hub_spawner_is_the_single_user_server(tmp_path: Path):
    argv = jupyter_argv(tmp_path, euid=1000, hub=True, extra=["--debug"])
    assert argv == [
        sys.executable,
        "-m",
        "jupyterhub.singleuser",
        f"--ServerApp.root_dir={tmp_path.resolve()}",
        "--debug",
    ]
