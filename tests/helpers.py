"""Helpers shared by the test modules (fixtures live in conftest.py).

Import them as ``from helpers import wait_until``: pytest puts ``tests/`` on ``sys.path``
(rootdir-relative imports, as conftest.py itself is imported).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TIMEOUT", "FakeClock", "wait_until"]

#: Seconds any single wait in a test may take before it counts as a hang.
TIMEOUT = 5.0


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT, what: str = "") -> None:
    """Poll *predicate* until it is true, for state that has no event to wait on.

    Args:
        predicate: Called every 10 ms; the wait ends as soon as it returns something true.
        timeout: Seconds before the wait counts as a hang.
        what: Named in the failure message ("timed out after 2.0 s waiting for <what>").

    Raises:
        AssertionError: *predicate* stayed false for *timeout* seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


class FakeClock:
    """A monotonic clock the test moves by hand: pass it as ``clock=`` (LoginThrottle, ...)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
