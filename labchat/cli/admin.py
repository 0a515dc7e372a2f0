"""Setting up a lab: ``labchat init``, ``certs``, ``adduser``, ``deluser`` and ``users``."""

from __future__ import annotations

import argparse
import secrets

from labchat.auth import UserStore
from labchat.certs import create_lab_certs, issue_client_cert, lab_cert_paths

from .common import add_password_stdin, add_users_option, read_password, users_file
from .errors import UsageError

__all__ = [
    "DEMO_USERS",
    "cmd_adduser",
    "cmd_certs",
    "cmd_deluser",
    "cmd_init",
    "cmd_users",
    "register",
]

#: The accounts ``labchat init`` creates.
DEMO_USERS = ("alice", "bob")


def cmd_adduser(args: argparse.Namespace) -> int:
    store = UserStore(users_file(args))
    if args.name in store and not args.replace:
        raise UsageError(f"user {args.name} exists in {store.path}; use --replace to reset")
    store.add(args.name, read_password(args, confirm=True), replace=args.replace)
    print(f"{'updated' if args.replace else 'added'} {args.name} in {store.path}")
    return 0


def cmd_deluser(args: argparse.Namespace) -> int:
    store = UserStore(users_file(args))
    store.remove(args.name)
    print(f"removed {args.name} from {store.path}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    store = UserStore(users_file(args))
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
    store = UserStore(users_file(args))
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``adduser``, ``deluser``, ``users``, ``certs`` and ``init`` to the subcommands."""
    adduser = sub.add_parser("adduser", help="add a user (or reset a password with --replace)")
    adduser.add_argument("name")
    add_users_option(adduser)
    add_password_stdin(adduser)
    adduser.add_argument("--replace", action="store_true", help="reset an existing password")
    adduser.set_defaults(func=cmd_adduser)

    deluser = sub.add_parser("deluser", help="remove a user")
    deluser.add_argument("name")
    add_users_option(deluser)
    deluser.set_defaults(func=cmd_deluser)

    users = sub.add_parser("users", help="list users")
    add_users_option(users)
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
    add_users_option(init)
    init.set_defaults(func=cmd_init)
