"""`labchat.doctor`: every check on a healthy lab, and each failure path with its fix."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from labchat import doctor
from labchat.auth import UserStore
from labchat.certs import CA, create_lab_certs
from labchat.doctor import FAIL, NO, OK, WARN, Probes, diagnose
from labchat.doctor.fixes import APPARMOR_SYSCTL, FixResult, apparmor_profile, fix_capture

APPARMOR_WHY = (  # what the capture layer says on Ubuntu 23.10+ (fix_capture's input)
    "AppArmor restricts unprivileged user namespaces "
    "(kernel.apparmor_restrict_unprivileged_userns=1, the Ubuntu 23.10+ default; "
    "unshare said: unshare: write failed /proc/self/uid_map: Operation not permitted)"
)
HOST_WHY = "capturing on the host needs root or CAP_NET_RAW (you are uid 1000)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _says(**why: str | None) -> dict[str, Callable[[], str | None]]:
    """Capture-mode checks that answer at once: mode -> why it is unavailable (None: works)."""
    return {mode: (lambda reason=reason: reason) for mode, reason in why.items()}


def _probes(**kw: Any) -> Probes:
    """Probes that answer at once: every capture mode works unless `checks` says otherwise."""
    checks = _says(private=None, host=None, offline=None)
    checks.update(kw.pop("checks", {}))
    kw.setdefault("sysctl", lambda path: None)
    return Probes(checks=checks, **kw)


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Path]:
    """A healthy lab: certificates, a users file with one account, two free ports."""
    certs = create_lab_certs(tmp_path / "certs")
    users = tmp_path / "certs" / "users.json"
    UserStore(users, n=2**10, p=1).add("alice", "alice-password")
    return {"certs": certs.directory, "users": users}


def _run(lab: dict[str, Path], probes: Probes | None = None, **kw: object) -> doctor.Report:
    kw.setdefault("ports", {_free_port(): "labchat serve"})
    return diagnose(certs=lab["certs"], users=lab["users"], probes=probes or _probes(), **kw)


def test_a_healthy_lab_is_ready(lab: dict[str, Path]):
    report = _run(lab, probes=Probes())  # the real probes of this machine
    statuses = {f.check: f.status for f in report.findings}
    for check in ("python", "scapy", "certificates", "users file", "notebooks"):
        assert statuses[check] == OK, report.table()
    assert [c for c in statuses if c.startswith("port ")] and report.ok
    assert "capture used" in statuses and statuses["capture offline"] == OK
    assert report.table().splitlines()[-1].startswith("labchat 0.1.0: ready")
    assert report.get("users file").detail.endswith("1 account, mode 0o600")


def test_lab_only_leaves_out_the_servers_files_and_ports(tmp_path: Path):
    report = diagnose(certs=tmp_path / "none", lab_only=True, probes=_probes())
    checks = [f.check for f in report.findings]
    assert "certificates" not in checks and "users file" not in checks
    assert not [c for c in checks if c.startswith("port ")]
    assert report.ok


def test_missing_certificates_and_users_are_a_warning_with_the_command(tmp_path: Path):
    report = diagnose(
        certs=tmp_path / "certs", users=tmp_path / "users.json", ports={}, probes=_probes()
    )
    certs, users = report.get("certificates"), report.get("users file")
    assert (certs.status, certs.fix) == (WARN, "labchat init")
    assert users.status == WARN and "labchat init" in users.fix
    assert report.ok, "the notebooks do not need them"
    assert "fix: labchat init" in report.table()


def _expired_certs(directory: Path) -> None:
    ca = CA()
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
    leaf = ca.issue_cert("localhost", not_before=past - dt.timedelta(days=30), not_after=past)
    directory.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(directory / "ca.pem")
    leaf.private_key_pem.write_to_path(directory / "server.key", private=True)
    leaf.cert_chain_pems[0].write_to_path(directory / "server.pem")


def test_an_expired_certificate_fails_with_the_command_that_renews_it(
    lab: dict[str, Path], tmp_path: Path
):
    _expired_certs(lab["certs"])
    report = _run(lab)
    found = report.get("certificates")
    assert found.status == FAIL and "server.pem expired on" in found.detail
    assert found.fix.startswith(f"labchat certs --dir {lab['certs']} --force")
    assert not report.ok
    assert report.table().splitlines()[-1].endswith("NOT ready: fix the FAIL lines")


def test_a_certificate_about_to_expire_is_a_warning(lab: dict[str, Path]):
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365 - 3)
    report = _run(lab, probes=_probes(now=lambda: soon))
    found = report.get("certificates")
    assert found.status == WARN and found.detail.endswith("days left")
    assert report.ok


def test_a_key_of_another_certificate_and_a_foreign_ca_fail(lab: dict[str, Path]):
    other = CA().issue_cert("localhost")
    (lab["certs"] / "server.key").unlink()
    other.private_key_pem.write_to_path(lab["certs"] / "server.key", private=True)
    CA().cert_pem.write_to_path(lab["certs"] / "ca.pem")
    detail = _run(lab).get("certificates").detail
    assert "server.key does not belong to server.pem" in detail
    assert "server.pem is not signed by ca.pem" in detail


def test_a_server_key_others_can_read_fails(lab: dict[str, Path]):
    (lab["certs"] / "server.key").chmod(0o644)
    found = _run(lab).get("certificates")
    assert found.status == FAIL and "mode 0o644" in found.detail
    assert found.fix == f"chmod 600 {lab['certs'] / 'server.key'}"


def test_a_world_readable_users_file_fails(lab: dict[str, Path]):
    lab["users"].chmod(0o644)
    report = _run(lab)
    found = report.get("users file")
    assert found.status == FAIL and "others can read the password hashes" in found.detail
    assert found.fix == f"chmod 600 {lab['users']}"
    assert not report.ok


def test_a_corrupt_users_file_fails(lab: dict[str, Path]):
    lab["users"].write_text("{not json")
    lab["users"].chmod(0o600)
    found = _run(lab).get("users file")
    assert found.status == FAIL and str(lab["users"]) in found.detail


def test_a_busy_port_is_reported_with_who_needs_it(lab: dict[str, Path]):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        report = _run(lab, ports={port: "labchat serve"})
    found = report.get(f"port {port}")
    assert found.status == WARN and "in use" in found.detail and "labchat serve" in found.detail
    assert f"sport = :{port}" in found.fix
    assert report.ok and report.warnings == [found]


def test_apparmor_restriction_warns_and_names_the_fix_capture_command(
    lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch
):
    # Ubuntu 23.10+: the sysctl says 1 and unshare fails. The capture layer reasons about it
    # (only host and offline are stubbed); the doctor warns and names the fix.
    monkeypatch.delenv("LABCHAT_CAPTURE_MODE", raising=False)
    denied = "unshare: write failed /proc/self/uid_map: Operation not permitted"
    probes = Probes(
        platform="linux",
        sysctl=lambda path: "1" if path == APPARMOR_SYSCTL else None,
        userns_probe=lambda: (False, denied),
        checks=_says(host=HOST_WHY, offline=None),
    )
    report = _run(lab, probes=probes)
    private, host = report.get("capture private"), report.get("capture host")
    assert private.status == WARN
    assert private.detail.startswith("AppArmor restricts unprivileged user namespaces")
    assert denied in private.detail
    assert private.fix.startswith("`sudo labchat doctor --fix-capture`")
    assert "--copies" in private.fix
    assert host.status == NO and "sudoers" in host.fix and "never setcap" in host.fix
    assert report.get("capture used").detail.startswith("offline")
    assert report.ok, "offline still works: a warning, not a failure"


def test_no_way_to_get_packets_fails(lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LABCHAT_CAPTURE_MODE", raising=False)
    probes = _probes(
        checks=_says(
            private="no `unshare` binary on PATH (install util-linux)",
            host=HOST_WHY,
            offline="no reference captures in /nowhere",
        ),
        platform="linux",
    )
    report = _run(lab, probes=probes)
    assert report.get("capture offline").status == FAIL
    assert report.get("capture private").fix.startswith("install util-linux")
    used = report.get("capture used")
    assert used.status == FAIL and used.detail.startswith("no way to get packets")
    assert not report.ok


@pytest.mark.parametrize(
    ("platform", "words"),
    [("darwin", ["access_bpf", "ChmodBPF", "/dev/bpf*"]), ("win32", ["Npcap", "loopback"])],
)
def test_other_platforms_get_their_own_capture_fix(
    lab: dict[str, Path], platform: str, words: list[str]
):
    why = f"packet sockets are Linux-only here (this is {platform})"
    probes = _probes(
        platform=platform,
        checks=_says(private="user and network namespaces are Linux-only", host=why),
    )
    report = _run(lab, probes=probes)
    host = report.get("capture host")
    assert all(w in host.fix for w in words), host.fix
    assert report.get("capture private").fix.startswith("none: user namespaces are Linux-only")


def test_a_kernel_that_cannot_import_the_lab_fails(lab: dict[str, Path], tmp_path: Path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named labchat' >&2\nexit 1\n")
    fake.chmod(0o755)
    found = _run(lab, probes=_probes(python=str(fake))).get("notebooks")
    assert found.status == FAIL
    assert (
        found.detail == "the kernel cannot import the lab: ModuleNotFoundError: No module "
        "named labchat"
    )


# ------------------------------------------------------------------------- --fix-capture


def _apparmor(name: str) -> str | None:
    return "1" if name == APPARMOR_SYSCTL else None


def _ubuntu_fix(**kw: object) -> FixResult:
    """fix_capture on an Ubuntu 23.10+ machine where private mode failed for AppArmor."""
    return fix_capture(sysctl=_apparmor, private_why=APPARMOR_WHY, platform="linux", **kw)


def test_fix_capture_has_nothing_to_do_when_private_mode_works():
    result = fix_capture(sysctl=_apparmor, private_why=None)
    assert not result.applied and result.text.startswith("nothing to fix")


def test_fix_capture_refuses_a_shared_interpreter():
    # /usr/bin/python3-like: the real file is outside this environment's prefix.
    result = _ubuntu_fix(
        python=sys.executable,
        prefix=Path(sys.prefix) / "elsewhere",
        euid=0,
    )
    assert not result.applied
    assert "other users and programs share" in result.text and "venv --copies" in result.text


def _own_venv(tmp_path: Path) -> tuple[Path, Path]:
    prefix = tmp_path / "venv"
    (prefix / "bin").mkdir(parents=True)
    python = prefix / "bin" / "python3"
    python.write_bytes(b"an interpreter of the lab's own")
    return prefix, python


def test_fix_capture_prints_the_profile_for_a_normal_user(tmp_path: Path):
    prefix, python = _own_venv(tmp_path)
    result = _ubuntu_fix(
        python=python,
        prefix=prefix,
        euid=1000,
        directory=tmp_path / "apparmor.d",
    )
    assert not result.applied and not (tmp_path / "apparmor.d").exists()
    assert f"sudo {prefix / 'bin' / 'labchat'} doctor --fix-capture" in result.text
    assert apparmor_profile(python.resolve()) in result.text


def test_fix_capture_as_root_installs_and_loads_the_profile(tmp_path: Path):
    prefix, python = _own_venv(tmp_path)
    directory = tmp_path / "apparmor.d"
    directory.mkdir()
    calls: list[Sequence[str]] = []

    def run(argv: Sequence[str]) -> subprocess.CompletedProcess:
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")

    result = _ubuntu_fix(
        python=python,
        prefix=prefix,
        euid=0,
        directory=directory,
        run=run,
    )
    (written,) = directory.iterdir()
    text = written.read_text()
    assert result.applied and str(written) in result.text
    assert calls == [["apparmor_parser", "-r", str(written)]]
    assert f"profile {written.name} {python.resolve()} flags=(unconfined) {{" in text
    assert "  userns,\n" in text and "abi <abi/4.0>," in text
    assert " ix,\n" in text  # unshare runs under the same profile
    assert oct(written.stat().st_mode & 0o777) == "0o644"


def test_fix_capture_reports_a_profile_apparmor_refused(tmp_path: Path):
    prefix, python = _own_venv(tmp_path)

    def run(argv: Sequence[str]) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(argv, 1, "", "syntax error in profile")

    with pytest.raises(OSError, match="syntax error in profile"):
        _ubuntu_fix(
            python=python,
            prefix=prefix,
            euid=0,
            directory=tmp_path,
            run=run,
        )


def test_fix_capture_names_other_causes_and_platforms():
    not_apparmor = fix_capture(
        sysctl=lambda n: None,
        platform="linux",
        private_why="user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)",
    )
    assert "user.max_user_namespaces" in not_apparmor.text and not not_apparmor.applied
    mac = fix_capture(sysctl=lambda n: None, private_why="Linux-only", platform="darwin")
    assert "access_bpf" in mac.text
    win = fix_capture(sysctl=lambda n: None, private_why="Linux-only", platform="win32")
    assert "Npcap" in win.text
