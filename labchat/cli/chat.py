"""``labchat chat``: log in and chat in this terminal."""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

from labchat.chatui.view import safe as escape_controls
from labchat.client import Client
from labchat.server import DEFAULT_PORT

from .common import add_password_stdin, read_password
from .errors import CommandError, Target, UsageError, connect_error, port

__all__ = [
    "CONNECT_TIMEOUT",
    "PLAIN_GREETING_TIMEOUT",
    "REQUEST_TIMEOUT",
    "cmd_chat",
    "open_client",
    "register",
]

#: Seconds to connect and be greeted. A labchat server greets at once (HELLO right after the
#: accept or the TLS handshake), so a silent peer is something else: a TLS server when we
#: speak --plain, or not a labchat server at all. Waiting the full request timeout there
#: left learners staring at 10 s of nothing (issue 12).
CONNECT_TIMEOUT = 5.0
#: Seconds a --plain client waits for HELLO: a plaintext server sends it as its first write
#: after the accept, with no handshake before it.
PLAIN_GREETING_TIMEOUT = 2.0
#: Seconds each request (LOGIN, WHO, TELL, PING) may take once connected.
REQUEST_TIMEOUT = 10.0

DEFAULT_CA = str(Path("certs") / "ca.pem")


def target(args: argparse.Namespace) -> Target:
    """Where and how ``args`` connects (what a connection error names)."""
    return Target(
        host=args.host,
        port=args.port,
        plain=args.plain,
        ca=None if args.plain or args.insecure else args.ca,
        server_name=args.server_name,
        tls_version=args.tls_version,
        cert=args.cert,
        waited=PLAIN_GREETING_TIMEOUT if args.plain else CONNECT_TIMEOUT,
    )


def check_files(args: argparse.Namespace) -> None:
    """Check the CA file and the client certificate before connecting, naming what is wrong.

    Raises:
        UsageError: a file is missing, not PEM, or the client key does not match.
    """
    from labchat.diagnose import CertificateFileError, check_key_pair, read_certificates

    try:
        if not (args.plain or args.insecure):
            read_certificates(args.ca, what="CA file")
        if args.key and not args.cert:
            raise UsageError("--key needs --cert (the client certificate it belongs to)")
        if args.cert:
            check_key_pair(args.cert, args.key, what="client certificate")
    except FileNotFoundError as exc:
        if exc.filename == args.ca and args.ca == DEFAULT_CA:
            raise UsageError(
                f"CA file {args.ca} not found in {os.getcwd()}: the default --ca is relative "
                "to the lab folder; run labchat there, or pass --ca PATH/TO/certs/ca.pem"
            ) from exc
        raise UsageError(f"{exc.strerror}: check the path") from exc
    except CertificateFileError as exc:
        raise UsageError(str(exc)) from exc


def open_client(args: argparse.Namespace) -> Client:
    """Connect as ``labchat chat ARGS`` says (not logged in yet).

    Raises:
        CommandError: the connection failed; the message says why and what to do.
    """
    where = target(args)
    try:
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
            timeout=where.waited,
        )
    except Exception as exc:
        raise connect_error(exc, where) from exc
    client.timeout = REQUEST_TIMEOUT
    return client


def cmd_chat(args: argparse.Namespace) -> int:
    from labchat.chatui import run_chat
    from labchat.client import LoginError
    from labchat.tls import InsecureTLSWarning

    if args.insecure:
        warnings.simplefilter("always", InsecureTLSWarning)
        warnings.formatwarning = lambda msg, *a, **k: f"WARNING: {msg}\n"  # one clear line
    check_files(args)
    password = read_password(args, confirm=False)
    client = open_client(args)
    try:
        note = client.login(args.user, password)
    except LoginError as exc:
        client.close()
        raise CommandError(
            f"login refused: {escape_controls(exc.code)}: {escape_controls(exc.text)}"
        ) from exc
    over = f"over {client.tls_version}" if client.tls_version else "(plaintext, INSECURE)"
    return run_chat(
        client,
        connect=lambda: open_client(args),
        password=password,
        where=target(args).where,
        intro=[
            f"-- connected: {escape_controls(client.hello.version)} "
            f"{escape_controls(client.hello.text)} {over}",
            f"-- logged in as {args.user}" + (f" {escape_controls(note)}" if note else ""),
        ],
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``chat`` to the ``labchat`` subcommands."""
    chat = sub.add_parser(
        "chat",
        help="chat in this terminal",
        description=(
            "Log in to a labchat server and chat. In a terminal: the input line stays at the "
            "bottom, with history and completion (/help lists the commands). With stdin or "
            "stdout not a terminal (a pipe, a file): one line in, replies out."
        ),
    )
    chat.add_argument("--host", default="127.0.0.1", help="server name or address")
    chat.add_argument("--port", type=port, default=DEFAULT_PORT, help="server port (1-65535)")
    chat.add_argument("--user", required=True, help="your user name")
    add_password_stdin(chat)
    chat.add_argument(
        "--ca",
        default=DEFAULT_CA,
        metavar="FILE",
        help="the lab CA certificate that signed the server's (PEM)",
    )
    chat.add_argument(
        "--server-name",
        metavar="NAME",
        help="name to check in the server certificate (default: --host)",
    )
    chat.add_argument(
        "--tls-version", choices=("1.2", "1.3"), help="allow only this TLS version (default: both)"
    )
    chat.add_argument(
        "--keylog",
        metavar="FILE",
        help="append this session's TLS secrets to FILE (NSS key log, mode 0600: it decrypts "
        "the capture)",
    )
    chat.add_argument(
        "--plain", action="store_true", help="no TLS (INSECURE; the server must use --plain)"
    )
    chat.add_argument(
        "--insecure",
        action="store_true",
        help="skip certificate checks (INSECURE: anyone in the middle can read "
        "and change the chat)",
    )
    chat.add_argument("--cert", metavar="FILE", help="client certificate, for mutual TLS (PEM)")
    chat.add_argument(
        "--key", metavar="FILE", help="its private key (PEM, mode 0600; default: in --cert)"
    )
    chat.set_defaults(func=cmd_chat)
