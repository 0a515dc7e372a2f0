"""The Makefile as a new user meets it: `make lab` and the install behind it (issue 12).

* `make setup` keeps pip's (and the build backend's) output in .venv/pip.log and prints it
  only when the install fails: exercised with a stand-in for the venv's python that prints
  what pip prints, so no package index is needed.
* `make lab` shows the demo accounts in a box right before JupyterLab's banner: the real
  recipe (`labchat init`, then `jupyter lab`) in a temp copy, stopped once it serves.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from jupyterlab_process import JupyterLab, free_port, isolated_env

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def make_env() -> dict[str, str]:
    # Under `make test` the parent's MAKEFLAGS would leak in: this is a make of its own.
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def fake_python(path: Path, exit_code: int) -> Path:
    """A `python` that answers `-m pip ...` as noisily as pip and setuptools do."""
    path.write_text(
        "#!/bin/sh\n"
        "echo \"WARNING: Location 'file:///opt/simple/pip/' is ignored\"\n"
        'echo "  !!  BuildBackendWarning: project.license as a TOML table is deprecated" >&2\n'
        f"exit {exit_code}\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("exit_code", [0, 1])
def test_make_setup_shows_pip_output_only_when_the_install_fails(tmp_path, exit_code) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    py = fake_python(tmp_path / "python", exit_code)
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "-B", f"{venv}/.installed-stamp",
         f"VENV={venv}", f"PY={py}"],
        capture_output=True, text=True, timeout=60, env=make_env(),
    )  # fmt: skip
    output = result.stdout + result.stderr
    log = (venv / "pip.log").read_text()
    assert "is ignored" in log and "BuildBackendWarning" in log
    if exit_code == 0:
        assert result.returncode == 0, output
        assert result.stdout == f"installing labchat and its dependencies into {venv} " \
            f"(log: {venv}/pip.log)\n"  # fmt: skip
        assert result.stderr == ""
        assert (venv / ".installed-stamp").exists()
    else:
        assert result.returncode != 0
        assert "BuildBackendWarning" in output and "pip install failed" in output
        assert not (venv / ".installed-stamp").exists()


def test_make_lab_shows_the_accounts_right_before_jupyterlabs_banner(tmp_path) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copy(ROOT / "Makefile", work / "Makefile")
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    venv = Path(sys.prefix)
    argv = [
        "make", "--no-print-directory", "-C", str(work), "lab",
        f"VENV={venv}", f"PY={sys.executable}", f"JUPYTER_PORT={free_port()}",
        "JUPYTER_ARGS=--no-browser",
        # setup is done (by whoever runs the tests): do not reinstall from the copy
        "-o", f"{venv}/.installed-stamp", "-o", "setup",
    ]  # fmt: skip
    env = {**isolated_env(tmp_path / "jupyter"), **make_env()}
    env.pop("MAKEFLAGS", None)
    with JupyterLab.start(argv, cwd=work, env=env, log_path=tmp_path / "lab.log") as lab:
        log = lab.log()
    lines = [line for line in log.splitlines() if line.strip()]
    box_end = max(i for i, line in enumerate(lines) if re.fullmatch(r"\+-+\+", line))
    box = lines[: box_end + 1]
    assert any("labchat demo accounts" in line for line in box), log
    assert any(re.fullmatch(r"\|   alice  \S{12}\s+\|", line) for line in box), log
    assert any(re.fullmatch(r"\|   bob    \S{12}\s+\|", line) for line in box), log
    # The next thing on screen is JupyterLab's banner: no INFO log lines in between.
    banner = lines[box_end + 1]
    assert re.match(r"\[C [\d-]+ [\d:.]+ ServerApp\]", banner), log
    assert "To access the server" in lines[box_end + 2], log
    assert not [line for line in lines if line.startswith("[I ")], log
    assert "pip" not in log.lower()
    accounts = (work / "certs" / "demo-accounts.txt").read_text()
    assert re.search(r"^alice  \S{12}$", accounts, re.M)
    assert stat.S_IMODE((work / "certs" / "demo-accounts.txt").stat().st_mode) == 0o600
