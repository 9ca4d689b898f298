"""What every operation is: one object that describes, renders, applies, replays and reverses itself.

Each operation is data (Snuba's idea): it says what it does (:meth:`describe`), renders the SQL it
would run (:meth:`render`, for ``plan`` and ``--sql``), knows its reverse where one exists
(:meth:`reverse`), and applies itself by first reading the live state from system tables
(:meth:`apply`), so that running it again — after a crash, on a database created by other hands, or
twice in a row — does exactly what is still missing and nothing else. Alembic's ``op`` hands each
invoked operation to :func:`execute`, which passes it to the run's step executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alembic.operations import MigrateOperation, Operations

from k2_migrations.engine.context import Payload
from k2_migrations.errors import UsageError
from k2_migrations.sqltext.quoting import qualified

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext

    from k2_migrations.engine.context import Executor, StepContext
    from k2_migrations.introspection.topology import ClusterMode

MUTATION_POLL_S = 0.25


class ClickHouseOperation(MigrateOperation):
    """Base of every k2-migrations operation."""

    #: Make this step's ``done`` row durable before the next step. Most steps need not: each
    #: re-checks the live state, so a step whose rows a crash lost is simply checked again. Those
    #: whose payload a resumed run relies on (a guard's baseline, an interval's start) say so; the
    #: rest are journaled with the next durable row, which keeps appends out of the ingestion pause.
    #: A step that needs its ``started`` row durable midway calls :meth:`~k2_migrations.engine.context.StepContext.journal_now`.
    journal_eagerly = False

    def describe(self) -> str:
        raise NotImplementedError

    def render(self) -> list[str]:
        raise NotImplementedError

    def apply(self, rt: StepContext) -> Payload | None:
        raise NotImplementedError

    def replay(self, rt: StepContext, payload: Payload) -> None:
        """Restore in-memory state of a step done by an earlier run (nothing, for most operations)."""

    def reverse(self) -> ClickHouseOperation:
        raise NotImplementedError(f"{self.describe()} has no reverse")

    def guard_notes(self) -> list[str]:
        """The guards this operation checks, for ``plan``."""
        return []

    def touches(self) -> set[str]:
        """The databases whose schema this operation reads or changes (what ``check`` watches)."""
        return {str(getattr(self, a)) for a in ("database", "to_database") if getattr(self, a, None)}


def runtime_of(context: MigrationContext) -> Executor | None:
    runtime: Executor | None = context.opts.get("k2_runtime")
    return runtime


def _execute(operations: Operations, operation: ClickHouseOperation) -> None:
    """The one implementation behind every operation: run it, plan it, or print its SQL."""
    context = operations.migration_context
    runtime = runtime_of(context)
    if runtime is not None:
        runtime.run_step(operation)
        return
    if context.as_sql:
        cluster: ClusterMode | None = context.opts.get("k2_cluster")
        context.impl.static_output(f"-- {operation.describe()}")
        for statement in operation.render():
            if statement.startswith("--"):
                context.impl.static_output(statement + "\n")
                continue
            sent = cluster.form(statement) if cluster is not None else statement
            context.impl.static_output(sent + _terminator(sent))
        return
    raise UsageError("k2-migrations operations run through k2-migrate (its env.py attaches the runtime)")


def _terminator(statement: str) -> str:
    """``;`` after a statement, on a line of its own when the statement ends in a ``--`` comment
    (on the same line the comment would swallow it, and the script would run two statements as one)."""
    from k2_migrations.sqltext.tokens import tokenize

    tokens = tokenize(statement)
    ends_in_comment = bool(tokens) and bool(statement[tokens[-1].end :].strip())
    return "\n;\n" if ends_in_comment else ";\n"


def _get_cluster(operations: Operations) -> str | None:
    """``op.get_cluster()``: the cluster of cluster mode (None on one server), for a revision's own SQL.

    Named like Alembic's ``op.get_bind()``/``op.get_context()``. Raw SQL can also say
    ``ON CLUSTER '{cluster}'``: k2-migrate puts the name there in cluster mode and removes the
    clause on one server, so one revision serves both.
    """
    cluster: ClusterMode | None = operations.migration_context.opts.get("k2_cluster")
    return cluster.name if cluster is not None and not cluster.cloud else None


# A method, so that Alembic's ``op`` module proxies it as it proxies get_bind (a property would be
# copied into the module when a run starts and deleted when it ends, which nested runs trip over).
setattr(Operations, "get_cluster", _get_cluster)  # noqa: B010 (mypy types Operations' attributes)
Operations._update_module_proxies("get_cluster")


def _register(name: str) -> Any:
    def decorate(cls: type[ClickHouseOperation]) -> type[ClickHouseOperation]:
        Operations.register_operation(name)(cls)
        Operations.implementation_for(cls)(_execute)
        return cls

    return decorate


def one_statement(sql: str, what: str) -> None:
    """Refuse ``sql`` holding several statements, on every engine: ClickHouse's HTTP interface runs
    one statement per request, and chDB runs them all, so a revision would pass on one and fail on
    the other. Split by the tokenizer: a ``;`` inside a literal or a comment separates nothing."""
    from k2_migrations.sqltext.tokens import split_statements

    statements = split_statements(sql)
    if len(statements) > 1:
        raise UsageError(
            f"{what} holds {len(statements)} statements ({_squash(sql, 80)}); ClickHouse runs one per "
            "request: give each statement an op.execute_sql of its own, or run a file of statements "
            "with op.run_sql_file"
        )


def _squash(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _qualify(table: str) -> str:
    database, _, name = table.partition(".")
    return qualified(database, name)
