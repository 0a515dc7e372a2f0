"""The teacher's subcommands: ``doctor``, ``lab``, ``student-edition`` and ``check``.

`register` adds them to the ``labchat`` command's subparsers. Each handler returns an exit
code (0 done, 1 something the lab needs is missing or failed) or raises: `UsageError` for what
the command line asks wrongly, `LaunchError`, `EditionError`, `OSError` at run time; the
``labchat`` command prints those as one ``labchat: error: ...`` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..server import DEFAULT_USERS

__all__ = ["cmd_check", "cmd_doctor", "cmd_lab", "cmd_student_edition", "register"]


def cmd_doctor(args: argparse.Namespace) -> int:
    """``labchat doctor``: the table (or JSON); exit 1 if the lab cannot run here."""
    from .. import doctor

    probes = doctor.Probes()
    if args.fix_capture:
        why = probes.modes().get("private")
        result = doctor.fix_capture(sysctl=probes.sysctl, private_why=why)
        print(result.text)
        if result.applied:
            after = probes.modes().get("private")
            print(f"capture private: {'available' if after is None else after}")
            return 0 if after is None else 1
        return 0 if why is None else 1
    report = doctor.diagnose(
        certs=args.certs, users=args.users, lab_only=args.lab_only, probes=probes
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.table())
    failed = not report.ok or (args.strict and report.warnings)
    return 1 if failed else 0


def cmd_lab(args: argparse.Namespace) -> int:
    """``labchat lab [DIR]``: copy the missing notebooks into DIR, then become JupyterLab."""
    from .launch import jupyter_argv, prepare_workdir, run

    argv = jupyter_argv(  # first: refuses root before anything is written
        args.dir,
        port=args.port,
        browser=not args.no_browser,
        allow_root=args.allow_root,
        hub=args.hub,
        extra=args.jupyter_args,
    )
    copied = prepare_workdir(args.dir, edition="student" if args.student else "teacher")
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


def cmd_student_edition(args: argparse.Namespace) -> int:
    """``labchat student-edition OUT``: write the student edition of the notebooks."""
    from .edition import write_student_edition

    written = write_student_edition(
        args.out, args.notebooks or None, keep_outputs=args.keep_outputs
    )
    if args.worksheets:
        from .worksheet import write_worksheets

        written += write_worksheets(args.out, args.notebooks or None)
    for path in written:
        print(path)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``labchat check NOTEBOOK``: run it, print the JSON report (or write it to --out)."""
    from .checker import check_notebook

    path = Path(args.notebook)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook {path}")
    report = check_notebook(
        path, student=args.student, cell_timeout=args.timeout, kernel_name=args.kernel
    )
    text = json.dumps(report.to_json(), indent=2, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        ex = report.summary()["exercises"]
        passed = all(s.status == "passed" for s in report.self_checks)
        print(
            f"{path.name}: {ex['right']} right, {ex['wrong']} wrong, {ex['unanswered']} "
            f"unanswered; self-checks {'passed' if passed else 'NOT all passed'} -> {args.out}"
        )
    else:
        print(text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``doctor``, ``lab``, ``student-edition`` and ``check`` to ``labchat``."""
    doctor = subparsers.add_parser(
        "doctor",
        help="pre-flight check: what the lab needs, each capture mode, and the fixes",
        description="Check what the lab needs; exit 1 if something it needs is missing.",
    )
    doctor.add_argument("--certs", default="certs", help="lab certificate directory")
    doctor.add_argument("--users", default=str(DEFAULT_USERS), help="users file")
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
    lab.add_argument("dir", nargs="?", default="labchat-lab", metavar="DIR")
    lab.add_argument("--student", action="store_true", help="the student edition (no answers)")
    lab.add_argument("--port", type=int, help="port for JupyterLab")
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
    check.add_argument("notebook", metavar="NOTEBOOK")
    check.add_argument("--student", help="whose work it is (default: the file's owner)")
    check.add_argument("--out", metavar="FILE", help="write the JSON here instead of stdout")
    check.add_argument("--timeout", type=int, default=120, help="seconds per cell (default 120)")
    check.add_argument("--kernel", default="python3", help="Jupyter kernel (default python3)")
    check.set_defaults(func=cmd_check)


def main(argv: list[str] | None = None) -> int:
    """``python -m labchat.classroom.commands ...`` (the same as ``labchat ...``)."""
    parser = argparse.ArgumentParser(prog="labchat")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place errors become one line
        from .launch import LaunchError

        code = 2 if isinstance(exc, LaunchError | FileNotFoundError | ValueError) else 1
        print(f"labchat: error: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
