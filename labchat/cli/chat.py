"""``labchat chat``: log in and chat in this terminal."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from labchat.server import DEFAULT_PORT

from .common import add_password_stdin, read_password
from .errors import CommandError, port

__all__ = ["cmd_chat", "register"]


def cmd_chat(args: argparse.Namespace) -> int:
    from labchat.client import Client, LoginError, run_chat
    from labchat.protocol import escape_controls as shown
    from labchat.tls import InsecureTLSWarning

    if args.insecure:
        warnings.simplefilter("always", InsecureTLSWarning)
        warnings.formatwarning = lambda msg, *a, **k: f"WARNING: {msg}\n"  # one clear line
    password = read_password(args, confirm=False)
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
    # Everything from the server is shown through escape_controls: no control character
    # from the network reaches this terminal (issue 11).
    print(
        f"-- connected: {shown(client.hello.version)} {shown(client.hello.text)}"
        + (f" over {client.tls_version}" if client.tls_version else " (plaintext)")
    )
    try:
        note = client.login(args.user, password)
    except LoginError as exc:
        client.close()
        raise CommandError(f"login refused: {shown(exc.code)}: {shown(exc.text)}") from exc
    print(f"-- logged in as {args.user}" + (f" {shown(note)}" if note else ""))
    return run_chat(client)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``chat`` to the ``labchat`` subcommands."""
    chat = sub.add_parser("chat", help="chat in this terminal")
    chat.add_argument("--host", default="127.0.0.1")
    chat.add_argument("--port", type=port, default=DEFAULT_PORT)
    chat.add_argument("--user", required=True, help="your user name")
    add_password_stdin(chat)
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
