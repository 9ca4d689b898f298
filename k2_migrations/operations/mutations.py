"""Mutations, raw statements and merges: waited for, never issued twice, verified after."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alembic.operations import Operations

from k2_migrations import failpoints
from k2_migrations.decisions.mutations import Action, MutationRow, next_action, same_command, unfinished
from k2_migrations.engine.context import Payload
from k2_migrations.errors import SqlFailed, UsageError
from k2_migrations.operations.base import (
    MUTATION_POLL_S,
    ClickHouseOperation,
    _register,
    _squash,
    one_statement,
)
from k2_migrations.sqltext.quoting import qualified

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext


@_register("run_mutation")
@dataclass(eq=False)
class RunMutation(ClickHouseOperation):
    """Run an ``ALTER TABLE ... UPDATE/DELETE`` mutation and wait for it, with a progress bar.

    ``done_when`` is a query returning 1 when there is nothing (left) to do; it makes the step
    idempotent (checked before issuing) and verifiable (checked after). A mutation already running
    on the table — one this step issued before a crash — is waited for, never issued again; without
    ``done_when``, a resumed step whose command the table's mutations already list (finished before
    the resume) is not issued again either (:mod:`k2_migrations.decisions.mutations`). A mutation
    that fails stops the run with ClickHouse's ``latest_fail_reason``.
    """

    database: str
    table: str
    command: str
    done_when: str | None = None

    def __post_init__(self) -> None:
        one_statement(self.command, f"op.run_mutation's command on {self.database}.{self.table}")
        if self.done_when:
            one_statement(self.done_when, f"op.run_mutation's done_when on {self.database}.{self.table}")

    @classmethod
    def run_mutation(
        cls, operations: Operations, database: str, table: str, command: str, *, done_when: str | None = None
    ) -> None:
        operations.invoke(cls(database, table, command, done_when))

    def describe(self) -> str:
        return f"mutation on {self.database}.{self.table}: {_squash(self.command)}"

    def render(self) -> list[str]:
        lines = [
            f"ALTER TABLE {qualified(self.database, self.table)} {self.command.strip()} "
            "SETTINGS mutations_sync = 0",
            "-- then wait on system.mutations (is_done, parts_to_do, latest_fail_reason)",
        ]
        if self.done_when:
            lines.append(f"-- skipped when, and verified after by: {_squash(self.done_when)}")
        return lines

    def guard_notes(self) -> list[str]:
        return [f"verified by: {_squash(self.done_when)}"] if self.done_when else []

    def apply(self, rt: StepContext) -> Payload:
        if (self.database, self.table) in rt.stopped_merges:
            raise UsageError(
                f"mutation on {self.database}.{self.table} while a guard holds its merges: it would wait "
                "forever; check the guard (op.check_guards) before the mutation"
            )
        waited = self._wait_for_running(rt)
        done = self._done(rt) if self.done_when else None
        issued = not self.done_when and rt.resuming_step and self._issued_before(rt)
        action = next_action(done=done, waited=waited, issued_before=issued)
        note = "waited for the running mutation" if waited else "issued by the interrupted run"
        if action is Action.SKIP:
            return {"note": "waited for the running mutation" if waited else "nothing to do"}
        if action is Action.ISSUE:
            if not self.done_when:
                rt.journal_now()  # the step's `started` row: a resumed run then looks for the mutation
            rt.execute(self.render()[0])
            failpoints.reached("mutation-issued")
            self._wait_for_running(rt)
            note = ""
        if self.done_when and not self._done(rt):
            raise SqlFailed(
                f"mutation on {self.database}.{self.table} finished but its check still fails: "
                f"{_squash(self.done_when)}"
            )
        return {"note": note} if note else {}

    def _done(self, rt: StepContext) -> bool:
        assert self.done_when is not None
        return bool(rt.catalog.scalar(self.done_when))

    def _issued_before(self, rt: StepContext) -> bool:
        """Whether the table has this step's command among its mutations, each as the engine formats it."""
        rows = rt.catalog.rows(
            "SELECT formatQuerySingleLine(concat('ALTER TABLE _ ', {c:String})),"
            " arrayMap(m -> formatQuerySingleLine(concat('ALTER TABLE _ ', m)), groupArray(command))"
            " FROM system.mutations WHERE database = {d:String} AND table = {t:String}",
            {"c": self.command.strip(), "d": self.database, "t": self.table},
        )
        ours, theirs = rows[0]
        return any(same_command(str(ours), str(command)) for command in theirs)

    def _wait_for_running(self, rt: StepContext) -> bool:
        """Wait for every unfinished mutation on the table; True if there was one."""
        waited = False
        label = f"mutation on {self.database}.{self.table}"
        total = 0
        polls = 0
        while True:
            rows = rt.catalog.mutations(self.database, self.table)
            state = unfinished(
                [MutationRow(m.mutation_id, m.is_done, m.parts_to_do, m.latest_fail_reason) for m in rows]
            )
            if not state.running:
                if waited:
                    rt.progress.bar(label, total, total)
                return waited
            if state.failed is not None:
                m = state.failed
                raise SqlFailed(
                    f"mutation {m.mutation_id} on {self.database}.{self.table} failed: "
                    f"{_squash(m.latest_fail_reason)}; fix the cause, then KILL MUTATION WHERE "
                    f"mutation_id = '{m.mutation_id}' and run the same command again"
                )
            waited = True
            total = max(total, state.parts_left)
            rt.progress.bar(label, total - state.parts_left, total or 1)
            time.sleep(min(MUTATION_POLL_S, 0.01 * 2 ** min(polls, 5)))  # quick first looks, then 0.25 s
            polls += 1


@_register("execute_sql")
@dataclass(eq=False)
class ExecuteSql(ClickHouseOperation):
    """Run one statement the other operations do not cover.

    ``done_when`` is a query returning 1 once the statement's effect is there: checked before (a
    re-run skips the statement) and after (a check still false fails the step, so one that can never
    be true shows on the first run, not when a resumed run repeats the statement).
    """

    sql: str
    done_when: str | None = None

    def __post_init__(self) -> None:
        one_statement(self.sql, "op.execute_sql")
        if self.done_when:
            one_statement(self.done_when, "op.execute_sql's done_when")

    @classmethod
    def execute_sql(cls, operations: Operations, sql: str, *, done_when: str | None = None) -> None:
        operations.invoke(cls(sql, done_when))

    def describe(self) -> str:
        return f"execute {_squash(self.sql, 80)}"

    def render(self) -> list[str]:
        lines = [self.sql.strip().rstrip(";")]
        if self.done_when:
            lines.append(f"-- skipped when, and verified after by: {_squash(self.done_when)}")
        return lines

    def guard_notes(self) -> list[str]:
        return [f"verified by: {_squash(self.done_when)}"] if self.done_when else []

    def touches(self) -> set[str]:
        from k2_migrations.sqltext.references import read_statement

        return {ref.database for ref in read_statement(self.render()[0]).databases}

    def apply(self, rt: StepContext) -> Payload:
        if self.done_when and rt.catalog.scalar(self.done_when):
            return {"note": "nothing to do"}
        rt.execute(self.render()[0])
        if self.done_when and not rt.catalog.scalar(self.done_when):
            raise SqlFailed(
                f"{self.describe()} ran, but its done_when is still false: {_squash(self.done_when)}; "
                "fix the done_when (a resumed run would repeat the statement), then run the same "
                "command again"
            )
        return {}


# -- merges ------------------------------------------------------------------------------------


@_register("stop_merges")
@dataclass(eq=False)
class StopMerges(ClickHouseOperation):
    database: str
    table: str

    @classmethod
    def stop_merges(cls, operations: Operations, database: str, table: str) -> None:
        operations.invoke(cls(database, table))

    def describe(self) -> str:
        return f"stop merges on {self.database}.{self.table}"

    def render(self) -> list[str]:
        return [f"SYSTEM STOP MERGES {qualified(self.database, self.table)}"]

    def apply(self, rt: StepContext) -> Payload:
        # Not recorded in rt.stopped_merges: those are restarted at the end of the run, this is meant to last.
        rt.execute(self.render()[0])
        return {}

    def replay(self, rt: StepContext, payload: Payload) -> None:
        rt.execute(self.render()[0])  # merges do not stay stopped across a server restart

    def reverse(self) -> ClickHouseOperation:
        return StartMerges(self.database, self.table)


@_register("start_merges")
@dataclass(eq=False)
class StartMerges(ClickHouseOperation):
    database: str
    table: str

    @classmethod
    def start_merges(cls, operations: Operations, database: str, table: str) -> None:
        operations.invoke(cls(database, table))

    def describe(self) -> str:
        return f"start merges on {self.database}.{self.table}"

    def render(self) -> list[str]:
        return [f"SYSTEM START MERGES {qualified(self.database, self.table)}"]

    def apply(self, rt: StepContext) -> Payload:
        rt.stopped_merges.discard((self.database, self.table))
        rt.execute(self.render()[0])
        return {}

    def reverse(self) -> ClickHouseOperation:
        return StopMerges(self.database, self.table)
