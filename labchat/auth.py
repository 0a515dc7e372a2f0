"""Server-side authentication: the users file, password hashing and login throttling.

Three layers, none of which touches a socket:

* :func:`hash_password` / :func:`verify_password` turn a password into a salted scrypt record
  and check a password against one.
* :class:`UserStore` keeps ``name -> record`` in a JSON users file, written atomically with
  mode 0600.
* :class:`Authenticator` answers one login attempt with a :class:`LoginOutcome`, consulting a
  :class:`LoginThrottle` first (per account and source, and per source: `labchat.throttle`)
  and sharing a bounded number of scrypt computations fairly between client addresses.

No plaintext password is ever written to disk, logged, or put in an exception message.

References:

* OWASP Password Storage Cheat Sheet,
  https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html
* OWASP Authentication Cheat Sheet (login throttling, generic error messages),
  https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html
* RFC 7914, The scrypt Password-Based Key Derivation Function.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labchat.protocol import USERNAME_RE
from labchat.throttle import FairSlots, LoginThrottle, ThrottleEntry

__all__ = [
    "MAX_PASSWORD_LEN",
    "MIN_PASSWORD_LEN",
    "SCRYPT_MAXMEM",
    "SCRYPT_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "AuthError",
    "Authenticator",
    "LoginOutcome",
    "LoginThrottle",
    "ThrottleEntry",
    "UserStore",
    "hash_password",
    "validate_password",
    "write_private_file",
    "validate_username",
    "verify_password",
]

log = logging.getLogger(__name__)

# --- scrypt parameters -----------------------------------------------------------------------
# OWASP Password Storage Cheat Sheet lists scrypt N=2**17, r=8, p=1 as the baseline, and the
# equivalent-strength N=2**14, r=8, p=5. We take the latter: scrypt needs 128 * N * r bytes
# (RFC 7914 section 2), so N=2**17 costs 128 MiB per hash while N=2**14, r=8 costs 16 MiB.
# A classroom of 30 logging in at once must not need gigabytes; p runs the lanes one after
# the other in hashlib, which buys the same CPU cost without the memory.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 5
# hashlib.scrypt refuses to use more than maxmem bytes (OpenSSL's default is 32 MiB); 64 MiB
# is headroom over 128 * N * r = 16 MiB for the default, and also the ceiling a record read
# from disk can ask for, so a tampered users file cannot make one check allocate gigabytes.
SCRYPT_MAXMEM = 64 * 1024 * 1024

SALT_BYTES = 16  # OWASP: a unique, random salt per password; 128 bits avoids collisions.
HASH_BYTES = 32  # 256-bit derived key, the usual scrypt output length.

# Bounds on a record read back from disk: anything outside is "malformed", not "expensive".
# RFC 7914 section 2: N must be a power of two greater than 1, and r * p < 2**30.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16

# --- password policy -------------------------------------------------------------------------
# OWASP Authentication Cheat Sheet / NIST SP 800-63B 5.1.1.2: at least 8 characters; allow
# long passphrases (at least 64). The upper bound only keeps one login from feeding megabytes
# into the hash; 1024 characters is far beyond any passphrase a learner types.
MIN_PASSWORD_LEN = 8
MAX_PASSWORD_LEN = 1024


class AuthError(ValueError):
    """Bad input to the users store, with a message a command-line user understands.

    Raised for an invalid user name, a password of the wrong length, adding a user that
    exists, removing one that does not, and an unreadable or corrupt users file. Messages
    never contain a password.
    """


# --- validation ------------------------------------------------------------------------------


def validate_username(name: str) -> None:
    """Check that *name* is an acceptable user name.

    Args:
        name: The proposed user name.

    Raises:
        AuthError: If *name* is not a string of 1 to 32 characters from ``A-Z a-z 0-9 _ . -``.
    """
    if not isinstance(name, str) or USERNAME_RE.fullmatch(name) is None:
        shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
        raise AuthError(f"invalid user name {shown}: use 1 to 32 letters, digits, '_', '.' or '-'")


def validate_password(password: str) -> None:
    """Check that *password* meets the length policy.

    Args:
        password: The proposed password (never echoed in the error).

    Raises:
        AuthError: If *password* is not a string, is shorter than :data:`MIN_PASSWORD_LEN`
            or longer than :data:`MAX_PASSWORD_LEN` characters, or cannot be encoded as UTF-8.
    """
    if not isinstance(password, str):
        raise AuthError("password must be text")
    n = len(password)
    if n < MIN_PASSWORD_LEN:
        raise AuthError(f"password too short: {n} characters, need at least {MIN_PASSWORD_LEN}")
    if n > MAX_PASSWORD_LEN:
        raise AuthError(f"password too long: {n} characters, at most {MAX_PASSWORD_LEN}")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (e.g. from a mis-decoded terminal) cannot be hashed consistently.
        raise AuthError("password contains characters that are not valid Unicode") from None


# --- hashing ---------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(
    password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> dict[str, Any]:
    """Hash *password* with scrypt and a fresh random salt.

    The parameters are stored in the record so they can be raised later without breaking
    existing users (OWASP: "upgrading the work factor").

    Args:
        password: The password to hash (UTF-8 encoded before hashing).
        n: scrypt CPU/memory cost, a power of two greater than 1.
        r: scrypt block size.
        p: scrypt parallelisation.

    Returns:
        ``{"scheme": "scrypt", "n": n, "r": r, "p": p, "salt": <base64 of 16 random bytes>,
        "hash": <base64 of 32 bytes>}``, ready to be stored as JSON.

    Raises:
        AuthError: If *password* is not text or cannot be encoded as UTF-8.
        ValueError: If the scrypt parameters are invalid or need more than
            :data:`SCRYPT_MAXMEM` bytes.
    """
    if not isinstance(password, str):
        raise AuthError("password must be text")
    try:
        secret = password.encode("utf-8")
    except UnicodeEncodeError:
        raise AuthError("password contains characters that are not valid Unicode") from None
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        secret, salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=HASH_BYTES
    )
    return {"scheme": "scrypt", "n": n, "r": r, "p": p, "salt": _b64(salt), "hash": _b64(digest)}


def _int_param(record: dict[str, Any], key: str, low: int, high: int) -> int:
    value = record[key]
    # bool is a subclass of int; JSON true is not a work factor.
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"bad scrypt parameter {key}")
    return value


def verify_password(record: dict[str, Any], password: str) -> bool:
    """Check *password* against a record made by :func:`hash_password`.

    The scrypt parameters come from the record, so records hashed with older parameters keep
    working. The comparison is constant-time (:func:`hmac.compare_digest`).

    Args:
        record: A stored hash record.
        password: The password the client sent.

    Returns:
        True if the password matches. False if it does not, or if the record is malformed
        (wrong scheme, missing keys, bad base64, parameters out of range): this function is
        fed from the network and never raises.
    """
    try:
        if not isinstance(record, dict) or record.get("scheme") != "scrypt":
            return False
        if not isinstance(password, str):
            return False
        n = _int_param(record, "n", 2, _MAX_N)
        if n & (n - 1):
            return False  # RFC 7914: N must be a power of two
        r = _int_param(record, "r", 1, _MAX_R)
        p = _int_param(record, "p", 1, _MAX_P)
        salt = base64.b64decode(record["salt"], validate=True)
        expected = base64.b64decode(record["hash"], validate=True)
        if not 8 <= len(salt) <= 64 or not 16 <= len(expected) <= 64:
            return False
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (KeyError, TypeError, ValueError, binascii.Error, MemoryError, OverflowError):
        # ValueError covers UnicodeEncodeError and scrypt's "memory limit exceeded".
        return False
    return hmac.compare_digest(actual, expected)


# --- the users file --------------------------------------------------------------------------

_FILE_VERSION = 1
_RECORD_ORDER = ("scheme", "n", "r", "p", "salt", "hash", "operator")


def write_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace *path* with *data* atomically, mode 0600 from the first byte.

    For files that hold secrets (the users file, the demo accounts): a reader sees the old
    file or the new one, never half of one, and never a moment where others may read it.

    Raises:
        OSError: the directory or file cannot be written (the temporary file is removed).
    """
    path = Path(path)
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # 0700: the directory of a secrets file need not be listable by others.
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: never reuse (or follow a symlink planted at) an existing name; 0600 from the
    # first byte, so there is no window where the secrets are world-readable.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # data on disk before the rename makes it visible
        os.replace(tmp, path)  # atomic on POSIX and Windows (same filesystem)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


class UserStore:
    """Users and their password hashes, kept in a JSON file.

    The file looks like ``{"version": 1, "users": {"alice": {<hash record>}}}``. Every change
    rewrites it atomically (temporary file with mode 0600 in the same directory, fsync,
    :func:`os.replace`), so a crash leaves either the old or the new file, never half of one.
    All methods are thread-safe.

    Attributes:
        path: Where the users file lives.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n: int = SCRYPT_N,
        r: int = SCRYPT_R,
        p: int = SCRYPT_P,
    ) -> None:
        """Open the users file at *path*, loading it if it exists.

        Args:
            path: The users file. A missing file is an empty store; it is created (with its
                parent directory) on the first change.
            n: scrypt cost for passwords added through this store.
            r: scrypt block size for new passwords.
            p: scrypt parallelisation for new passwords.

        Raises:
            AuthError: If the file exists but cannot be read or is not a valid users file.
        """
        self.path = Path(path)
        self.hash_params: dict[str, int] = {"n": n, "r": r, "p": p}
        self._lock = threading.RLock()
        self._users: dict[str, dict[str, Any]] = {}
        self.reload()

    # reading

    def reload(self) -> None:
        """Re-read the users file, replacing what is in memory.

        Raises:
            AuthError: If the file exists but cannot be read or is not a valid users file.
        """
        with self._lock:
            self._users = self._read()
            self._signature = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self) -> None:
        """Reload if another process (e.g. `labchat adduser` while the server runs) changed
        the file. A file that became unreadable keeps the users already loaded, with a log
        line, so a half-edited file cannot lock everybody out."""
        if self._stat() == self._signature:
            return
        try:
            self.reload()
        except AuthError as exc:
            log.warning("keeping the users loaded before: %s", exc)
            self._signature = self._stat()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise AuthError(f"cannot read users file {self.path}: {e.strerror or e}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise AuthError(f"users file {self.path} is not UTF-8 text") from None
        except json.JSONDecodeError as e:
            raise AuthError(
                f"users file {self.path} is not valid JSON (line {e.lineno}, column {e.colno})"
            ) from None
        if not isinstance(data, dict) or data.get("version") != _FILE_VERSION:
            raise AuthError(
                f"users file {self.path} is not a labchat users file (version {_FILE_VERSION})"
            )
        users = data.get("users")
        if not isinstance(users, dict):
            raise AuthError(f"users file {self.path} has no 'users' table")
        for name, record in users.items():
            if USERNAME_RE.fullmatch(name) is None or not isinstance(record, dict):
                raise AuthError(f"users file {self.path} has a bad entry for user {name!r}")
        return users

    def names(self) -> list[str]:
        """Return the user names, sorted."""
        with self._lock:
            return sorted(self._users)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return isinstance(name, str) and name in self._users

    def __len__(self) -> int:
        with self._lock:
            return len(self._users)

    def typical_params(self) -> dict[str, int]:
        """The scrypt parameters most records in the file use (`hash_params` if none do).

        A login for an unknown name is checked against a dummy record made with these, so
        it costs what checking a real record costs on this server.
        """
        self.refresh()
        counts: dict[tuple[int, int, int], int] = {}
        with self._lock:
            for record in self._users.values():
                try:
                    key = (int(record["n"]), int(record["r"]), int(record["p"]))
                except (KeyError, TypeError, ValueError):
                    continue
                counts[key] = counts.get(key, 0) + 1
        if not counts:
            return dict(self.hash_params)
        n, r, p = max(counts, key=lambda k: counts[k])
        return {"n": n, "r": r, "p": p}

    def record(self, name: str) -> dict[str, Any] | None:
        """Return a copy of *name*'s hash record, or None if there is no such user.

        Picks up changes other processes made to the file first (see `refresh`).
        """
        self.refresh()
        with self._lock:
            record = self._users.get(name) if isinstance(name, str) else None
            if record is None:
                return None
            # The order hash_password makes, whether the record came from memory or from the
            # file (written with sorted keys): shown to learners, it should read the same.
            ordered = {k: record[k] for k in _RECORD_ORDER if k in record}
            return ordered | {k: v for k, v in record.items() if k not in ordered}

    # changing

    def is_operator(self, name: str) -> bool:
        """True if *name* has the operator (teacher) role (`labchat adduser --operator`)."""
        record = self.record(name)
        return bool(record and record.get("operator") is True)

    def add(
        self, name: str, password: str, *, replace: bool = False, operator: bool = False
    ) -> None:
        """Add user *name* with *password*, or change the password with ``replace=True``.

        Safe to run from many processes at once (`labchat adduser` in a loop): the file is
        re-read, changed and written under an exclusive lock on a lock file beside it.

        Args:
            name: The user name.
            password: The new password; only its scrypt hash is stored.
            replace: Overwrite the record of an existing user.
            operator: Give the user the operator role (KICK, MUTE, UNLOCK; shown as
                ``@name`` in WHO). With *replace*, the role is set to exactly this.

        Raises:
            AuthError: If the name or password is invalid, the user exists and *replace* is
                false, or the users file cannot be read or written.
        """
        validate_username(name)
        validate_password(password)
        if not replace and name in self:
            raise AuthError(f"user {name!r} already exists")
        # Hash outside the locks: it takes a tenth of a second and logins read the store.
        record = hash_password(password, **self.hash_params)
        if operator:
            record["operator"] = True

        def change(users: dict[str, dict[str, Any]]) -> None:
            if not replace and name in users:
                raise AuthError(f"user {name!r} already exists")
            users[name] = record

        self._change(change)

    def remove(self, name: str) -> None:
        """Delete user *name* (under the same cross-process lock as `add`).

        Raises:
            AuthError: If there is no such user or the users file cannot be written.
        """

        def change(users: dict[str, dict[str, Any]]) -> None:
            if not isinstance(name, str) or name not in users:
                raise AuthError(f"no such user {name!r}")
            del users[name]

        self._change(change)

    def _change(self, change: Callable[[dict[str, dict[str, Any]]], None]) -> None:
        """Read the file, apply *change* to a copy of its users, write it: all under the
        thread lock and an exclusive lock on the lock file, so that two processes never
        write from the same stale copy (one of ten concurrent adds used to survive)."""
        with self._lock, self._file_lock():
            users = self._read()
            change(users)
            previous, self._users = self._users, users
            try:
                self._write()
            except BaseException:
                self._users = previous  # memory keeps agreeing with the disk
                raise

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        # The lock is on the directory (POSIX flock works on a directory descriptor): the
        # users file itself is replaced on every write, so a lock on it would not hold, and
        # a separate lock file would be one more file to explain. Windows: a lock file.
        directory = self.path.parent
        try:
            # 0700: the directory of a secrets file need not be listable by others.
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if os.name == "nt":
                target, flags = directory / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT
            else:
                target, flags = directory, os.O_RDONLY
            fd = os.open(target, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as e:
            raise AuthError(f"cannot lock users file {self.path}: {e.strerror or e}") from None
        try:
            _lock_fd(fd)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _write(self) -> None:
        """Write the in-memory users atomically. Caller holds the lock."""
        payload = {"version": _FILE_VERSION, "users": self._users}
        data = (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8")
        try:
            write_private_file(self.path, data)
        except OSError as e:
            raise AuthError(f"cannot write users file {self.path}: {e.strerror or e}") from None
        self._signature = self._stat()


def _lock_fd(fd: int) -> None:
    """Block until this process holds the exclusive lock on *fd* (released on close)."""
    try:
        import fcntl
    except ImportError:  # Windows: lock the first byte instead
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); best effort, not available everywhere."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- throttling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginOutcome:
    """The answer to one login attempt.

    Attributes:
        ok: True if the credentials were right and the attempt was not throttled.
        throttled: True if the attempt was refused without checking the password, because
            the account or the source address is in a cool-down.
        operator: True if the account that logged in has the operator (teacher) role, read
            from the same record as the hash that was checked.
        retry_after: Seconds until the next attempt for this account and source will be
            checked; 0.0 when there is no cool-down. A failed attempt that starts a cool-down
            reports it here with ``throttled=False``.
    """

    ok: bool
    throttled: bool = False
    retry_after: float = 0.0
    operator: bool = False


# --- the login decision ----------------------------------------------------------------------

# Account key for names that cannot exist (fail USERNAME_RE): one bucket for all of them, so
# a flood of random long names costs one throttle entry, not one each.
_INVALID_NAME_KEY = "\x00invalid-name"


class Authenticator:
    """Decide login attempts: throttle first, then a fairly shared, bounded scrypt check.

    Unknown users and wrong passwords give the same :class:`LoginOutcome` and take about the
    same time (the unknown name is checked against a dummy record), so the answer does not
    reveal which names exist (OWASP Authentication Cheat Sheet, "Authentication and Error
    Messages").

    Args:
        store: Where the users and their hashes live.
        throttle: Login throttle; a default :class:`LoginThrottle` if omitted.
        max_concurrent_hashes: How many scrypt computations may run at once. Each costs
            128 * N * r bytes (16 MiB by default), so 4 bounds hashing at 64 MiB however
            many learners press Enter together; the rest wait their turn.
        hashes_per_source: How many of those one client address may hold at once (1: on
            the one CPU `labchat serve` uses, a second hash per address would not let a class
            behind one NAT log in any faster, only let one address take more of the CPU).
            The slots go to the waiting address that holds fewest (`FairSlots`): one
            address's failed-login flood always leaves room, and a classmate's login waits
            for at most one hash to end rather than for the whole flood.

    Raises:
        ValueError: If a number of hashes is less than 1.
    """

    def __init__(
        self,
        store: UserStore,
        *,
        throttle: LoginThrottle | None = None,
        max_concurrent_hashes: int = 4,
        hashes_per_source: int = 1,
    ) -> None:
        if max_concurrent_hashes < 1 or hashes_per_source < 1:
            raise ValueError("max_concurrent_hashes and hashes_per_source must be at least 1")
        self.store = store
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self._hash_slots = FairSlots(max_concurrent_hashes, hashes_per_source)
        self._dummy: dict[str, Any] | None = None
        self._dummy_lock = threading.Lock()
        # One attempt per (account, source) at a time: otherwise fifty parallel attempts
        # could all pass the throttle check before the first failure is recorded, and get
        # fifty guesses. Per pair, not per account: a guesser's queue of attempts must not
        # hold up the owner logging in from somewhere else.
        self._pair_locks: dict[tuple[str, str], list[Any]] = {}
        self._pair_locks_guard = threading.Lock()

    def _dummy_record(self) -> dict[str, Any]:
        """A record no password matches, with the records' own parameters; made once."""
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = hash_password(
                    secrets.token_urlsafe(32), **self.store.typical_params()
                )
            return self._dummy

    @contextlib.contextmanager
    def _one_attempt_per_pair(self, key: tuple[str, str]) -> Iterator[None]:
        with self._pair_locks_guard:
            slot = self._pair_locks.setdefault(key, [threading.Lock(), 0])
            slot[1] += 1
        try:
            with slot[0]:
                yield
        finally:
            with self._pair_locks_guard:
                slot[1] -= 1
                if slot[1] == 0:  # only pairs with an attempt in flight use memory
                    del self._pair_locks[key]

    def throttled(self) -> list[ThrottleEntry]:
        """What is in a login cool-down now (`LoginThrottle.throttled`); attempts with names
        that cannot exist are listed under the account ``*``."""
        return [
            ThrottleEntry("*", e.source, e.retry_after) if e.account == _INVALID_NAME_KEY else e
            for e in self.throttle.throttled()
        ]

    def unlock(self, user: str | None = None, source: str | None = None) -> int:
        """End the cool-downs of account *user* (from every address) and/or of address
        *source* now; returns how many entries were cleared (`LoginThrottle.unlock`)."""
        return self.throttle.unlock(user, source)

    def _throttled(self, key: str, source: str) -> LoginOutcome | None:
        wait = self.throttle.retry_after(key, source)
        return LoginOutcome(ok=False, throttled=True, retry_after=wait) if wait > 0 else None

    def login(self, user: str, password: str, source: str) -> LoginOutcome:
        """Check one login attempt.

        Args:
            user: The user name the client sent.
            password: The password the client sent.
            source: Where the attempt came from (the client's IP address).

        Returns:
            ``LoginOutcome(ok=True)`` for right credentials; ``ok=False`` for an unknown user
            or a wrong password (indistinguishable); ``throttled=True`` with ``retry_after``
            when this account from this source, or this source, is cooling down, in which
            case no hash is computed, even if the password is right. Never raises for bad
            input.
        """
        valid_name = isinstance(user, str) and USERNAME_RE.fullmatch(user) is not None
        key = user if valid_name else _INVALID_NAME_KEY
        source = str(source)
        with self._one_attempt_per_pair((key, source)):
            refused = self._throttled(key, source)
            if refused is not None:
                return refused
            ok = False
            # Over-long or non-text passwords cannot match a stored one; refuse them without
            # hashing so they cost nothing (their length tells an attacker nothing new).
            if isinstance(password, str) and len(password) <= MAX_PASSWORD_LEN:
                with self._hash_slots.slot(source):
                    # Check again: the source may have tripped while we waited for a slot.
                    refused = self._throttled(key, source)
                    if refused is not None:
                        return refused
                    # The dummy is made inside a slot (it is a hash too) and before the
                    # lookup, so even the first login of an unknown name takes no longer
                    # than the first login of a known one.
                    dummy = self._dummy_record()
                    record = self.store.record(user) if valid_name else None
                    checked = record if record is not None else dummy
                    ok = verify_password(checked, password) and record is not None
            if ok:
                self.throttle.record_success(key, source)
                return LoginOutcome(ok=True, operator=record.get("operator") is True)
            self.throttle.record_failure(key, source)
            return LoginOutcome(ok=False, retry_after=self.throttle.retry_after(key, source))
