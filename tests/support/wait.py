"""Waiting for a state instead of sleeping a fixed time: the one poll loop of the tests and the bench.

A fixed ``time.sleep`` before an assertion is either too short on a busy machine (a flaky failure)
or longer than needed everywhere else (a slow suite). Tests poll for the state they need instead,
with a deadline that turns a hang into a failure naming what never happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str | Callable[[], str],
    *,
    interval_s: float = 0.05,
    error: type[Exception] = AssertionError,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that; fail after ``timeout_s``.

    ``what`` names the awaited state in the failure (a callable is asked only then, so it may read
    diagnostics that are costly or only meaningful at the moment of failure). The failure is an
    ``AssertionError`` in a test; a harness whose callers handle its own error type (the Kafka
    broker retries a start-up on ``KafkaHarnessError``) passes that as ``error``. A predicate that
    knows the state can no longer come (a process exited) raises at once instead of returning.
    Written here rather than taken from tenacity, which is not installed: these lines are all a
    caller needs, and the failure must say what was awaited, not be a library's retry error.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise error(f"gave up after {timeout_s} s waiting for {described}")
        time.sleep(interval_s)
