"""Login throttling that cannot be turned against the victim, and fair sharing of the hasher.

No sockets, no files; every clock is injectable. Used by `labchat.auth.Authenticator`.

The design (issue 11; numbers are the defaults, all of them `labchat serve` options):

* **(account, source) pairs.** 5 failures for one account from one address within 60 s start
  a cool-down for that pair: 30 s, then 60 s, 120 s, ... capped at 15 minutes; the doubling
  starts over after 15 quiet minutes. Only that pair waits: the owner logging in from
  another address is never refused, however long a classmate guesses.
* **Sources.** Every failure from an address, whatever the name (made-up names included),
  takes a token from that address's bucket: 100 tokens, one back every 3 s. An empty bucket
  refuses that address's logins until the next token, so a correct login from it (a
  classmate behind the same NAT) waits at most 3 s once the guessing stops.
* Nothing is permanent: cool-downs end, buckets refill, and idle entries are forgotten.
  `LoginThrottle.unlock()` (the operator's UNLOCK) ends them early.

So a guesser gets, per (account, address), at most 40 guesses in its first hour and 20 an
hour after that (5 per 15 minutes); per address, at most 1,300 failures in the first hour
and 1,200 an hour after that, over all accounts. `LoginThrottle.max_guesses()` computes
these from the settings; docs/security.md has the table, bench/attacks.py measures them.

This follows the OWASP Authentication Cheat Sheet (throttle per account *and* source rather
than lock the account, which "allows an attacker to lock out any account"), and the way
IRC servers and nginx (`limit_req`) count per client address.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

__all__ = ["FairSlots", "LoginThrottle", "ThrottleEntry"]

log = logging.getLogger("labchat.auth")


@dataclass(frozen=True)
class ThrottleEntry:
    """One thing in a cool-down, as the operator's THROTTLED command lists it.

    Attributes:
        account: The account name, or None for a whole source address.
        source: The client address.
        retry_after: Seconds left.
    """

    account: str | None
    source: str
    retry_after: float


@dataclass
class _Entry:
    """Failure history of one (account, source) pair."""

    failures: deque[float]
    cooldown_until: float = 0.0
    level: int = 0  # how many cool-downs so far: the next lasts cooldown * 2**level
    last_event: float = 0.0  # time of the last failure, for the quiet period


@dataclass
class _Pairs:
    """Sliding-window failure counting with doubling cool-downs, per (account, source)."""

    max_failures: int
    window: float
    cooldown: float
    max_cooldown: float
    max_entries: int
    entries: OrderedDict[tuple[str, str], _Entry] = field(default_factory=OrderedDict)

    def _decay(self, entry: _Entry, now: float) -> None:
        # Escalation resets after a quiet period: no failure and no cool-down for
        # max_cooldown seconds. Measured from the end of the last cool-down, so an attacker
        # who waits out a capped cool-down still meets the cap, not the first step again.
        if entry.level and now >= entry.cooldown_until:
            if now - max(entry.last_event, entry.cooldown_until) >= self.max_cooldown:
                entry.level = 0
        while entry.failures and entry.failures[0] <= now - self.window:
            entry.failures.popleft()

    def idle(self, entry: _Entry, now: float) -> bool:
        self._decay(entry, now)
        return not entry.failures and entry.level == 0 and now >= entry.cooldown_until

    def remaining(self, key: tuple[str, str], now: float) -> float:
        entry = self.entries.get(key)  # reading never allocates an entry
        return 0.0 if entry is None else max(0.0, entry.cooldown_until - now)

    def failure(self, key: tuple[str, str], now: float) -> float:
        """Count a failure; return the length of the cool-down it started (0.0 if none)."""
        entry = self.entries.get(key)
        if entry is None:
            self._make_room(now)
            entry = _Entry(failures=deque(maxlen=self.max_failures))
            self.entries[key] = entry
        self.entries.move_to_end(key)
        self._decay(entry, now)
        entry.last_event = now
        if now < entry.cooldown_until:
            return 0.0  # already cooling down (a race past the check); nothing to add
        entry.failures.append(now)
        if len(entry.failures) < self.max_failures:
            return 0.0
        duration = min(self.cooldown * 2 ** min(entry.level, 62), self.max_cooldown)
        entry.cooldown_until = now + duration
        entry.level += 1
        entry.failures.clear()  # after the cool-down, another max_failures tries
        return duration

    def success(self, key: tuple[str, str], now: float) -> None:
        entry = self.entries.get(key)
        if entry is None:
            return
        entry.failures.clear()
        if self.idle(entry, now):
            del self.entries[key]

    def prune(self, now: float) -> None:
        for key in [k for k, e in self.entries.items() if self.idle(e, now)]:
            del self.entries[key]

    def _make_room(self, now: float) -> None:
        """Make room for one more key: drop idle ones first, then the least recently used."""
        if len(self.entries) < self.max_entries:
            return
        self.prune(now)
        # Too few idle keys: evict the least recently failed down to 90 % of the cap, so the
        # O(n) sweep above runs once per max_entries/10 new keys rather than on every one.
        # Evicting forgets a pair's history; making max_entries fresh pairs on purpose costs
        # an attacker max_entries failures, which its source bucket allows only slowly.
        target = self.max_entries - max(1, self.max_entries // 10)
        evicted = 0
        while len(self.entries) > target:
            self.entries.popitem(last=False)
            evicted += 1
        if evicted:
            log.warning("login throttle full: forgot the %d oldest account/source pairs", evicted)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class LoginThrottle:
    """Per (account, source) cool-downs and per-source failure budgets (see the module doc).

    Thread-safe; *clock* is injectable for tests and must be monotonic.

    Args:
        max_failures: Failures per (account, source) within *window* that start a cool-down.
        window: Seconds over which a pair's failures are counted.
        cooldown: Length of a pair's first cool-down, in seconds.
        max_cooldown: Cap on a doubled cool-down, and the quiet period after which the
            doubling starts again from *cooldown*.
        source_max_failures: Failures one source may make in a burst (its bucket's size).
        source_interval: Seconds per failure the bucket gives back; also the longest an
            empty bucket refuses a login.
        max_entries: How many pairs (and, separately, sources) to remember.
        clock: Monotonic time source in seconds.

    Raises:
        ValueError: If a limit is not positive or *max_cooldown* < *cooldown*.
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 60.0,
        cooldown: float = 30.0,
        max_cooldown: float = 900.0,
        source_max_failures: int = 100,
        source_interval: float = 3.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(max_failures, source_max_failures, max_entries) < 1:
            raise ValueError("failure limits and max_entries must be at least 1")
        if min(window, source_interval, cooldown) <= 0 or max_cooldown < cooldown:
            raise ValueError("windows and cool-downs must be positive, max_cooldown >= cooldown")
        self._clock = clock
        self._lock = threading.Lock()
        self._pairs = _Pairs(max_failures, window, cooldown, max_cooldown, max_entries)
        self.source_max_failures = source_max_failures
        self.source_interval = source_interval
        self._max_entries = max_entries
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    # -- sources -------------------------------------------------------------------------

    def _tokens(self, source: str, now: float) -> float:
        bucket = self._buckets.get(source)
        if bucket is None:
            return float(self.source_max_failures)
        refill = (now - bucket.stamp) / self.source_interval
        return min(float(self.source_max_failures), bucket.tokens + refill)

    def _source_wait(self, source: str, now: float) -> float:
        tokens = self._tokens(source, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) * self.source_interval

    def _spend(self, source: str, now: float) -> bool:
        """Take a token for a failure; True if this one emptied the bucket."""
        before = self._tokens(source, now)
        tokens = before - 1.0
        if source not in self._buckets and len(self._buckets) >= self._max_entries:
            self._prune_buckets(now)
            while len(self._buckets) >= self._max_entries:
                self._buckets.popitem(last=False)  # a forgotten bucket is a full one
        # Not below zero: a failure that raced past the check (at most hashes-per-source of
        # them) must not stretch the wait beyond one interval.
        self._buckets[source] = _Bucket(max(tokens, 0.0), now)
        self._buckets.move_to_end(source)
        return before >= 1.0 > tokens

    def _prune_buckets(self, now: float) -> None:
        full = float(self.source_max_failures)
        for source in [s for s in self._buckets if self._tokens(s, now) >= full]:
            del self._buckets[source]

    # -- the public API ------------------------------------------------------------------

    def retry_after(self, user: str, source: str) -> float:
        """Seconds until an attempt for *user* from *source* will be checked (0.0: now)."""
        with self._lock:
            now = self._clock()
            return max(self._pairs.remaining((user, source), now), self._source_wait(source, now))

    def record_failure(self, user: str, source: str) -> None:
        """Count a failed login for account *user* from *source*."""
        with self._lock:
            now = self._clock()
            pair_wait = self._pairs.failure((user, source), now)
            emptied = self._spend(source, now)
        # Log outside the lock; names and addresses only, never the password.
        if pair_wait:
            log.warning(
                "account %r from %s: too many failed logins, cool-down %.0f s",
                user,
                source,
                pair_wait,
            )
        if emptied:
            log.warning(
                "source %s: more than %d failed logins; one more every %.0f s",
                source,
                self.source_max_failures,
                self.source_interval,
            )

    def record_success(self, user: str, source: str) -> None:
        """Clear the failure count of *user* from *source* after a successful login.

        The escalation level is kept on purpose: if someone at this address is guessing
        the account while its owner logs in between rounds, forgetting the level would hand
        the guesser the short 30 s cool-down again each time. The level still decays after a
        quiet period. The source's bucket is not refilled either: one valid login must not
        wipe a spraying client's failures against all the other accounts.
        """
        with self._lock:
            self._pairs.success((user, source), self._clock())

    def unlock(self, user: str | None = None, source: str | None = None) -> int:
        """End cool-downs early (the operator's UNLOCK): every pair of account *user*, and/or
        every pair of *source* and its bucket. Returns how many entries were cleared."""
        with self._lock:
            keys = [
                key
                for key in self._pairs.entries
                if (user is not None and key[0] == user)
                or (source is not None and key[1] == source)
            ]
            for key in keys:
                del self._pairs.entries[key]
            cleared = len(keys)
            if source is not None and self._buckets.pop(source, None) is not None:
                cleared += 1
        return cleared

    def throttled(self) -> list[ThrottleEntry]:
        """Everything in a cool-down now: pairs first, then sources, longest wait first.

        Expired entries are forgotten on the way (the state expires by itself)."""
        with self._lock:
            now = self._clock()
            self._pairs.prune(now)
            self._prune_buckets(now)
            pairs = [
                ThrottleEntry(account, source, self._pairs.remaining((account, source), now))
                for account, source in self._pairs.entries
            ]
            sources = [
                ThrottleEntry(None, source, self._source_wait(source, now))
                for source in self._buckets
            ]
        entries = [e for e in pairs if e.retry_after > 0]
        entries.sort(key=lambda e: -e.retry_after)
        return entries + sorted((e for e in sources if e.retry_after > 0), key=lambda e: e.source)

    def max_guesses(self, seconds: float) -> tuple[int, int]:
        """The most guesses these settings allow within *seconds*: (per account from one
        source, per source over all accounts). The design's formula, for docs and bench.

        A pair gets `max_failures` guesses, then one batch of `max_failures` after each
        cool-down (cooldown, 2x, 4x, ... capped at max_cooldown), assuming the guesser never
        stays quiet long enough for the doubling to reset. A source gets its bucket, then one
        failure per `source_interval`.
        """
        pairs = self._pairs
        guesses, elapsed, level = pairs.max_failures, 0.0, 0
        while True:
            elapsed += min(pairs.cooldown * 2 ** min(level, 62), pairs.max_cooldown)
            if elapsed > seconds:
                break
            guesses += pairs.max_failures
            level += 1
        per_source = self.source_max_failures + int(seconds // self.source_interval)
        return guesses, per_source


class FairSlots:
    """At most *total* holders at once, at most *per_key* of them for one key, handed out
    fairly: when a slot frees up, the waiting key that holds the fewest slots goes first
    (the one that has waited longest among equals).

    Used for scrypt: 4 hashes at once bound the memory (16 MiB each), 1 per source address
    means one address's failed-login flood always leaves slots for everybody else, and a
    newcomer's hash starts as soon as any hash ends, not after the flood's queue.

    Args:
        total: Slots in all.
        per_key: Slots one key may hold at once.

    Raises:
        ValueError: If a number is less than 1.
    """

    def __init__(self, total: int, per_key: int) -> None:
        if total < 1 or per_key < 1:
            raise ValueError("slot counts must be at least 1")
        self.total, self.per_key = total, per_key
        self._lock = threading.Lock()
        self._free = total
        self._held: dict[Hashable, int] = {}
        self._waiting: OrderedDict[Hashable, deque[threading.Event]] = OrderedDict()

    @contextlib.contextmanager
    def slot(self, key: Hashable) -> Iterator[None]:
        """Hold one slot for *key* for the duration of the block (waiting for it if need be)."""
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(key, deque()).append(event)
            self._grant()
        event.wait()
        try:
            yield
        finally:
            with self._lock:
                self._free += 1
                self._held[key] -= 1
                if not self._held[key]:
                    del self._held[key]
                self._grant()

    def _grant(self) -> None:
        # Called with the lock held. O(number of keys waiting): a handful of addresses.
        while self._free:
            eligible = [k for k in self._waiting if self._held.get(k, 0) < self.per_key]
            if not eligible:
                return
            key = min(eligible, key=lambda k: self._held.get(k, 0))  # stable: oldest first
            queue = self._waiting[key]
            event = queue.popleft()
            if queue:
                self._waiting.move_to_end(key)  # its next waiter queues behind the others
            else:
                del self._waiting[key]
            self._held[key] = self._held.get(key, 0) + 1
            self._free -= 1
            event.set()
