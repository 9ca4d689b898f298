"""The contracts between the layers of a run: what an operation may use of its step, what the executor
needs of an operation, and what a command hands to Alembic's env.py.

Operations depend on :class:`StepContext` — the members they really use — not on the executor, and
the executor depends on :class:`Operation`, not on the operations: so imports flow one way
(operations -> engine), and an operation can be exercised with any object that offers these members.
:class:`RunContext` replaces an untyped dict in Alembic's ``config.attributes``: one typed object,
attached in one place (:func:`attach`) and read in one place (env.py, through :func:`attached`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from alembic.config import Config
    from clickhouse_connect.driver.client import Client
    from sqlalchemy.engine import Connection

    from k2_migrations.decisions.freshness import Freshness
    from k2_migrations.decisions.guards import Part
    from k2_migrations.engine.results import CheckResult, DroppedTable, GuardResult
    from k2_migrations.introspection.catalog import Catalog
    from k2_migrations.introspection.topology import ClusterMode
    from k2_migrations.state.journal import Journal
    from k2_migrations.state.snapshots import Snapshots

Payload = dict[str, Any]


class ProgressSink(Protocol):
    """Where a run reports progress (the CLI's :class:`~k2_migrations.output.progress.Progress`)."""

    def line(self, text: str) -> None: ...
    def bar(self, label: str, done: float, total: float) -> None: ...


class StepContext(Protocol):
    """What an operation uses of the run while it is one step of it."""

    progress: ProgressSink
    snapshots: Snapshots | None
    guard_results: list[GuardResult]
    checks: list[CheckResult]
    intervals: dict[tuple[str, str], float]
    guard_baselines: dict[str, tuple[dict[str, list[Part]], dict[str, str]]]
    dropped_on_purpose: dict[str, DroppedTable]
    interval_starts: dict[str, float]
    #: Each interval's batches seen when it began, and the engine's clock then (Catalog.stream_batches).
    interval_batches: dict[str, tuple[list[int], int]]
    freshness: dict[tuple[str, str], Freshness]
    stopped_merges: set[tuple[str, str]]

    @property
    def client(self) -> Client: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def revision(self) -> str: ...
    @property
    def attempt_id(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def resuming_step(self) -> bool: ...

    def execute(self, sql: str) -> None: ...
    def execute_together(self, statements: list[str]) -> None: ...
    def journal_now(self) -> None: ...
    def stop_merges(self, database: str, table: str) -> None: ...
    def start_merges(self, database: str, table: str) -> None: ...
    def merges_held(self, database: str, table: str) -> AbstractContextManager[None]: ...
    def now(self) -> float: ...


class Operation(Protocol):
    """What the executor needs of an operation to run, plan, journal and resume it."""

    journal_eagerly: bool

    def describe(self) -> str: ...
    def render(self) -> list[str]: ...
    def apply(self, rt: StepContext) -> Payload | None: ...
    def replay(self, rt: StepContext, payload: Payload) -> None: ...
    def guard_notes(self) -> list[str]: ...
    def touches(self) -> set[str]: ...


class Executor(Protocol):
    """Where Alembic's ``op`` sends each operation a revision invokes (the run's step executor)."""

    journal: Journal | None

    def run_step(self, operation: Operation) -> None: ...


@dataclass
class RunContext:
    """What env.py needs from the command that started Alembic."""

    #: The migrations database: where the version state lives.
    version_table_schema: str
    #: The open connection (None for an offline script).
    connection: Connection | None = None
    #: The step executor operations run through (None: print their SQL instead).
    runtime: Executor | None = None
    #: Called after each revision's version change (the runtime closes the revision in the journal).
    on_version_apply: Callable[..., None] | None = None
    #: Cluster mode (None: one server): what ``op.get_cluster()`` answers, and how a script writes its DDL.
    cluster: ClusterMode | None = None


_KEY = "k2_run"


def attach(config: Config, run: RunContext) -> None:
    """Hand ``run`` to env.py for the Alembic command about to start."""
    config.attributes[_KEY] = run


def attached(config: Config) -> RunContext | None:
    """The run a command attached, or None (Alembic's own CLI on this project's env.py)."""
    run = config.attributes.get(_KEY)
    return run if isinstance(run, RunContext) else None
