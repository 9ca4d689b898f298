"""Failpoints: named places where a test can break this process, to prove a failure there is handled.

A crash between two statements is the case every run must survive, and the interesting places (just
before or after the version change, right after a mutation was accepted, between a move and its
check) are too short to hit by sending a signal from outside. ``K2_MIGRATE_FAILPOINT=name`` makes the
process SIGKILL itself the first time it reaches ``name``; ``name:N`` the N-th time. With
``K2_MIGRATE_FAILPOINT_SQL`` set as well, the point runs that statement on the run's connection
instead of dying — another writer acting at exactly that moment (rows deleted between a move and
its row count, say); with ``K2_MIGRATE_FAILPOINT_SQL_AT=name[:N]`` as well, the statement runs at
that point instead, and the process still dies at ``K2_MIGRATE_FAILPOINT`` (a row arriving just
before a table swap, then a kill later in the same step). Unset — always, outside tests — a failpoint costs one environment lookup. The
names are listed in docs/safety.md.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

_hits: dict[tuple[str, str], int] = {}


def reached(name: str, execute: Callable[[str], object] | None = None) -> None:
    """Die here, or run the configured statement through ``execute``, if the environment asks for it."""
    wanted = os.environ.get("K2_MIGRATE_FAILPOINT")
    if not wanted:
        return
    statement = os.environ.get("K2_MIGRATE_FAILPOINT_SQL")
    elsewhere = os.environ.get("K2_MIGRATE_FAILPOINT_SQL_AT")
    if elsewhere and statement and execute is not None and _due("sql", elsewhere, name):
        execute(statement)
    if not _due("kill", wanted, name):
        return
    if statement and execute is not None and not elsewhere:
        execute(statement)
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _due(what: str, wanted: str, name: str) -> bool:
    """Whether ``name`` is the point ``wanted`` (``name`` or ``name:N``) names, reached for the N-th time."""
    point, _, nth = wanted.partition(":")
    if point != name:
        return False
    _hits[(what, name)] = _hits.get((what, name), 0) + 1
    return _hits[(what, name)] == int(nth or 1)
