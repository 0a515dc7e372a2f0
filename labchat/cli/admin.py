"""Lab set-up: ``labchat init``, ``certs``, ``adduser``, ``passwd``, ``deluser``, ``users``."""

from __future__ import annotations

import argparse
from pathlib import Path

from labchat.accounts import (
    ACCOUNTS_FILE,
    accounts_box,
    new_password,
    read_accounts,
    update_accounts,
    write_accounts,
)
from labchat.auth import UserStore, verify_password
from labchat.certs import create_lab_certs, issue_client_cert, lab_cert_paths

from .common import add_password_stdin, add_users_option, read_password, users_file
from .errors import UsageError

__all__ = [
    "DEMO_USERS",
    "cmd_adduser",
    "cmd_certs",
    "cmd_deluser",
    "cmd_init",
    "cmd_passwd",
    "cmd_users",
    "register",
]

#: The accounts ``labchat init`` creates.
DEMO_USERS = ("alice", "bob")


def _accounts_path(users: Path) -> Path:
    """The demo accounts file lives next to the users file (certs/ by default)."""
    return users.parent / ACCOUNTS_FILE


def cmd_adduser(args: argparse.Namespace) -> int:
    store = UserStore(users_file(args))
    if args.name in store and not args.replace:
        raise UsageError(
            f"user {args.name} exists in {store.path}; use --replace to set a new password "
            f"(or `labchat passwd {args.name}` for a random one)"
        )
    store.add(
        args.name, read_password(args, confirm=True), replace=args.replace, operator=args.operator
    )
    # A password the person chose is theirs: never written down; an old demo one is stale.
    update_accounts(_accounts_path(store.path), args.name, None)
    role = " (operator: KICK, MUTE, UNLOCK, THROTTLED)" if args.operator else ""
    print(f"{'updated' if args.replace else 'added'} {args.name}{role} in {store.path}")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    """Give an existing account a new random password and print it (or set one from stdin)."""
    store = UserStore(users_file(args))
    if args.name not in store:
        raise UsageError(
            f"no user {args.name} in {store.path}: `labchat users` lists them, "
            f"`labchat adduser {args.name}` adds one"
        )
    chosen = args.password_stdin
    password = read_password(args, confirm=False) if chosen else new_password()
    store.add(args.name, password, replace=True)
    accounts = _accounts_path(store.path)
    if chosen:
        update_accounts(accounts, args.name, None)
        print(f"new password set for {args.name} in {store.path}")
        return 0
    kept = args.name in DEMO_USERS or args.name in read_accounts(accounts)
    if kept:
        update_accounts(accounts, args.name, password)
    print(f"new password for {args.name}: {password}" + (f" (also in {accounts})" if kept else ""))
    return 0


def cmd_deluser(args: argparse.Namespace) -> int:
    store = UserStore(users_file(args))
    store.remove(args.name)
    update_accounts(_accounts_path(store.path), args.name, None)
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
    """Lab setup for `make lab`: certificates and demo accounts, only where missing; the
    accounts in a box at the end, every time (issue 12: they were easy to miss)."""
    paths = lab_cert_paths(args.certs)
    if paths.server_cert.exists() and paths.server_key.exists():
        print(f"lab certificates: {paths.directory}/ (already there)")
    else:
        create_lab_certs(args.certs, force=True)
        print(f"lab certificates: created in {paths.directory}/")
    store = UserStore(users_file(args))
    accounts_file = _accounts_path(store.path)
    known = read_accounts(accounts_file)
    added = []
    for name in DEMO_USERS:
        if name not in store:
            known[name] = new_password()
            store.add(name, known[name])
            added.append(name)
    if added:
        write_accounts(accounts_file, known)
        print(f"demo accounts: added {', '.join(added)} to {store.path}")
    # Only show a password that still works (adduser --replace may have changed it since).
    shown = {}
    for name in DEMO_USERS:
        record = store.record(name)
        if name in known and record is not None and verify_password(record, known[name]):
            shown[name] = known[name]
    for name in DEMO_USERS:
        if name not in shown:
            print(
                f"demo account {name}: its password was chosen with `labchat adduser` and "
                f"not written down; `labchat passwd {name}` gives it a new random one"
            )
    if shown:
        print(accounts_box(shown, path=accounts_file))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``adduser``, ``passwd``, ``deluser``, ``users``, ``certs`` and ``init``."""
    adduser = sub.add_parser("adduser", help="add a user (or reset a password with --replace)")
    adduser.add_argument("name", help="user name: 1-32 letters, digits, '_', '.' or '-'")
    add_users_option(adduser)
    add_password_stdin(adduser)
    adduser.add_argument(
        "--replace", action="store_true", help="give an existing user this new password"
    )
    adduser.add_argument(
        "--operator",
        action="store_true",
        help="a teacher: may KICK, MUTE, UNLOCK and list THROTTLED; shown as @NAME in WHO "
        "(with --replace the role is set to exactly this)",
    )
    adduser.set_defaults(func=cmd_adduser)

    passwd = sub.add_parser("passwd", help="give a user a new random password and print it")
    passwd.add_argument("name", help="an existing user")
    add_users_option(passwd)
    add_password_stdin(passwd, otherwise="a random one, printed")
    passwd.set_defaults(func=cmd_passwd)

    deluser = sub.add_parser("deluser", help="remove a user")
    deluser.add_argument("name", help="the user to remove")
    add_users_option(deluser)
    deluser.set_defaults(func=cmd_deluser)

    users = sub.add_parser("users", help="list users")
    add_users_option(users)
    users.set_defaults(func=cmd_users)

    certs = sub.add_parser(
        "certs",
        help="create the lab CA and server certificate",
        description="Create a lab CA and a server certificate signed by it (docs/certificates.md "
        "shows the same with openssl). Keys are written with mode 0600.",
    )
    certs.add_argument("--dir", default="certs", help="output directory")
    certs.add_argument(
        "--host",
        action="append",
        metavar="NAME_OR_IP",
        help="another name or address for the server certificate, besides localhost, "
        "127.0.0.1 and ::1 (repeatable)",
    )
    certs.add_argument(
        "--key-type",
        choices=("ec", "rsa"),
        default="ec",
        help="ECDSA P-256 (ec) or RSA-2048 (rsa)",
    )
    certs.add_argument(
        "--client",
        metavar="NAME",
        help="issue a client certificate NAME (mutual TLS) from the CA in --dir instead",
    )
    certs.add_argument("--force", action="store_true", help="overwrite existing files")
    certs.set_defaults(func=cmd_certs)

    init = sub.add_parser(
        "init",
        help="create lab certificates and demo accounts if missing",
        description="What `make lab` runs first: the lab CA and server certificate, and the "
        "demo accounts alice and bob, each only if missing. Ends with the demo accounts and "
        f"their passwords in a box (also kept in DIR/{ACCOUNTS_FILE}, mode 0600).",
    )
    init.add_argument(
        "--certs", default="certs", metavar="DIR", help="directory for certificates and users"
    )
    add_users_option(init)
    init.set_defaults(func=cmd_init)
