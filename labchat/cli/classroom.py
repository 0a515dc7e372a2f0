"""The teacher's subcommands: ``labchat doctor``, ``lab``, ``student-edition`` and ``check``.

Thin shells around `labchat.doctor` and `labchat.classroom`: each parses, calls the package,
prints, and raises `CommandError` (exit 1) when the lab is not ready or a run failed, or
`UsageError` (exit 2) for what the command line asks wrongly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labchat.server import DEFAULT_USERS

from .errors import CommandError, UsageError, port

__all__ = ["cmd_check", "cmd_doctor", "cmd_lab", "cmd_student_edition", "register"]


# --------------------------------------------------------------------------- doctor


def _fix_capture() -> int:
    from labchat import doctor

    probes = doctor.Probes()
    why = probes.modes().get("private")
    result = doctor.fix_capture(sysctl=probes.sysctl, private_why=why)
    print(result.text)
    if why is None:
        return 0
    if not result.applied:
        raise CommandError("private capture is not fixed yet: see what to do above")
    after = probes.modes().get("private")
    if after is not None:
        raise CommandError(f"the profile is loaded, but private capture still fails: {after}")
    print("capture private: available")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """``labchat doctor``: the table (or JSON); exit 1 if the lab cannot run here."""
    from labchat import doctor

    if args.fix_capture:
        return _fix_capture()
    report = doctor.diagnose(certs=args.certs, users=args.users, lab_only=args.lab_only)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.table(), flush=True)
    if not report.ok:
        failed = ", ".join(f.check for f in report.findings if f.status == doctor.FAIL)
        raise CommandError(f"the lab cannot run here: {failed} (the fix is under each)")
    if args.strict and report.warnings:
        warned = ", ".join(f.check for f in report.warnings)
        raise CommandError(f"warnings with --strict: {warned}")
    return 0


# --------------------------------------------------------------------------- lab


def cmd_lab(args: argparse.Namespace) -> int:
    """``labchat lab [DIR]``: copy the missing notebooks into DIR, then become JupyterLab."""
    import sys

    from labchat.classroom.launch import LaunchError, jupyter_argv, prepare_workdir, run

    try:
        argv = jupyter_argv(  # first: refuses root before anything is written
            args.dir,
            port=args.port,
            browser=not args.no_browser,
            allow_root=args.allow_root,
            hub=args.hub,
            extra=args.jupyter_args,
        )
        copied = prepare_workdir(args.dir, edition="student" if args.student else "teacher")
    except LaunchError as exc:
        raise UsageError(str(exc)) from exc
    where = Path(args.dir).resolve()
    if copied:
        print(f"copied {len(copied)} notebooks into {where}", flush=True)
    else:
        print(f"{where} has the notebooks already (none is overwritten)", flush=True)
    if "--allow-root" in argv:
        print(
            "labchat: warning: running Jupyter as root (--allow-root): every cell runs as root",
            file=sys.stderr,
            flush=True,
        )
    return run(argv)


# --------------------------------------------------------------------------- editions, checks


def cmd_student_edition(args: argparse.Namespace) -> int:
    """``labchat student-edition OUT``: the notebooks without answers (and worksheets)."""
    from labchat.classroom.edition import EditionError, write_student_edition

    sources = args.notebooks or None
    try:
        written = write_student_edition(args.out, sources, keep_outputs=args.keep_outputs)
    except EditionError as exc:
        raise CommandError(str(exc)) from exc
    if args.worksheets:
        from labchat.classroom.worksheet import write_worksheets

        written += write_worksheets(args.out, sources)
    for path in written:
        print(path)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``labchat check NOTEBOOK``: run it, print the JSON report (or write it to --out)."""
    from labchat.classroom.checker import check_notebook

    path = Path(args.notebook)
    if not path.is_file():
        raise UsageError(f"no notebook {path}")
    report = check_notebook(
        path, student=args.student, cell_timeout=args.timeout, kernel_name=args.kernel
    )
    text = json.dumps(report.to_json(), indent=2, ensure_ascii=False)
    if not args.out:
        print(text)
        return 0
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    ex = report.summary()["exercises"]
    passed = all(s.status == "passed" for s in report.self_checks)
    print(
        f"{path.name}: {ex['right']} right, {ex['wrong']} wrong, {ex['unanswered']} "
        f"unanswered; self-checks {'passed' if passed else 'NOT all passed'} -> {args.out}"
    )
    return 0


# --------------------------------------------------------------------------- parsers


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``doctor``, ``lab``, ``student-edition`` and ``check`` to ``labchat``."""
    doctor = subparsers.add_parser(
        "doctor",
        help="pre-flight check: what the lab needs, each capture mode, and the fixes",
        description="Check what the lab needs; exit 1 if something it needs is missing.",
    )
    doctor.add_argument("--certs", default="certs", metavar="DIR", help="lab certificate directory")
    doctor.add_argument("--users", default=str(DEFAULT_USERS), metavar="FILE", help="users file")
    doctor.add_argument(
        "--lab-only", action="store_true", help="only what the notebooks need (no server files)"
    )
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    doctor.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    doctor.add_argument(
        "--fix-capture",
        action="store_true",
        help="make private capture work: install the AppArmor profile (root) or print it",
    )
    doctor.set_defaults(func=cmd_doctor)

    lab = subparsers.add_parser(
        "lab",
        help="copy the notebooks into a work folder (if missing) and start JupyterLab there",
    )
    lab.add_argument(
        "dir",
        nargs="?",
        default="labchat-lab",
        metavar="DIR",
        help="work folder: the notebooks are copied here if missing, never over your work",
    )
    lab.add_argument("--student", action="store_true", help="the student edition (no answers)")
    lab.add_argument("--port", type=port, metavar="PORT", help="port for JupyterLab")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.add_argument(
        "--allow-root", action="store_true", help="run as root anyway (every cell runs as root)"
    )
    lab.add_argument(
        "--hub", action="store_true", help="start JupyterHub's single-user server (a spawner's cmd)"
    )
    lab.add_argument(
        "--jupyter",
        dest="jupyter_args",
        nargs=argparse.REMAINDER,
        default=[],
        metavar="ARG",
        help="last: everything after it goes to Jupyter (a JupyterHub spawner's cmd ends with "
        "it, so the spawner's own arguments land there)",
    )
    lab.set_defaults(func=cmd_lab)

    student = subparsers.add_parser(
        "student-edition",
        help="write the notebooks with the answers removed and solution cells emptied",
    )
    student.add_argument("out", metavar="OUT", help="output directory")
    student.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="default: the lab's")
    student.add_argument(
        "--keep-outputs", action="store_true", help="keep the outputs of ordinary cells"
    )
    student.add_argument(
        "--worksheets", action="store_true", help="also a printable worksheet per notebook"
    )
    student.set_defaults(func=cmd_student_edition)

    check = subparsers.add_parser(
        "check", help="run a learner's notebook and report every exercise and self-check as JSON"
    )
    check.add_argument("notebook", metavar="NOTEBOOK", help="the learner's .ipynb file")
    check.add_argument(
        "--student", metavar="NAME", help="whose work it is (default: the file's owner)"
    )
    check.add_argument("--out", metavar="FILE", help="write the JSON here instead of stdout")
    check.add_argument(
        "--timeout", type=int, default=120, metavar="SECONDS", help="time one cell may take"
    )
    check.add_argument("--kernel", default="python3", metavar="NAME", help="Jupyter kernel")
    check.set_defaults(func=cmd_check)
