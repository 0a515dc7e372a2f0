"""Tests for labchat.cli: the subcommands in-process, and `serve`/`chat` as real processes."""

from __future__ import annotations

import io
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PASSWORDS, TIMEOUT

from labchat import protocol as p
from labchat.auth import UserStore
from labchat.certs import lab_cert_paths
from labchat.cli import main
from labchat.client import Client

pytestmark = pytest.mark.usefixtures("no_thread_leak")

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    """Run `labchat ARGV` in-process; return (exit code, stdout, stderr)."""
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("labchat: error: "), err
    for fragment in fragments:
        assert fragment in err, err


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------- certs / init


def test_cli_certs_and_refusing_overwrite(capsys, tmp_path) -> None:
    d = tmp_path / "certs"
    code, out, err = run(capsys, "certs", "--dir", str(d))
    assert code == 0, err
    paths = lab_cert_paths(d)
    assert str(paths.ca_cert) in out
    for path in (paths.ca_cert, paths.ca_key, paths.server_cert, paths.server_key):
        assert path.exists()
    assert paths.server_key.stat().st_mode & 0o077 == 0
    before = paths.ca_cert.read_bytes()

    code, out, err = run(capsys, "certs", "--dir", str(d))
    assert code == 2
    assert_one_line_error(err, "refusing to overwrite", "--force")
    assert paths.ca_cert.read_bytes() == before

    code, out, err = run(capsys, "certs", "--dir", str(d), "--force")
    assert code == 0, err
    assert paths.ca_cert.read_bytes() != before


def test_cli_certs_client_and_bad_name(capsys, tmp_path) -> None:
    d = tmp_path / "certs"
    assert run(capsys, "certs", "--dir", str(d))[0] == 0
    code, out, err = run(capsys, "certs", "--dir", str(d), "--client", "alice")
    assert code == 0, err
    assert (d / "client-alice.pem").exists() and (d / "client-alice.key").exists()
    code, _, err = run(capsys, "certs", "--dir", str(d), "--client", "alice")
    assert code == 2
    assert_one_line_error(err, "refusing to overwrite")
    code, _, err = run(capsys, "certs", "--dir", str(d), "--client", "../evil")
    assert code == 2
    assert_one_line_error(err, "invalid client name")


def test_cli_certs_refusal_as_a_process(tmp_path, lab_certs) -> None:
    # The same refusal from a real process: exit 2, one line, no traceback.
    result = subprocess.run(
        [sys.executable, "-m", "labchat", "certs", "--dir", str(lab_certs.directory)],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=30,
    )
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "refusing to overwrite")
    assert result.stdout == ""


BOX_LINE = r"^\|\s+(alice|bob)\s+(\S+)\s+\|$"


def test_cli_init_creates_once_and_shows_the_accounts_every_time(capsys, tmp_path) -> None:
    from labchat.auth import verify_password

    certs = tmp_path / "certs"
    code, out, err = run(capsys, "init", "--certs", str(certs))
    assert code == 0, err
    assert "created" in out
    shown = dict(re.findall(BOX_LINE, out, re.M))
    assert set(shown) == {"alice", "bob"}
    store = UserStore(certs / "users.json")  # --certs DIR implies DIR/users.json
    assert all(verify_password(store.record(n), pw) for n, pw in shown.items())
    accounts = certs / "demo-accounts.txt"
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    assert f"alice  {shown['alice']}\n" in accounts.read_text()
    assert out.rstrip().endswith("+")  # the box is the last thing printed
    cert_before = lab_cert_paths(certs).server_cert.read_bytes()

    code, out, err = run(capsys, "init", "--certs", str(certs))
    assert code == 0, err
    assert "already there" in out
    assert dict(re.findall(BOX_LINE, out, re.M)) == shown  # shown again, unchanged
    assert lab_cert_paths(certs).server_cert.read_bytes() == cert_before


def test_cli_passwd_resets_and_prints_and_init_shows_only_passwords_that_work(
    capsys, monkeypatch, tmp_path
) -> None:
    from labchat.auth import verify_password

    certs = tmp_path / "certs"
    assert run(capsys, "init", "--certs", str(certs))[0] == 0
    users = certs / "users.json"
    code, out, err = run(capsys, "passwd", "alice", "--users", str(users))
    assert code == 0, err
    match = re.fullmatch(r"new password for alice: (\S{12}) \(also in (.+)\)\n", out)
    assert match and match.group(2) == str(certs / "demo-accounts.txt"), out
    assert verify_password(UserStore(users).record("alice"), match.group(1))
    assert f"alice  {match.group(1)}\n" in (certs / "demo-accounts.txt").read_text()

    # bob chooses his own: it is not written down, and init no longer shows an old one.
    code, out, err = run(
        capsys, "adduser", "bob", "--users", str(users), "--replace", "--password-stdin",
        stdin="bobs-own-password\n", monkeypatch=monkeypatch,
    )  # fmt: skip
    assert code == 0, err
    assert "bob" not in (certs / "demo-accounts.txt").read_text()
    code, out, err = run(capsys, "init", "--certs", str(certs))
    assert dict(re.findall(BOX_LINE, out, re.M)) == {"alice": match.group(1)}
    assert "`labchat passwd bob` gives it a new random one" in out

    code, _, err = run(capsys, "passwd", "nobody", "--users", str(users))
    assert code == 2
    assert_one_line_error(err, "no user nobody in", "labchat adduser nobody")


# --------------------------------------------------------------------------- users


def test_cli_adduser_users_deluser(capsys, monkeypatch, tmp_path) -> None:
    users = tmp_path / "users.json"
    code, out, err = run(
        capsys,
        "adduser",
        "dave",
        "--users",
        str(users),
        "--password-stdin",
        stdin="dave-password\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0, err
    assert "added dave" in out
    assert run(capsys, "users", "--users", str(users))[1] == "dave\n"

    # Exists already: refused without --replace, accepted with it.
    code, out, err = run(
        capsys,
        "adduser",
        "dave",
        "--users",
        str(users),
        "--password-stdin",
        stdin="other-password\n",
        monkeypatch=monkeypatch,
    )
    assert code == 2
    assert_one_line_error(err, "exists", "--replace")
    code, out, err = run(
        capsys,
        "adduser",
        "dave",
        "--users",
        str(users),
        "--password-stdin",
        "--replace",
        stdin="other-password\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0, err
    assert "updated dave" in out

    code, out, err = run(capsys, "deluser", "dave", "--users", str(users))
    assert code == 0, err
    assert "removed dave" in out
    code, out, err = run(capsys, "users", "--users", str(users))
    assert code == 0 and "no users" in out
    code, out, err = run(capsys, "deluser", "dave", "--users", str(users))
    assert code == 2
    assert_one_line_error(err, "dave")


@pytest.mark.parametrize(
    ("name", "password", "fragment"),
    [
        ("bad name", "long-enough-pw", "invalid user name"),
        ("dave", "short", "too short"),
        ("dave", "", "no password"),
    ],
)
def test_cli_adduser_bad_input(capsys, monkeypatch, tmp_path, name, password, fragment) -> None:
    users = tmp_path / "users.json"
    code, _, err = run(
        capsys,
        "adduser",
        name,
        "--users",
        str(users),
        "--password-stdin",
        stdin=f"{password}\n" if password else "",
        monkeypatch=monkeypatch,
    )
    assert code == 2
    assert_one_line_error(err, fragment)
    assert not users.exists()


def test_cli_adduser_without_terminal_or_stdin_password(capsys, monkeypatch, tmp_path) -> None:
    code, _, err = run(
        capsys,
        "adduser",
        "dave",
        "--users",
        str(tmp_path / "u.json"),
        stdin="",
        monkeypatch=monkeypatch,
    )
    assert code == 2
    assert_one_line_error(err, "--password-stdin")


def test_cli_users_corrupt_file(capsys, tmp_path) -> None:
    users = tmp_path / "users.json"
    users.write_text("{not json")
    code, _, err = run(capsys, "users", "--users", str(users))
    assert code == 2
    assert_one_line_error(err, "not valid JSON")


# --------------------------------------------------------------------------- serve


def test_cli_serve_prints_address_serves_and_stops_on_SIGTERM(lab_certs, users) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labchat",
            "serve",
            "--port",
            "0",
            "--certs",
            str(lab_certs.directory),
            "--users",
            str(users),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )
    try:
        first = proc.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+) \((.+)\)\n", first)
        assert match, first
        assert match.group(2) == "TLS 1.2-1.3"
        port = int(match.group(1))
        with Client("127.0.0.1", port, cafile=lab_certs.ca_cert, timeout=TIMEOUT) as client:
            client.login("alice", PASSWORDS["alice"])
            client.say("hi from a test")
            assert client.recv(TIMEOUT) == p.Msg("alice", "hi from a test")
            proc.send_signal(signal.SIGTERM)
            assert client.recv(TIMEOUT) == p.Bye("server shutting down")
        assert proc.wait(timeout=TIMEOUT) == 0
        rest = proc.stdout.read()
        assert rest == "server stopped\n"
        err = proc.stderr.read()
        assert "Traceback" not in err
        assert "alice" in err and PASSWORDS["alice"] not in err  # logged, never the password
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# --------------------------------------------------------------------------- chat in a pty


class Terminal:
    """`labchat chat` running on a pseudo-terminal, read and typed into like a person would."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=python_env(),
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self.output = b""

    def expect(self, text: str, timeout: float = TIMEOUT) -> None:
        """Read until *text* has appeared on the screen (bounded)."""
        wanted = text.encode()
        deadline = time.monotonic() + timeout
        while wanted not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not on screen:\n{self.output.decode(errors='replace')}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    assert wanted in self.output, self.output.decode(errors="replace")
                    return
                self.output += chunk

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit, collecting the rest of its output."""
        code = self.proc.wait(timeout=timeout)
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def chat_argv(server, lab_certs, *extra: str, user: str = "alice") -> list[str]:
    host, port = server.address
    return [
        sys.executable,
        "-m",
        "labchat",
        "chat",
        "--host",
        host,
        "--port",
        str(port),
        "--user",
        user,
        "--ca",
        str(lab_certs.ca_cert),
        *extra,
    ]


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_cli_chat_wrong_password_in_a_terminal(make_server, lab_certs) -> None:
    server = make_server()
    term = Terminal(chat_argv(server, lab_certs))
    try:
        term.expect("password: ")
        term.type("not-the-password\n")
        assert term.finish() == 1
        assert b"labchat: error: login refused: auth: invalid user name or password" in term.output
        assert b"Traceback" not in term.output
    finally:
        term.close()


def test_cli_chat_insecure_warns(make_server, lab_certs, tmp_path) -> None:
    server = make_server()
    argv = chat_argv(server, lab_certs, "--insecure", "--password-stdin")
    argv[argv.index("--ca") + 1] = str(tmp_path / "no-such-ca.pem")  # not needed, not read
    result = subprocess.run(
        argv,
        input=f"{PASSWORDS['alice']}\nhello insecurely\n",
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("WARNING: ")
    assert "verification is off" in result.stderr
    assert "Traceback" not in result.stderr
    assert "-- logged in as alice" in result.stdout


def test_cli_chat_wrong_ca_fails_cleanly(make_server, tmp_path) -> None:
    from labchat.certs import CA

    server = make_server()
    other = tmp_path / "other.pem"
    CA().cert_pem.write_to_path(other)
    argv = chat_argv(server, lab_cert_paths(tmp_path), "--password-stdin")
    argv[argv.index("--ca") + 1] = str(other)
    result = subprocess.run(
        argv, input="x\n", capture_output=True, text=True, env=python_env(), timeout=30
    )
    assert result.returncode == 1
    assert_one_line_error(result.stderr, f"is not signed by the CA in {other}")


# --------------------------------------------------------------------------- the one error path


def test_cli_usage_error_is_one_line_and_exit_2(capsys) -> None:
    code, out, err = run(capsys, "serve", "--no-such-option")
    assert code == 2 and out == ""
    assert_one_line_error(err, "unrecognized arguments: --no-such-option", "--help`")
    code, _, err = run(capsys)  # no subcommand at all
    assert code == 2
    assert_one_line_error(err, "COMMAND", "`labchat --help`")
    code, _, err = run(capsys, "certs", "--key-type", "dsa")
    assert code == 2
    assert_one_line_error(err, "'dsa'")


@pytest.mark.parametrize(
    ("argv", "port"),
    [
        (("serve", "--port", "99999"), "99999"),
        (("serve", "--port", "-1"), "-1"),
        (("chat", "--user", "alice", "--port", "99999"), "99999"),
        (("chat", "--user", "alice", "--port", "0"), "0"),
        (("capture", "live", "--port", "65536", "--out", "x"), "65536"),
        (("inspect", "x.pcap", "--tls-port", "http"), "http"),
    ],
)
def test_cli_bad_port_is_a_usage_error_naming_the_port(capsys, argv, port) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_line_error(err, f"'{port}' is not a port number")


def test_cli_serve_port_0_still_picks_a_free_port() -> None:
    from labchat.cli import build_parser

    assert build_parser().parse_args(["serve", "--port", "0"]).port == 0
    assert build_parser().parse_args(["chat", "--user", "a", "--port", "65535"]).port == 65535


def test_cli_runtime_error_is_one_line_exit_1_and_debug_shows_the_traceback() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound but never listening: a connection is refused
        port = str(bound.getsockname()[1])
        chat = ["chat", "--plain", "--port", port, "--user", "alice", "--password-stdin"]
        runs = {
            how: subprocess.run(
                [sys.executable, "-m", "labchat", *flags, *chat],
                input="pw\n",
                capture_output=True,
                text=True,
                env={**python_env(), **env},
                timeout=30,
            )
            for how, flags, env in (
                ("plain", [], {}),
                ("LABCHAT_DEBUG=1", [], {"LABCHAT_DEBUG": "1"}),
                ("-v", ["-v"], {}),
            )
        }
    assert runs["plain"].returncode == 1
    assert_one_line_error(runs["plain"].stderr, "nothing is listening on", "labchat serve")
    for how in ("LABCHAT_DEBUG=1", "-v"):
        result = runs[how]
        assert result.returncode == 1, how
        assert result.stderr.startswith("Traceback (most recent call last):"), how
        assert result.stderr.splitlines()[-1] == runs["plain"].stderr.strip(), how


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_cli_ctrl_c_exits_130_without_a_traceback(make_server, lab_certs) -> None:
    server = make_server()
    term = Terminal(chat_argv(server, lab_certs))
    try:
        term.expect("password: ")
        term.proc.send_signal(signal.SIGINT)
        assert term.finish() == 130
        assert b"Traceback" not in term.output
        assert re.search(rb"password: \r?\n$", term.output), term.output  # the line is ended
    finally:
        term.close()


def test_cli_subcommand_that_fails_to_import_is_reported_not_dropped(
    capsys, monkeypatch, tmp_path
) -> None:
    # None in sys.modules: importing labchat.cli.inspect raises ImportError, as it would if
    # one of its dependencies were missing.
    monkeypatch.setitem(sys.modules, "labchat.cli.inspect", None)
    code, out, err = run(capsys, "inspect", "x.pcap", "--keylog", "keys.log")
    assert code == 1 and out == ""
    assert_one_line_error(err, "`labchat inspect` is not available", "labchat.cli.inspect")
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert re.search(r"inspect\s+\(not available", capsys.readouterr().out)
    code, out, err = run(capsys, "users", "--users", str(tmp_path / "users.json"))
    assert code == 0 and "no users" in out, err  # the rest of the CLI still works
