"""Tests for labchat.auth: hashing, the users file, throttling and the Authenticator."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import statistics
import subprocess
import sys
import threading
import time

import pytest
from helpers import FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labchat import auth
from labchat.auth import (
    MAX_PASSWORD_LEN,
    MIN_PASSWORD_LEN,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    Authenticator,
    AuthError,
    LoginOutcome,
    LoginThrottle,
    UserStore,
    hash_password,
    validate_password,
    validate_username,
    verify_password,
)
from labchat.protocol import USERNAME_RE

# Small scrypt parameters keep the suite fast wherever the defaults are not under test.
FAST = {"n": 2**10, "r": 8, "p": 1}
PASSWORD = "correct horse battery"
WRONG = "wrong horse battery"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path) -> UserStore:
    s = UserStore(tmp_path / "users.json", **FAST)
    s.add("alice", PASSWORD)
    return s


@pytest.fixture
def verify_calls(monkeypatch) -> list[str]:
    """Count calls to verify_password made by the Authenticator."""
    calls: list[str] = []
    real = auth.verify_password

    def counting(record, password):
        calls.append(password)
        return real(record, password)

    monkeypatch.setattr(auth, "verify_password", counting)
    return calls


# --- hashing ---------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=1, max_size=64))
def test_hash_password_roundtrip(password):
    record = hash_password(password, **FAST)
    assert verify_password(record, password)
    assert not verify_password(record, password + "x")


def test_hash_password_salts_differ():
    a = hash_password(PASSWORD, **FAST)
    b = hash_password(PASSWORD, **FAST)
    assert a["salt"] != b["salt"]
    assert a["hash"] != b["hash"]


def test_hash_password_stores_default_params():
    record = hash_password(PASSWORD)
    assert record["scheme"] == "scrypt"
    assert (record["n"], record["r"], record["p"]) == (SCRYPT_N, SCRYPT_R, SCRYPT_P)
    assert (SCRYPT_N, SCRYPT_R, SCRYPT_P) == (2**14, 8, 5)
    assert len(auth.base64.b64decode(record["salt"])) == 16
    assert len(auth.base64.b64decode(record["hash"])) == 32
    assert PASSWORD not in json.dumps(record)
    assert verify_password(record, PASSWORD)


def test_verify_password_reads_params_from_record():
    record = hash_password(PASSWORD, n=2**11, r=4, p=2)
    assert (record["n"], record["r"], record["p"]) == (2**11, 4, 2)
    assert verify_password(record, PASSWORD)
    assert not verify_password({**record, "n": 2**10}, PASSWORD)


def test_hash_password_rejects_surrogates():
    with pytest.raises(AuthError):
        hash_password("abc\ud800defgh", **FAST)


_GOOD = hash_password(PASSWORD, **FAST)


@pytest.mark.parametrize(
    "record",
    [
        None,
        [],
        "scrypt",
        {},
        {k: v for k, v in _GOOD.items() if k != "hash"},
        {k: v for k, v in _GOOD.items() if k != "salt"},
        {k: v for k, v in _GOOD.items() if k != "n"},
        {**_GOOD, "scheme": "bcrypt"},
        {**_GOOD, "n": 3},
        {**_GOOD, "n": 1},
        {**_GOOD, "n": True},
        {**_GOOD, "n": "1024"},
        {**_GOOD, "n": 2**40},
        {**_GOOD, "r": 0},
        {**_GOOD, "p": 10**9},
        {**_GOOD, "n": 2**20, "r": 32},  # would need 4 GiB: refused by maxmem
        {**_GOOD, "salt": "not base64!"},
        {**_GOOD, "salt": 12},
        {**_GOOD, "salt": ""},
        {**_GOOD, "hash": ""},
        {**_GOOD, "hash": "AAAA"},
        {**_GOOD, "hash": None},
    ],
)
def test_verify_password_malformed_record_is_false(record):
    assert verify_password(record, PASSWORD) is False


@pytest.mark.parametrize("password", [None, b"correct horse battery", 123, "bad\udcffsurrogate"])
def test_verify_password_bad_password_is_false(password):
    assert verify_password(_GOOD, password) is False


_record_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-4, max_value=2**11),
    st.text(max_size=24),
    st.sampled_from(["scrypt", _GOOD["salt"], _GOOD["hash"]]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["scheme", "n", "r", "p", "salt", "hash", "extra"]), _record_values
    ),
    st.text(max_size=16),
)
def test_verify_password_never_raises(record, password):
    assert verify_password(record, password) in (True, False)


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "a", "Bob_2", "x.y-z", "a" * 32])
def test_validate_username_accepts(name):
    validate_username(name)


@pytest.mark.parametrize("name", ["", "a" * 33, "al ice", "alice\n", "élodie", "a/b", None, 7])
def test_validate_username_rejects(name):
    with pytest.raises(AuthError, match="invalid user name"):
        validate_username(name)


@given(st.text(max_size=40))
def test_validate_username_agrees_with_protocol(name):
    if USERNAME_RE.fullmatch(name):
        validate_username(name)
    else:
        with pytest.raises(AuthError):
            validate_username(name)


def test_validate_username_message_is_short():
    with pytest.raises(AuthError) as info:
        validate_username("x" * 10_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("length", [MIN_PASSWORD_LEN, MAX_PASSWORD_LEN])
def test_validate_password_accepts_bounds(length):
    assert (MIN_PASSWORD_LEN, MAX_PASSWORD_LEN) == (8, 1024)
    validate_password("p" * length)


@pytest.mark.parametrize("password", ["s3cret!", "q" * 1025, "", None, b"bytes-password"])
def test_validate_password_rejects(password):
    with pytest.raises(AuthError) as info:
        validate_password(password)
    if isinstance(password, str) and password:
        assert password not in str(info.value)


def test_validate_password_rejects_surrogates():
    with pytest.raises(AuthError, match="Unicode"):
        validate_password("abcdefgh\ud800")


# --- UserStore -------------------------------------------------------------------------------


def test_UserStore_missing_file_is_empty(tmp_path):
    s = UserStore(tmp_path / "nope" / "users.json")
    assert s.names() == []
    assert "alice" not in s
    assert s.record("alice") is None
    assert not (tmp_path / "nope").exists()  # nothing written until a change


def test_UserStore_add_remove_names(store):
    store.add("carol", "another password")
    store.add("bob", "yet another one")
    assert store.names() == ["alice", "bob", "carol"]
    assert "bob" in store
    assert "dave" not in store
    assert 42 not in store
    assert len(store) == 3
    store.remove("bob")
    assert store.names() == ["alice", "carol"]
    with pytest.raises(AuthError, match="no such user"):
        store.remove("bob")


def test_UserStore_add_existing_needs_replace(store):
    old = store.record("alice")
    with pytest.raises(AuthError, match="already exists"):
        store.add("alice", "a new password")
    assert store.record("alice") == old
    store.add("alice", "a new password", replace=True)
    assert verify_password(store.record("alice"), "a new password")
    assert not verify_password(store.record("alice"), PASSWORD)


def test_UserStore_record_is_a_copy(store):
    store.record("alice")["hash"] = "tampered"
    assert verify_password(store.record("alice"), PASSWORD)


@pytest.mark.parametrize("length", [MIN_PASSWORD_LEN - 1, MAX_PASSWORD_LEN + 1])
def test_UserStore_rejects_password_length(store, length):
    with pytest.raises(AuthError, match="password too"):
        store.add("bob", "z" * length)
    assert "bob" not in store


@pytest.mark.parametrize("length", [MIN_PASSWORD_LEN, MAX_PASSWORD_LEN])
def test_UserStore_accepts_password_length(store, length):
    store.add("bob", "z" * length)
    assert verify_password(store.record("bob"), "z" * length)


@pytest.mark.parametrize("name", ["", "bad name", "a" * 33, "../etc"])
def test_UserStore_rejects_invalid_name(store, name):
    with pytest.raises(AuthError, match="invalid user name"):
        store.add(name, PASSWORD)
    assert store.names() == ["alice"]


def test_UserStore_persists_and_reloads(store):
    other = UserStore(store.path)
    assert other.names() == ["alice"]
    assert verify_password(other.record("alice"), PASSWORD)
    other.add("bob", "bob's password")
    assert "bob" not in store
    store.reload()
    assert store.names() == ["alice", "bob"]


def test_UserStore_file_format(store):
    data = json.loads(store.path.read_text("utf-8"))
    assert data["version"] == 1
    assert set(data["users"]) == {"alice"}
    assert set(data["users"]["alice"]) == {"scheme", "n", "r", "p", "salt", "hash"}


def test_UserStore_file_mode_0600(store):
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600


def test_UserStore_creates_parent_directory(tmp_path):
    path = tmp_path / "a" / "b" / "users.json"
    UserStore(path, **FAST).add("alice", PASSWORD)
    assert path.is_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_UserStore_atomic_write_leaves_no_temp_files(store):
    for i in range(5):
        store.add(f"user{i}", f"password number {i}")
    store.remove("user0")
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["users.json"]


def test_UserStore_no_plaintext_on_disk(store):
    store.add("bob", "hunter2-but-longer", replace=True)
    raw = store.path.read_bytes()
    for secret in (PASSWORD, "hunter2-but-longer"):
        assert secret.encode() not in raw
        assert auth.base64.b64encode(secret.encode()) not in raw


def test_UserStore_failed_write_keeps_memory_and_disk_consistent(store, monkeypatch):
    before = store.path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(auth.os, "replace", broken_replace)
    with pytest.raises(AuthError, match="cannot write users file") as info:
        store.add("bob", "bob's password")
    assert "bob's password" not in str(info.value)
    assert "bob" not in store
    with pytest.raises(AuthError):
        store.remove("alice")
    assert "alice" in store
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["users.json"]


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"users": {}}',
        b'{"version": 2, "users": {}}',
        b'{"version": 1, "users": []}',
        b'{"version": 1, "users": {"bad name": {}}}',
        b'{"version": 1, "users": {"alice": "hash"}}',
    ],
)
def test_UserStore_corrupt_file_raises(tmp_path, content):
    path = tmp_path / "users.json"
    path.write_bytes(content)
    with pytest.raises(AuthError) as info:
        UserStore(path)
    assert str(path) in str(info.value)


def test_UserStore_unreadable_file_raises(tmp_path):
    path = tmp_path / "users.json"
    path.mkdir()  # a directory where the file should be: read fails even as root
    with pytest.raises(AuthError, match="cannot read users file"):
        UserStore(path)


def test_UserStore_concurrent_adds(tmp_path):
    s = UserStore(tmp_path / "users.json", **FAST)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            s.add(f"user{i}", f"password {i:04d}")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert UserStore(s.path).names() == sorted(f"user{i}" for i in range(16))


# --- Authenticator ---------------------------------------------------------------------------


def test_Authenticator_login_ok_and_failures(store, clock):
    a = Authenticator(store, throttle=LoginThrottle(clock=clock))
    assert a.login("alice", PASSWORD, "10.0.0.1") == LoginOutcome(ok=True)
    assert a.login("alice", WRONG, "10.0.0.1") == LoginOutcome(ok=False)
    assert a.login("mallory", PASSWORD, "10.0.0.1") == LoginOutcome(ok=False)


@pytest.mark.parametrize(
    "user, password",
    [
        ("bad name", PASSWORD),
        ("x" * 5000, PASSWORD),
        (None, PASSWORD),
        ("alice", None),
        ("alice", "p" * (MAX_PASSWORD_LEN + 1)),
        ("alice", "\ud800" * 10),
    ],
)
def test_Authenticator_odd_input_fails_without_raising(store, clock, user, password):
    a = Authenticator(store, throttle=LoginThrottle(clock=clock))
    assert a.login(user, password, "10.0.0.1") == LoginOutcome(ok=False)


def test_Authenticator_cooldown_refuses_right_password_without_hashing(store, clock, verify_calls):
    a = Authenticator(store, throttle=LoginThrottle(clock=clock))
    for _ in range(4):
        assert a.login("alice", WRONG, "10.0.0.1") == LoginOutcome(ok=False)
    # The failure that starts the cool-down says so, but it was checked: not "throttled".
    assert a.login("alice", WRONG, "10.0.0.1") == LoginOutcome(ok=False, retry_after=30.0)
    assert len(verify_calls) == 5
    clock.advance(5)
    outcome = a.login("alice", PASSWORD, "10.0.0.1")
    assert outcome == LoginOutcome(ok=False, throttled=True, retry_after=25.0)
    assert len(verify_calls) == 5  # no hash computed during the cool-down
    # The owner, from another address, is not refused at all (issue 11).
    assert a.login("alice", PASSWORD, "10.0.0.2") == LoginOutcome(ok=True)
    clock.advance(25)
    assert a.login("alice", PASSWORD, "10.0.0.1") == LoginOutcome(ok=True)
    assert len(verify_calls) == 7


def test_Authenticator_cooldown_doubles_on_repeat(store, clock):
    a = Authenticator(store, throttle=LoginThrottle(clock=clock))
    waits = []
    for _ in range(3):
        for _ in range(5):
            outcome = a.login("alice", WRONG, "10.0.0.1")
        waits.append(outcome.retry_after)
        assert a.login("alice", PASSWORD, "10.0.0.1").throttled
        clock.advance(outcome.retry_after)
    assert waits == [30.0, 60.0, 120.0]
    assert a.login("alice", PASSWORD, "10.0.0.1") == LoginOutcome(ok=True)


def test_Authenticator_unknown_user_throttled_like_known(store, clock, verify_calls):
    a = Authenticator(store, throttle=LoginThrottle(clock=clock))
    known = [a.login("alice", WRONG, "10.0.0.1") for _ in range(6)]
    unknown = [a.login("mallory", WRONG, "10.0.0.2") for _ in range(6)]
    assert known == unknown
    assert unknown[-1].throttled
    assert len(verify_calls) == 10  # unknown names are hashed too (against the dummy)


def test_Authenticator_source_throttle(store, clock, verify_calls):
    throttle = LoginThrottle(clock=clock, source_max_failures=10, source_interval=3.0)
    a = Authenticator(store, throttle=throttle)
    for i in range(10):
        assert not a.login(f"user{i}", WRONG, "203.0.113.9").throttled
    outcome = a.login("alice", PASSWORD, "203.0.113.9")
    assert outcome.throttled and outcome.retry_after == 3.0
    assert len(verify_calls) == 10
    assert a.login("alice", PASSWORD, "198.51.100.1") == LoginOutcome(ok=True)
    clock.advance(3.0)  # the same address: refused for one interval at most
    assert a.login("alice", PASSWORD, "203.0.113.9") == LoginOutcome(ok=True)


def test_Authenticator_parallel_guesses_get_only_max_failures_checks(store, clock, verify_calls):
    a = Authenticator(store, throttle=LoginThrottle(clock=clock), max_concurrent_hashes=8)
    barrier = threading.Barrier(20)
    outcomes: list[LoginOutcome] = []

    def guess() -> None:
        barrier.wait()
        outcomes.append(a.login("alice", WRONG, "10.0.0.1"))

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(verify_calls) == 5
    assert sum(o.throttled for o in outcomes) == 15
    assert not any(o.ok for o in outcomes)


def test_Authenticator_unknown_user_same_timing_as_wrong_password(tmp_path):
    # Default scrypt parameters: the hash (~0.1 s) dominates everything else in login().
    s = UserStore(tmp_path / "users.json")
    s.add("alice", PASSWORD)
    lenient = LoginThrottle(max_failures=1000, source_max_failures=1000)
    a = Authenticator(s, throttle=lenient)

    def timed(user: str) -> float:
        start = time.perf_counter()
        outcome = a.login(user, WRONG, "10.0.0.1")
        elapsed = time.perf_counter() - start
        assert outcome == LoginOutcome(ok=False)
        return elapsed

    known, unknown = [], []
    for _ in range(5):
        known.append(timed("alice"))
        unknown.append(timed("mallory"))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 <= ratio <= 2.0, (known, unknown)


def test_Authenticator_bounds_concurrent_hashes(tmp_path, monkeypatch):
    s = UserStore(tmp_path / "users.json", **FAST)
    for i in range(8):
        s.add(f"user{i}", f"password {i:04d}")
    a = Authenticator(s, max_concurrent_hashes=2)

    real_scrypt = hashlib.scrypt
    lock = threading.Lock()
    running = 0
    peak = 0
    calls = 0

    def instrumented(*args, **kwargs):
        nonlocal running, peak, calls
        with lock:
            running += 1
            calls += 1
            peak = max(peak, running)
        try:
            time.sleep(0.02)  # widen the window so overlaps would show
            return real_scrypt(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(hashlib, "scrypt", instrumented)
    barrier = threading.Barrier(8)
    results: list[LoginOutcome] = []

    def worker(i: int) -> None:
        barrier.wait()
        # Half right, half unknown (the unknown ones also build the dummy record once).
        if i % 2:
            results.append(a.login(f"user{i}", f"password {i:04d}", f"10.0.0.{i}"))
        else:
            results.append(a.login(f"ghost{i}", "whatever1", f"10.0.0.{i}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 9  # 8 logins + the dummy record
    assert peak == 2
    assert sorted(o.ok for o in results) == [False] * 4 + [True] * 4


def test_Authenticator_rejects_bad_concurrency(store):
    with pytest.raises(ValueError):
        Authenticator(store, max_concurrent_hashes=0)


def test_Authenticator_logs_no_password(store, clock, caplog):
    a = Authenticator(store, throttle=LoginThrottle(clock=clock))
    with caplog.at_level("DEBUG", logger="labchat.auth"):
        for _ in range(6):
            a.login("alice", "a-secret-guess", "10.0.0.1")
    assert "a-secret-guess" not in caplog.text
    assert "alice" in caplog.text  # the cool-down is logged for the teacher


def test_UserStore_picks_up_users_added_by_another_process(tmp_path):
    # The server holds one store; `labchat adduser` in another terminal writes the file.
    server_view = UserStore(tmp_path / "users.json", n=2**10)
    assert server_view.record("dora") is None
    UserStore(tmp_path / "users.json", n=2**10).add("dora", "password-dora")
    record = server_view.record("dora")
    assert record is not None and verify_password(record, "password-dora")


def test_UserStore_keeps_old_users_when_the_file_turns_corrupt(tmp_path):
    path = tmp_path / "users.json"
    store = UserStore(path, n=2**10)
    store.add("erin", "password-erin")
    path.write_text("{ half-written")
    assert store.record("erin") is not None


_ADD_OR_REMOVE = """
import sys
from labchat.auth import UserStore
store = UserStore(sys.argv[1], n=2**10, r=8, p=1)
if sys.argv[2] == "add":
    store.add(sys.argv[3], "password-of-" + sys.argv[3])
else:
    store.remove(sys.argv[3])
"""


def test_UserStore_ten_processes_at_once_lose_nothing(tmp_path):
    path = tmp_path / "users.json"

    def run_all(jobs):
        procs = [
            subprocess.Popen([sys.executable, "-c", _ADD_OR_REMOVE, str(path), verb, name])
            for verb, name in jobs
        ]
        for proc in procs:
            assert proc.wait(60) == 0

    for round_ in range(3):
        run_all([("add", f"r{round_}u{i}") for i in range(10)])
        run_all(
            [("remove", f"r{round_}u{i}") for i in range(5)]
            + [("add", f"r{round_}v{i}") for i in range(5)]
        )
    expected = sorted(
        [f"r{r}u{i}" for r in range(3) for i in range(5, 10)]
        + [f"r{r}v{i}" for r in range(3) for i in range(5)]
    )
    assert UserStore(path).names() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.json"]


def test_UserStore_operator_role(tmp_path):
    store = UserStore(tmp_path / "users.json", **FAST)
    store.add("teacher", PASSWORD, operator=True)
    store.add("alice", PASSWORD)
    assert store.is_operator("teacher") and not store.is_operator("alice")
    assert not store.is_operator("nobody")
    login = Authenticator(store).login
    assert login("teacher", PASSWORD, "10.0.0.1") == LoginOutcome(ok=True, operator=True)
    assert login("alice", PASSWORD, "10.0.0.1") == LoginOutcome(ok=True, operator=False)
    again = UserStore(store.path)  # it is in the file, not only in memory
    assert again.is_operator("teacher")
    again.add("teacher", PASSWORD + "2", replace=True)  # the role is what the change says
    assert not UserStore(store.path).is_operator("teacher")
    assert auth.verify_password(again.record("alice"), PASSWORD)


def test_UserStore_record_keys_in_one_order_from_memory_or_file(tmp_path):
    store = UserStore(tmp_path / "users.json", **FAST)
    store.add("alice", PASSWORD)
    store.add("bob", PASSWORD, operator=True)  # alice's record now comes from the file
    for name in ("alice", "bob"):
        assert list(store.record(name))[:6] == ["scheme", "n", "r", "p", "salt", "hash"]
    assert list(UserStore(store.path).record("bob"))[-1] == "operator"
