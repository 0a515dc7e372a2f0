"""`labchat ...`: the command line. Each subcommand is a thin shell around the package.

Handlers return an exit code: 0 done, 1 failed at run time, 2 bad input. Errors a user can
fix are printed as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import secrets
import signal
import ssl
import sys
import threading
import warnings
from pathlib import Path

from labchat import __version__

from .auth import AuthError, UserStore
from .certs import create_lab_certs, issue_client_cert, lab_cert_paths
from .server import DEFAULT_PORT, DEFAULT_USERS, Limits, Server

__all__ = ["main", "build_parser"]

DEMO_USERS = ("alice", "bob")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


# --------------------------------------------------------------------------- helpers


def _read_password(args: argparse.Namespace, *, confirm: bool) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsageError("--password-stdin: no password on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for a password; use --password-stdin")
    password = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != password:
        raise UsageError("the two passwords differ")
    return password


def _print_err(message: str) -> None:
    print(f"labchat: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- serve


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


def cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
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
    _raise_open_file_limit()
    users = Path(args.users)
    if not users.exists():
        print(
            f"note: {users} does not exist yet; add accounts with `labchat adduser NAME`",
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
        **limits,
    )
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
    server.start()
    host, port = server.address
    print(f"listening on {host}:{port} ({server.describe()})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.close()
    print("server stopped", flush=True)
    return 0


# --------------------------------------------------------------------------- chat


def cmd_chat(args: argparse.Namespace) -> int:
    from .client import Client, LoginError, run_chat
    from .tls import InsecureTLSWarning

    if args.insecure:
        warnings.simplefilter("always", InsecureTLSWarning)
        warnings.formatwarning = lambda msg, *a, **k: f"WARNING: {msg}\n"  # one clear line
    password = _read_password(args, confirm=False)
    client = Client(
        args.host,
        args.port,
        tls=not args.plain,
        cafile=args.ca,
        server_hostname=args.server_name,
        tls_version=args.tls_version,
        keylog=args.keylog,
        insecure=args.insecure,
        certfile=args.cert,
        keyfile=args.key,
    )
    print(
        f"-- connected: {client.hello.version} {client.hello.text}"
        + (f" over {client.tls_version}" if client.tls_version else " (plaintext)")
    )
    try:
        client.login(args.user, password)
    except LoginError as exc:
        client.close()
        _print_err(f"login refused: {exc.code}: {exc.text}")
        return 1
    print(f"-- logged in as {args.user}")
    return run_chat(client)


# --------------------------------------------------------------------------- users


def cmd_adduser(args: argparse.Namespace) -> int:
    store = UserStore(args.users)
    if args.name in store and not args.replace:
        raise UsageError(f"user {args.name} exists in {store.path}; use --replace to reset")
    store.add(args.name, _read_password(args, confirm=True), replace=args.replace)
    print(f"{'updated' if args.replace else 'added'} {args.name} in {store.path}")
    return 0


def cmd_deluser(args: argparse.Namespace) -> int:
    store = UserStore(args.users)
    store.remove(args.name)
    print(f"removed {args.name} from {store.path}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    store = UserStore(args.users)
    names = store.names()
    print("\n".join(names) if names else f"no users in {store.path}")
    return 0


# --------------------------------------------------------------------------- certificates


def cmd_certs(args: argparse.Namespace) -> int:
    if args.client:
        cert, key = issue_client_cert(args.dir, args.client, force=args.force)
        print(f"wrote {cert} and {key} (client certificate for {args.client})")
        return 0
    paths = create_lab_certs(
        args.dir, hosts=args.host or (), key_type=args.key_type, force=args.force
    )
    print(f"wrote {paths.ca_cert}, {paths.ca_key}, {paths.server_cert}, {paths.server_key}")
    print(f"clients trust the lab CA in {paths.ca_cert}; keep the .key files private")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Lab setup for `make lab`: certificates and demo accounts, only where missing."""
    paths = lab_cert_paths(args.certs)
    if paths.server_cert.exists() and paths.server_key.exists():
        print(f"lab certificates: {paths.directory}/ (already there)")
    else:
        create_lab_certs(args.certs, force=True)
        print(f"lab certificates: created in {paths.directory}/")
    store = UserStore(args.users)
    created = []
    for name in DEMO_USERS:
        if name not in store:
            password = secrets.token_urlsafe(9)
            store.add(name, password)
            created.append((name, password))
    if created:
        print(f"demo accounts added to {store.path} (passwords shown once, only here):")
        for name, password in created:
            print(f"    {name:8s} {password}")
    existing = [n for n in DEMO_USERS if n not in dict(created)]
    if existing:
        print(
            f"demo accounts already in {store.path}: {', '.join(existing)} "
            f"(forgot a password? labchat adduser NAME --replace)"
        )
    return 0


# --------------------------------------------------------------------------- parser


def _add_users_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--users", default=str(DEFAULT_USERS), help=f"users file (default {DEFAULT_USERS})"
    )


def _add_password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labchat", description="An educational TLS chat lab: serve, chat, capture, inspect."
    )
    parser.add_argument("--version", action="version", version=f"labchat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the chat server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0 picks one)")
    serve.add_argument("--certs", default="certs", help="directory with server.pem/server.key")
    _add_users_option(serve)
    serve.add_argument("--plain", action="store_true", help="no TLS (INSECURE; for lessons)")
    serve.add_argument("--tls-version", choices=("1.2", "1.3"), help="pin one TLS version")
    serve.add_argument("--keylog", help="write TLS secrets to this NSS key log file")
    serve.add_argument("--client-ca", help="require client certificates from this CA (mTLS)")
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    serve.add_argument(
        "--all-cpus",
        action="store_true",
        help="do not pin the server to one CPU (pinning is faster under one GIL)",
    )
    for name in Limits.names():
        default = getattr(Limits, name)
        serve.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=type(default),
            default=None,
            metavar="N",
            help=f"(default {default})",
        )
    serve.set_defaults(func=cmd_serve)

    chat = sub.add_parser("chat", help="chat in this terminal")
    chat.add_argument("--host", default="127.0.0.1")
    chat.add_argument("--port", type=int, default=DEFAULT_PORT)
    chat.add_argument("--user", required=True, help="your user name")
    _add_password_stdin(chat)
    chat.add_argument("--ca", default=str(Path("certs") / "ca.pem"), help="lab CA certificate")
    chat.add_argument("--server-name", help="name to check in the certificate (default: host)")
    chat.add_argument("--tls-version", choices=("1.2", "1.3"))
    chat.add_argument("--keylog", help="append TLS secrets to this NSS key log file")
    chat.add_argument("--plain", action="store_true", help="no TLS (server must use --plain)")
    chat.add_argument(
        "--insecure",
        action="store_true",
        help="skip certificate checks (INSECURE: anyone in the middle can read "
        "and change the chat)",
    )
    chat.add_argument("--cert", help="client certificate (mutual TLS)")
    chat.add_argument("--key", help="client private key (mutual TLS)")
    chat.set_defaults(func=cmd_chat)

    adduser = sub.add_parser("adduser", help="add a user (or reset a password with --replace)")
    adduser.add_argument("name")
    _add_users_option(adduser)
    _add_password_stdin(adduser)
    adduser.add_argument("--replace", action="store_true", help="reset an existing password")
    adduser.set_defaults(func=cmd_adduser)

    deluser = sub.add_parser("deluser", help="remove a user")
    deluser.add_argument("name")
    _add_users_option(deluser)
    deluser.set_defaults(func=cmd_deluser)

    users = sub.add_parser("users", help="list users")
    _add_users_option(users)
    users.set_defaults(func=cmd_users)

    certs = sub.add_parser("certs", help="create the lab CA and server certificate")
    certs.add_argument("--dir", default="certs", help="output directory (default certs/)")
    certs.add_argument(
        "--host",
        action="append",
        metavar="NAME_OR_IP",
        help="extra name or address for the server certificate (repeatable)",
    )
    certs.add_argument(
        "--key-type", choices=("ec", "rsa"), default="ec", help="ECDSA P-256 (default) or RSA-2048"
    )
    certs.add_argument("--client", metavar="NAME", help="issue a client certificate instead")
    certs.add_argument("--force", action="store_true", help="overwrite existing files")
    certs.set_defaults(func=cmd_certs)

    init = sub.add_parser("init", help="create lab certificates and demo accounts if missing")
    init.add_argument("--certs", default="certs")
    _add_users_option(init)
    init.set_defaults(func=cmd_init)

    # Capture, inspection and the demo live in their own modules (issue: see the wire).
    for module in ("capture_cli", "inspect_cli", "demo"):
        try:
            mod = __import__(f"labchat.{module}", fromlist=["register"])
        except ImportError:
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ssl.SSLCertVerificationError as exc:
        _print_err(
            f"certificate verification failed: {exc.verify_message or exc} "
            "(does --ca point at the lab CA, and does --server-name match?)"
        )
        return 1
    except ssl.SSLError as exc:
        _print_err(f"TLS failed: {exc.reason or exc}")
        return 1
    except ConnectionError as exc:
        _print_err(f"connection failed: {exc.strerror or exc}")
        return 1
    except (UsageError, AuthError, ValueError) as exc:
        _print_err(str(exc))
        return 2
    except (FileNotFoundError, FileExistsError, PermissionError) as exc:
        _print_err(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        _print_err(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return 1


if __name__ == "__main__":
    sys.exit(main())
