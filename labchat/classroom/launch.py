"""``labchat lab [DIR]``: the lab from an installed labchat, in a work folder of the learner's.

The notebooks ship inside the package (`labchat.resources`). `prepare_workdir` copies those
not yet in the work folder, and never overwrites one that is there: it holds the learner's
work. `jupyter_argv` is the JupyterLab command for that folder, opening 00-start-here.
Jupyter refuses to run as root unless told ``--allow-root``; so does this, and says why.

On a JupyterHub (docs/classroom.md) the spawner runs ``labchat lab --hub DIR``: the same
folder preparation, then the single-user server JupyterHub expects instead of JupyterLab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

from .. import resources
from .edition import EditionError, checked_student_edition

__all__ = [
    "DEFAULT_DIR",
    "EDITIONS",
    "FIRST_NOTEBOOK",
    "LaunchError",
    "jupyter_argv",
    "prepare_workdir",
    "run",
]

#: The work folder when none is named (relative to the current directory).
DEFAULT_DIR = Path("labchat-lab")
#: What JupyterLab opens first.
FIRST_NOTEBOOK = "00-start-here.ipynb"
#: ``teacher``: the notebooks as shipped, answers folded; ``student``: answers removed.
EDITIONS = ("teacher", "student")


class LaunchError(RuntimeError):
    """The lab cannot start as asked (e.g. as root without --allow-root)."""


def prepare_workdir(
    directory: str | Path,
    *,
    edition: str = "teacher",
    sources: Sequence[Path] | None = None,
) -> list[Path]:
    """Copy the lab notebooks that are missing from `directory` into it.

    Args:
        directory: the work folder (created if missing).
        edition: ``teacher`` (as shipped) or ``student`` (answers removed, solutions emptied).
        sources: the notebooks to copy (default: the lab's own).

    Returns:
        The notebooks copied now (empty if all were there already: none is overwritten).

    Raises:
        ValueError: unknown edition.
        LaunchError: the package has no notebooks (a broken install), or a student edition
            would break the convention or show an answer (nothing is written for it).
    """
    if edition not in EDITIONS:
        raise ValueError(f"unknown edition {edition!r}; choose one of {EDITIONS}")
    sources = list(sources if sources is not None else resources.notebooks())
    if not sources:
        raise LaunchError(f"no notebooks in {resources.notebooks_dir()}: reinstall labchat")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in sources:
        target = directory / src.name
        if target.exists():
            continue
        if edition == "student":
            try:
                # The same checks as `labchat student-edition`: no answer reaches a student.
                nbformat.write(checked_student_edition(src), target)
            except EditionError as exc:
                raise LaunchError(f"no student edition: {exc}") from exc
        else:
            shutil.copyfile(src, target)
        copied.append(target)
    return copied


def jupyter_argv(
    directory: str | Path,
    *,
    port: int | None = None,
    browser: bool = True,
    allow_root: bool = False,
    hub: bool = False,
    extra: Sequence[str] = (),
    euid: int | None = None,
) -> list[str]:
    """The command that serves `directory`: JupyterLab, or JupyterHub's single-user server.

    Args:
        directory: the work folder.
        port: the port (None: Jupyter's default, 8888, or the next free one).
        browser: open a browser (JupyterLab only).
        allow_root: run even as root (Jupyter's ``--allow-root``).
        hub: start ``jupyterhub-singleuser`` for a JupyterHub spawner instead.
        extra: more arguments for Jupyter (a spawner adds its own).
        euid: the effective user id (default: this process's).

    Returns:
        The argv.

    Raises:
        LaunchError: root without `allow_root`.
    """
    euid = (os.geteuid() if hasattr(os, "geteuid") else 1) if euid is None else euid
    if euid == 0 and not allow_root:
        raise LaunchError(
            "refusing to run JupyterLab as root: every notebook cell would run as root. "
            "Run `labchat lab` as an ordinary user (or pass --allow-root if you really mean it)"
        )
    root_dir = str(Path(directory).resolve())
    if hub:
        argv = [sys.executable, "-m", "jupyterhub.singleuser", f"--ServerApp.root_dir={root_dir}"]
    else:
        argv = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            f"--ServerApp.root_dir={root_dir}",
            f"--LabApp.default_url=/lab/tree/{FIRST_NOTEBOOK}",
        ]
        if not browser:
            argv.append("--no-browser")
    if port is not None:
        argv.append(f"--ServerApp.port={port}")
    if euid == 0:
        argv.append("--allow-root")
    return [*argv, *extra]


def run(argv: Sequence[str]) -> int:
    """Become `argv` (exec on POSIX, so Ctrl-C and signals reach Jupyter itself).

    Returns:
        The exit code (only where exec is not available: Windows).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(argv[0], list(argv))
    return subprocess.call(list(argv))
