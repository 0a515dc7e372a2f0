"""`pip install labchat` alone gives a working lab: the wheel carries its notebooks and captures.

The wheel is built from this checkout and installed into a fresh venv in /tmp, outside the
source tree; every command runs there with the checkout out of reach (another working
directory, no PYTHONPATH). `labchat lab` runs as an ordinary user (``nobody`` when the test
runs as root, as in CI): it copies the notebooks into a work folder, serves them, and stops.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from installed import REPO, as_user, build_wheel, make_venv, public_tempdir
from jupyterlab_process import JupyterLab, free_port, isolated_env

NOBODY = 65534

# Building the wheel and installing it with its dependencies (from pip's cache) takes a minute
# or two on a loaded 2-core machine; it counts against the first test that needs the venv.
pytestmark = pytest.mark.timeout(600)


def labchat_cmd(venv: Path) -> list[str]:
    """The installed ``labchat`` command."""
    return [str(venv / "bin" / "labchat")]


@pytest.fixture(scope="module")
def wheel() -> Iterator[Path]:
    out = public_tempdir("labchat-wheel-")
    try:
        yield build_wheel(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Iterator[Path]:
    root = public_tempdir("labchat-venv-")
    try:
        yield make_venv(root / "venv", wheel)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LABCHAT_"))}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    return env


def _labchat(
    venv: Path, *args: str, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "labchat"), *args],
        cwd=cwd,
        env=_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _python(venv: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """The venv's Python runs `code` in `cwd`, with the checkout out of reach."""
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=cwd,
        env=_env(cwd),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_wheel_carries_every_notebook_and_reference_capture(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    notebooks = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    captures = sorted(p.parent.name for p in (REPO / "captures").glob("*/capture.pcapng"))
    assert notebooks and captures
    for name in notebooks:
        assert f"labchat/labdata/notebooks/{name}" in names
    for scenario in captures:
        assert f"labchat/labdata/captures/{scenario}/capture.pcapng" in names
        assert f"labchat/labdata/captures/{scenario}/manifest.json" in names
    assert not [n for n in names if n.endswith((".key", "users.json")) or "/certs/" in n]


def test_installed_labchat_is_the_wheel_not_the_checkout(venv: Path, tmp_path: Path):
    code = (
        "import labchat, labchat.resources as r; print(labchat.__file__); print(r.notebooks_dir())"
    )
    proc = _python(venv, code, tmp_path)
    package, notebooks = proc.stdout.split()
    assert Path(package).is_relative_to(venv) and "site-packages" in package
    assert Path(notebooks) == Path(package).parent / "labdata" / "notebooks"


def test_offline_capture_and_demo_work_from_the_installed_wheel(venv: Path, tmp_path: Path):
    capture = _labchat(
        venv, "capture", "tcp-chat", "--mode", "offline", "--out", "mine", cwd=tmp_path
    )
    assert capture.returncode == 0, capture.stderr
    assert "capture mode: offline" in capture.stdout
    assert (tmp_path / "mine" / "capture.pcapng").stat().st_size > 1000

    demo = _labchat(venv, "demo", "--mode", "offline", "--out", "demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert demo.stderr == ""
    assert "capture mode: offline" in demo.stdout
    assert "C: LOGIN alice" in demo.stdout or "LOGIN alice" in demo.stdout
    assert (tmp_path / "demo" / "ladder.png").stat().st_size > 10_000


def _home_for(uid: int) -> Path:
    home = public_tempdir("labchat-home-")
    os.chown(home, uid, uid)
    return home


def test_labchat_lab_copies_the_notebooks_and_serves_them_as_an_ordinary_user(venv: Path):
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    home = _home_for(uid)
    try:
        env = isolated_env(home / ".jupyter-test", _env(home))
        for path in [home, *home.rglob("*")]:
            os.chown(path, uid, uid)
        argv = [*labchat_cmd(venv), "lab", "work", "--no-browser", "--port", str(free_port())]
        if os.geteuid() == 0:
            argv = as_user(argv, uid, uid)
        with JupyterLab.start(argv, cwd=home, env=env) as lab:
            listing = lab.api("contents/")
            names = sorted(item["name"] for item in listing["content"])
            assert "00-start-here.ipynb" in names and len(names) >= 8
            assert (
                lab.printed_url.split("?")[0].endswith("/lab/tree/00-start-here.ipynb")
                or "/lab" in lab.printed_url
            )
            assert "copied" in lab.log() and "notebooks into" in lab.log()
            owner = (home / "work" / "00-start-here.ipynb").stat().st_uid
            assert owner == uid, "the work folder belongs to the learner"
        assert lab.process.returncode is not None
        # A second start copies nothing: the learner's edits stay.
        mine = home / "work" / "01-watch-a-tcp-handshake.ipynb"
        mine.write_text(mine.read_text().replace("Watch a TCP handshake", "My notes"))
        code = "from labchat.classroom.launch import prepare_workdir as p; print(p('work'))"
        again = _python(venv, code, home)
        assert again.stdout.strip() == "[]" and "My notes" in mine.read_text()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="checks what labchat lab does when run as root")
def test_labchat_lab_as_root_refuses_unless_allow_root_and_then_says_so(venv: Path, tmp_path: Path):
    refused = subprocess.run(
        [*labchat_cmd(venv), "lab", "work", "--no-browser"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("labchat: error: refusing to run JupyterLab as root")
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "work").exists()

    argv = [
        *labchat_cmd(venv),
        "lab",
        "work",
        "--no-browser",
        "--allow-root",
        "--port",
        str(free_port()),
    ]
    with JupyterLab.start(
        argv, cwd=tmp_path, env=isolated_env(tmp_path / "j", _env(tmp_path))
    ) as lab:
        assert lab.api("status")
        assert "labchat: warning: running Jupyter as root (--allow-root)" in lab.log()
