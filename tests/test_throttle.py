"""labchat.throttle: login throttling that cannot be turned against the victim (issue 11),
and fair sharing of the hash slots. Every clock is a fake one: no test waits for real."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import FakeClock, wait_until

from labchat.throttle import FairSlots, LoginThrottle, ThrottleEntry


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --------------------------------------------------------------------------- pairs


def test_LoginThrottle_five_failures_cool_down_that_pair_only(clock):
    t = LoginThrottle(clock=clock)
    for _ in range(4):
        t.record_failure("alice", "10.0.0.1")
        assert t.retry_after("alice", "10.0.0.1") == 0.0
    t.record_failure("alice", "10.0.0.1")
    assert t.retry_after("alice", "10.0.0.1") == 30.0
    assert t.retry_after("alice", "10.0.0.2") == 0.0  # the owner, elsewhere: never refused
    assert t.retry_after("bob", "10.0.0.1") == 0.0  # other accounts from the guesser: fine
    clock.advance(10)
    assert t.retry_after("alice", "10.0.0.1") == 20.0
    clock.advance(20)
    assert t.retry_after("alice", "10.0.0.1") == 0.0


def test_LoginThrottle_many_guessers_never_lock_the_owner_out(clock):
    # The attack: one address locked 19 accounts in 14 s. Now every address that
    # guesses waits, and nobody else does.
    t = LoginThrottle(clock=clock)
    for source in (f"10.0.0.{i}" for i in range(1, 20)):
        for account in ("teacher", "alice"):
            for _ in range(50):
                t.record_failure(account, source)
    assert t.retry_after("teacher", "10.0.0.1") > 0
    assert t.retry_after("teacher", "10.0.1.1") == 0.0
    assert t.retry_after("alice", "192.0.2.7") == 0.0


def test_LoginThrottle_failures_outside_window_do_not_count(clock):
    t = LoginThrottle(clock=clock)
    for _ in range(10):
        t.record_failure("alice", "s")
        clock.advance(15)  # 4 failures per 60 s window at most
    assert t.retry_after("alice", "s") == 0.0


def test_LoginThrottle_cooldown_doubles_and_caps(clock):
    t = LoginThrottle(clock=clock)
    seen = []
    for _ in range(8):
        for _ in range(5):
            t.record_failure("alice", "s")
        wait = t.retry_after("alice", "s")
        seen.append(wait)
        clock.advance(wait)
    assert seen == [30, 60, 120, 240, 480, 900, 900, 900]


def test_LoginThrottle_escalation_resets_after_quiet_period(clock):
    t = LoginThrottle(clock=clock)
    for _ in range(2):
        for _ in range(5):
            t.record_failure("alice", "s")
        clock.advance(t.retry_after("alice", "s"))
    clock.advance(899)  # not quiet long enough yet
    for _ in range(5):
        t.record_failure("alice", "s")
    assert t.retry_after("alice", "s") == 120
    clock.advance(120 + 900)
    for _ in range(5):
        t.record_failure("alice", "s")
    assert t.retry_after("alice", "s") == 30


def test_LoginThrottle_success_clears_count_not_escalation(clock):
    t = LoginThrottle(clock=clock)
    for _ in range(4):
        t.record_failure("alice", "s")
    t.record_success("alice", "s")
    for _ in range(4):
        t.record_failure("alice", "s")
    assert t.retry_after("alice", "s") == 0.0
    t.record_failure("alice", "s")
    assert t.retry_after("alice", "s") == 30.0
    clock.advance(30)
    t.record_success("alice", "s")
    for _ in range(5):
        t.record_failure("alice", "s")
    assert t.retry_after("alice", "s") == 60.0  # the owner's login did not reset the attack


# --------------------------------------------------------------------------- sources


def test_LoginThrottle_source_budget_then_one_failure_per_interval(clock):
    t = LoginThrottle(clock=clock)
    # Password spraying: one guess for each of many (made-up) accounts from one address.
    for i in range(99):
        t.record_failure(f"nobody{i}", "203.0.113.9")
    assert t.retry_after("someone", "203.0.113.9") == 0.0
    t.record_failure("nobody99", "203.0.113.9")
    assert t.retry_after("someone", "203.0.113.9") == 3.0
    assert t.retry_after("someone", "198.51.100.1") == 0.0  # other addresses: nothing
    clock.advance(3.0)
    assert t.retry_after("someone", "203.0.113.9") == 0.0
    t.record_failure("nobody100", "203.0.113.9")  # one token back, spent at once
    assert t.retry_after("someone", "203.0.113.9") == 3.0


def test_LoginThrottle_made_up_names_refuse_a_correct_login_for_seconds_only(clock):
    # 100 failures against made-up names used to lock the whole address (a NAT: the whole
    # class) for 30 s, then 60 s, ... Now the address waits at most one interval.
    t = LoginThrottle(clock=clock)
    for i in range(500):
        t.record_failure(f"made-up-{i}", "192.0.2.1")  # even past the budget (races)
    assert 0 < t.retry_after("teacher", "192.0.2.1") <= 3.0
    clock.advance(3.0)
    assert t.retry_after("teacher", "192.0.2.1") == 0.0


def test_LoginThrottle_classroom_behind_nat_not_slowed(clock):
    t = LoginThrottle(clock=clock)
    # 30 learners on one NAT address each mistype three times in the first minute.
    for _ in range(3):
        for i in range(30):
            t.record_failure(f"learner{i}", "192.0.2.1")
        clock.advance(20)
    assert t.retry_after("learner0", "192.0.2.1") == 0.0
    # One student hammering their own account trips only that account from that address.
    for _ in range(5):
        t.record_failure("careless", "192.0.2.1")
    assert t.retry_after("careless", "192.0.2.1") == 30.0
    assert t.retry_after("learner0", "192.0.2.1") == 0.0


# --------------------------------------------------------------------------- expiry, moderation


def test_LoginThrottle_state_expires_by_itself(clock):
    t = LoginThrottle(clock=clock)
    for _ in range(20):
        t.record_failure("alice", "10.0.0.1")
        clock.advance(t.retry_after("alice", "10.0.0.1"))
    for i in range(150):
        t.record_failure(f"x{i}", "10.0.0.2")
    assert t.throttled()
    clock.advance(3 * 900 + 100 * 3.0)  # no restart, no operator: just time
    assert t.throttled() == []
    assert t.retry_after("alice", "10.0.0.1") == 0.0
    assert len(t._pairs.entries) == 0 and len(t._buckets) == 0


def test_LoginThrottle_throttled_lists_pairs_and_sources(clock):
    t = LoginThrottle(clock=clock, source_max_failures=10)
    for _ in range(5):
        t.record_failure("alice", "10.0.0.1")
    for i in range(10):
        t.record_failure(f"x{i}", "10.0.0.9")
    clock.advance(1)
    assert t.throttled() == [
        ThrottleEntry("alice", "10.0.0.1", 29.0),
        ThrottleEntry(None, "10.0.0.9", 2.0),
    ]


def test_LoginThrottle_unlock_account_and_source(clock):
    t = LoginThrottle(clock=clock, source_max_failures=20)
    for source in ("10.0.0.1", "10.0.0.2"):
        for _ in range(5):
            t.record_failure("alice", source)
    for _ in range(5):
        t.record_failure("bob", "10.0.0.1")
    assert t.unlock("alice") == 2
    assert t.retry_after("alice", "10.0.0.1") == t.retry_after("alice", "10.0.0.2") == 0.0
    assert t.retry_after("bob", "10.0.0.1") == 30.0  # only what was asked
    for i in range(20):
        t.record_failure(f"x{i}", "10.0.0.9")
    assert t.retry_after("anyone", "10.0.0.9") > 0
    assert t.unlock(source="10.0.0.9") >= 1
    assert t.retry_after("anyone", "10.0.0.9") == 0.0
    assert t.unlock("nobody") == 0


def test_LoginThrottle_max_guesses_is_the_documented_formula():
    t = LoginThrottle()
    # Per (account, source): 5 now, 5 after each of the cool-downs 30, 60, 120, 240, 480,
    # 900, 900 s (they end at 30, 90, 210, 450, 930, 1830, 2730 s): 40 in the first hour...
    assert t.max_guesses(3600) == (40, 100 + 1200)
    # ...and 5 per 900 s = 20 an hour after that; per source 1,200 an hour.
    first, second = t.max_guesses(3600), t.max_guesses(7200)
    assert (second[0] - first[0], second[1] - first[1]) == (20, 1200)


def test_LoginThrottle_max_guesses_matches_a_simulated_guesser(clock):
    # A guesser that tries whenever it is allowed, against one account from one address.
    t = LoginThrottle(clock=clock)
    start, checked = clock.now, 0
    while clock.now - start < 3600:
        wait = t.retry_after("alice", "s")
        if wait:
            clock.advance(wait)
            continue
        t.record_failure("alice", "s")
        checked += 1
        clock.advance(0.1)
    assert checked == t.max_guesses(3600)[0]


def test_LoginThrottle_memory_is_bounded(clock):
    t = LoginThrottle(clock=clock, max_entries=100)
    for i in range(1000):
        t.record_failure(f"user{i}", f"10.0.{i // 256}.{i % 256}")
        clock.advance(0.001)
    assert len(t._pairs.entries) <= 100
    assert len(t._buckets) <= 100
    assert t.retry_after("never-seen", "10.9.9.9") == 0.0
    assert len(t._pairs.entries) <= 100


def test_LoginThrottle_prunes_idle_entries_first(clock):
    t = LoginThrottle(clock=clock, max_entries=10)
    for _ in range(5):
        t.record_failure("victim", "s0")  # in a cool-down: must survive pruning
    assert t.retry_after("victim", "s0") == 30
    clock.advance(1)
    for i in range(9):
        t.record_failure(f"old{i}", "s0")
    clock.advance(120)  # the old failures are outside the window now: idle
    for i in range(9):
        t.record_failure(f"new{i}", "s1")
    assert ("victim", "s0") in t._pairs.entries


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures": 0},
        {"source_max_failures": 0},
        {"window": 0},
        {"source_interval": 0},
        {"cooldown": -1},
        {"cooldown": 60, "max_cooldown": 30},
        {"max_entries": 0},
    ],
)
def test_LoginThrottle_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        LoginThrottle(**kwargs)


# --------------------------------------------------------------------------- FairSlots


def test_FairSlots_newcomer_goes_before_a_flood_queue():
    slots = FairSlots(total=2, per_key=2)
    order: list[str] = []
    order_lock = threading.Lock()
    releases = [threading.Event(), threading.Event()]
    holding = threading.Barrier(3)

    def waiting() -> int:
        with slots._lock:
            return sum(len(queue) for queue in slots._waiting.values())

    def hold(release: threading.Event) -> None:
        with slots.slot("flood"):
            holding.wait()
            release.wait(5)

    def queued(key: str) -> None:
        with slots.slot(key):
            with order_lock:
                order.append(key)

    holders = [threading.Thread(target=hold, args=(r,)) for r in releases]
    for h in holders:
        h.start()
    holding.wait(5)  # the flood holds both slots
    flood = [threading.Thread(target=queued, args=("flood",)) for _ in range(5)]
    for f in flood:
        f.start()
    wait_until(lambda: waiting() == 5, 5.0, "the flood's queue")
    newcomer = threading.Thread(target=queued, args=("classmate",))
    newcomer.start()
    wait_until(lambda: waiting() == 6, 5.0, "the classmate to queue")
    releases[0].set()  # one slot frees up: it goes to the address that holds none
    wait_until(lambda: order, 5.0, "a waiter to get the slot")
    releases[1].set()
    for t in [*holders, *flood, newcomer]:
        t.join(5)
    assert order[0] == "classmate", order
    assert sorted(order) == ["classmate"] + ["flood"] * 5


def test_FairSlots_per_key_cap_leaves_room_for_others():
    slots = FairSlots(total=4, per_key=2)
    peak: dict[str, int] = {}
    running: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(12)

    def work(key: str) -> None:
        start.wait(5)
        with slots.slot(key):
            with lock:
                running[key] = running.get(key, 0) + 1
                peak[key] = max(peak.get(key, 0), running[key])
                assert sum(running.values()) <= 4
            time.sleep(0.01)
            with lock:
                running[key] -= 1

    threads = [threading.Thread(target=work, args=("a" if i < 8 else "b",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak["a"] <= 2 and peak["b"] <= 2


def test_FairSlots_rejects_bad_sizes():
    with pytest.raises(ValueError):
        FairSlots(0, 1)
    with pytest.raises(ValueError):
        FairSlots(1, 0)
