"""A class server: JupyterHub with 10 students, all running notebook 01 at once.

The set-up of docs/classroom.md, on this machine: the wheel installed into a venv every user can
read (outside the checkout, which may be under /root), configurable-http-proxy from npm
(`make hub-deps`), JupyterHub's LocalProcessSpawner with one new system user per student.
Each student's server is started through the Hub's REST API as that user; notebook 01 (the
student edition labchat copied into their home) then runs in a kernel of each student's own
server, all ten at once, capturing in a private network namespace of its own. Every run must
pass all its self-checks. Afterwards every process of the students is gone and the users are
deleted.

Marked ``hub`` (a few minutes: the venv, then ten Jupyter servers on two cores):
``pytest -m 'not hub'`` leaves it out. Needs root, as the Hub does to start servers as other
users; CI runs as root.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubclass import find_proxy, run_class, stop_all, student_processes, trial_hub
from installed import build_wheel, make_venv, public_tempdir, world_readable_python

from labchat.classroom.hub import WORKDIR

STUDENTS = 10
NOTEBOOK = "01-watch-a-tcp-handshake.ipynb"

pytestmark = [
    pytest.mark.hub,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LocalProcessSpawner: Linux"),
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="JupyterHub must run as root to start servers as the students (CI runs as root)",
    ),
    pytest.mark.skipif(
        find_proxy() is None,
        reason="configurable-http-proxy is missing: `make hub-deps` installs it (npm)",
    ),
    pytest.mark.skipif(
        world_readable_python() is None,
        reason="no Python 3.10+ the students can run (apt-get install python3-venv)",
    ),
]


@pytest.fixture(scope="module")
def hub_venv() -> Iterator[Path]:
    root = public_tempdir("labchat-hubvenv-")
    try:
        wheel = build_wheel(root / "wheel")
        yield make_venv(root / "venv", wheel, extras="hub")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_ten_students_run_notebook_01_at_once_each_in_a_private_namespace(hub_venv: Path):
    proxy = find_proxy()
    assert proxy is not None
    with trial_hub(hub_venv, proxy, students=STUDENTS) as hub:
        uids = hub.uids()
        run = asyncio.run(run_class(hub, NOTEBOOK))
        failed = {s: r for s, r in run.reports.items() if isinstance(r, BaseException)}
        assert not failed, f"runs that did not finish: {failed}\n{hub.log()[-4000:]}"

        for student in hub.students:
            report = run.reports[student]
            assert report.errors == [], (student, report.errors)
            assert [s.status for s in report.self_checks] == ["passed"] * 4, (student, report)
            assert report.ok
            nb = run.notebooks[student]
            assert nb.metadata["labchat"]["edition"] == "student"  # what labchat lab --student
            first = "".join(o.get("text", "") for o in nb.cells[2].outputs)
            # Each capture in its own namespace: its own mode, and only its own two connections.
            assert first.startswith("capture mode: private"), (student, first)
            assert "2 TCP connections: alice's and bob's" in first, (student, first)
            # The server, and the work folder labchat copied, belong to the student.
            home = Path(pwd.getpwnam(student).pw_dir)
            saved = home / WORKDIR / NOTEBOOK
            assert saved.stat().st_uid == pwd.getpwnam(student).pw_uid
            assert "capture mode: private" in saved.read_text(), "the run was saved back"
        running_as = {os.stat(f"/proc/{pid}").st_uid for pid in student_processes(uids)}
        assert running_as == uids, "every student's server runs as that student"

        stop_all(hub)
        names, root = list(hub.students), hub.root
    assert student_processes(uids) == [], "no student process outlives the class"
    for name in names:
        with pytest.raises(KeyError):
            pwd.getpwnam(name)
    assert not root.exists()
