"""``labchat serve``: run the chat server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import stat
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from labchat.certs import lab_cert_paths
from labchat.diagnose import (
    CertificateFileError,
    CertificateInfo,
    check_server_certificate,
    format_time,
    read_certificates,
)
from labchat.server import DEFAULT_PORT, Limits, Server
from labchat.tls import check_private_key_permissions

from .common import add_users_option, users_file
from .errors import UsageError, listen_error, port_or_zero

__all__ = [
    "CERT_WARN_BEFORE",
    "LIMIT_HELP",
    "check_certificate",
    "check_users_file",
    "cmd_serve",
    "register",
    "report_certificate",
]

#: Warn at start when the server certificate ends sooner than this.
CERT_WARN_BEFORE = timedelta(days=14)


def _raise_open_file_limit() -> None:
    """Each client costs three descriptors (its socket and a wake-up pair); the usual soft
    limit of 1024 would cap a classroom server near 340 clients, so lift it to the hard one."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _pin_to_one_cpu() -> int | None:
    """Keep the server process on one CPU (Linux); returns that CPU, or None if not pinned.

    The server is thread-per-connection under one GIL. With two or more CPUs, a thread woken
    by a room message runs at once on another CPU and fights the running thread for the GIL
    (futex hand-offs across CPUs, several context switches per delivered line). On one CPU a
    woken thread waits its turn, the running one keeps the GIL until it blocks, and lines
    batch. Measured (docs/performance.md): N=100 "max" 27k -> 230k deliveries/s, N=200 at
    1 msg/s each p99 124 -> 7 ms, handshakes/s not lower. Threads inherit the affinity, so
    this runs before the server starts any.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    os.sched_setaffinity(0, {cpus[0]})
    return cpus[0]


class _ListeningOnce(logging.Filter):
    """Drop the server's own "listening on" log record: the CLI prints that line on stdout
    (the line scripts and tests read), and the same terminal showed it twice (issue 12)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "labchat.server" and str(record.msg).startswith("listening on"))


def check_users_file(path: Path) -> None:
    """Refuse a users file that group or others can read, as a private key is refused.

    Its scrypt hashes are slow to guess but not impossible: whoever can read them can try
    passwords offline, at their own pace and without the server's login throttle.

    Raises:
        UsageError: the file's mode lets group or others read (or write) it.
    """
    if os.name == "nt" or not path.exists():  # Windows ACLs do not map onto mode bits
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise UsageError(
            f"users file {path} has mode {mode:#o}: group or others can read its password "
            f"hashes. Fix it with: chmod 600 {path}"
        )


def check_certificate(args: argparse.Namespace) -> CertificateInfo:
    """Check the server certificate before listening: there, readable, valid now, and the
    private key's pair (`report_certificate` then says what was found).

    Raises:
        UsageError: a file is missing or broken, the key belongs to another certificate, or
            the certificate is expired or not yet valid (the message has the dates).
        labchat.tls.KeyPermissionError: group or others can read the key.
    """
    paths = lab_cert_paths(args.certs)
    fix = f"make new ones with `labchat certs --dir {args.certs} --force`"
    try:
        # A key others can read is refused before anything reads it (or says it is fine).
        if paths.server_key.exists():
            check_private_key_permissions(paths.server_key)
        info = check_server_certificate(paths.server_cert, paths.server_key)
    except FileNotFoundError as exc:
        raise UsageError(
            f"{exc.strerror}: create the lab certificates with `labchat certs --dir "
            f"{args.certs}` (or `labchat init`)"
        ) from exc
    except CertificateFileError as exc:
        raise UsageError(f"{exc}; {fix} (clients then need the new ca.pem)") from exc
    if args.client_ca:
        try:
            read_certificates(args.client_ca, what="client CA file (--client-ca)")
        except FileNotFoundError as exc:
            raise UsageError(exc.strerror) from exc
        except CertificateFileError as exc:
            raise UsageError(str(exc)) from exc
    return info


def report_certificate(args: argparse.Namespace, info: CertificateInfo) -> None:
    """Log which certificate the server serves, and warn when it expires soon.

    Called once every other check has passed, so that a refused start prints one line.
    """
    paths = lab_cert_paths(args.certs)
    fix = f"make new ones with `labchat certs --dir {args.certs} --force`"
    left = info.not_after - datetime.now(timezone.utc)
    log = logging.getLogger("labchat.cli")
    log.info(
        "certificate %s: for %s; valid until %s (%d days); matches its key %s",
        paths.server_cert,
        info.names_text(),
        format_time(info.not_after),
        left.days,
        paths.server_key,
    )
    if left < CERT_WARN_BEFORE:
        log.warning("certificate %s expires in %d days: %s", paths.server_cert, left.days, fix)


def cmd_serve(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler()
    handler.addFilter(_ListeningOnce())
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=[handler],
    )
    limits = {
        name: getattr(args, name)
        for name in Limits.names()
        if getattr(args, name, None) is not None
    }
    if args.plain:
        print(
            "WARNING: --plain serves without TLS: logins and chat cross the network in "
            "cleartext. Use it only for the lesson on what plaintext exposes.",
            file=sys.stderr,
        )
    if args.require_cert_user and not args.client_ca:
        raise UsageError(
            "--require-cert-user ties each login to its client certificate: add --client-ca "
            "FILE (the CA that signs the students' certificates)"
        )
    certificate = None if args.plain else check_certificate(args)
    _raise_open_file_limit()
    users = users_file(args)
    check_users_file(users)
    if not users.exists():
        print(
            f"note: {users} does not exist yet; add accounts with "
            f"`labchat adduser NAME --users {users}`",
            file=sys.stderr,
        )
    server = Server(
        args.host,
        args.port,
        certs_dir=args.certs,
        users=users,
        plain=args.plain,
        tls_version=args.tls_version,
        keylog=args.keylog,
        client_ca=args.client_ca,
        require_cert_user=args.require_cert_user,
        **limits,
    )
    if certificate is not None:
        report_certificate(args, certificate)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not args.all_cpus:  # after Server() has checked its files, before it starts threads
        cpu = _pin_to_one_cpu()
        if cpu is not None:
            logging.getLogger("labchat.cli").info(
                "running on CPU %d only (one GIL: faster on one CPU; --all-cpus to undo)", cpu
            )
    try:
        server.start()
    except OSError as exc:
        raise listen_error(exc, args.host, args.port) from exc
    host, port = server.address
    print(f"listening on {host}:{port} ({server.describe()})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.close()
    print("server stopped", flush=True)
    return 0


#: ``--max-clients`` and friends: metavar (the unit) and help for every field of `Limits`.
#: docs/security.md says why each default is what it is.
LIMIT_HELP: dict[str, tuple[str, str]] = {
    "max_clients": ("N", "connections served at once; the next one gets ERR busy"),
    "handshake_timeout": ("SECONDS", "time for the TLS handshake"),
    "login_timeout": ("SECONDS", "time from connecting to a successful LOGIN"),
    "idle_timeout": ("SECONDS", "quiet time before the server sends PING"),
    "ping_timeout": ("SECONDS", "time to answer that PING (any line counts)"),
    "line_timeout": ("SECONDS", "time a partial line may stay unfinished (slowloris)"),
    "outbox_bytes": ("BYTES", "bytes queued for one client before it is dropped as too slow"),
    "write_timeout": ("SECONDS", "time one blocked write may take before the client is dropped"),
    "flood_burst": ("LINES", "lines a client may send back to back..."),
    "flood_rate": ("LINES/S", "...and lines per second after that (faster ones wait)"),
    "max_pending_per_source": ("N", "connections from one address not logged in yet"),
    "max_handshakes_per_source": ("N", "TLS handshakes from one address at once"),
    "close_linger": ("SECONDS", "wait for the client's FIN after a last line before closing"),
    "login_failures": ("N", "failed logins of one account from one address before a cool-down"),
    "login_window": ("SECONDS", "time over which those failures count"),
    "login_cooldown": ("SECONDS", "first cool-down of an account and address; then doubling"),
    "login_max_cooldown": ("SECONDS", "longest cool-down, and the quiet time that resets it"),
    "source_failures": ("N", "failed logins one address may make in a burst, any accounts"),
    "source_interval": ("SECONDS", "then one more failure allowed per this many seconds"),
    "max_hashes": ("N", "password checks (scrypt, 16 MiB each) running at once"),
    "hashes_per_source": ("N", "of those, how many one address may hold"),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``labchat`` subcommands."""
    serve = sub.add_parser(
        "serve",
        help="run the chat server",
        description=(
            "Run the chat server until Ctrl-C or SIGTERM. The first line on stdout is "
            "'listening on HOST:PORT (...)'; the log goes to stderr. It checks its "
            "certificate (valid now, matches its key) and refuses a key or users file that "
            "others can read."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port", type=port_or_zero, default=DEFAULT_PORT, help="port to listen on; 0 picks one"
    )
    serve.add_argument(
        "--certs",
        default="certs",
        metavar="DIR",
        help="directory with server.pem and server.key (from `labchat certs`)",
    )
    add_users_option(serve)
    serve.add_argument(
        "--plain", action="store_true", help="no TLS (INSECURE; for the plaintext lesson)"
    )
    serve.add_argument(
        "--tls-version", choices=("1.2", "1.3"), help="allow only this TLS version (default: both)"
    )
    serve.add_argument(
        "--keylog",
        metavar="FILE",
        help="append TLS secrets to FILE (NSS key log, mode 0600: it decrypts captures)",
    )
    serve.add_argument(
        "--client-ca",
        metavar="FILE",
        help="require client certificates signed by this CA (mutual TLS)",
    )
    serve.add_argument(
        "--require-cert-user",
        action="store_true",
        help="with --client-ca: a LOGIN must name the account in the client certificate",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    serve.add_argument(
        "--all-cpus",
        action="store_true",
        help="do not pin the server to one CPU (pinning is faster under one GIL)",
    )
    limits = serve.add_argument_group("limits (docs/security.md says why each default)")
    for name in Limits.names():
        default = getattr(Limits, name)
        unit, text = LIMIT_HELP[name]  # every limit gets its unit and a sentence
        limits.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=type(default),
            default=None,
            metavar=unit,
            help=f"{text} (default: {default:g})",
        )
    serve.set_defaults(func=cmd_serve)
