"""A table's TTL, skipping indexes and projections, each compared as the engine's formatter renders it.

The wanted side goes through the engine's own ``formatQuerySingleLine`` and the live side comes from
system tables the engine rendered (``engine_full``, ``system.data_skipping_indices``,
``system.projections``), so ``INTERVAL 730 DAY`` and ``toIntervalDay(730)`` are equal and no revision
needs a hand-written ``done_when``. ``MODIFY TTL`` and ``MATERIALIZE INDEX/PROJECTION`` are mutations:
waited on with progress through :class:`~k2_migrations.operations.mutations.RunMutation`, and never
issued twice — whether one was issued is read from system.mutations (the newest MATERIALIZE or DROP
of that index or projection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from alembic.operations import Operations

from k2_migrations.decisions.columns import (
    Materialized,
    MutationRow,
    materialized,
    mutation_number,
    same_text,
)
from k2_migrations.engine.context import Payload
from k2_migrations.errors import DriftDetected, UsageError
from k2_migrations.operations.base import ClickHouseOperation, _register
from k2_migrations.operations.columns import capture, captured, mutation_step
from k2_migrations.sqltext.quoting import ident, qualified
from k2_migrations.sqltext.tokens import Kind, tokenize

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext


def _formatted(rt: StepContext, sql: str) -> str:
    """``sql`` as the engine's formatter writes it, on one line; a statement it cannot parse is the revision's fault."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    try:
        return str(rt.catalog.scalar("SELECT formatQuerySingleLine({q:String})", {"q": sql}))
    except DatabaseError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise UsageError(f"the engine cannot parse {sql!r}: {reason[:300]}; fix the revision") from None


# -- TTL ---------------------------------------------------------------------------------------------


def live_ttl(engine_full: str) -> str:
    """The table's TTL clause in ``engine_full`` ('' when it has none), read from its tokens."""
    tokens = tokenize(engine_full)
    depth, start, end = 0, None, len(engine_full)
    for token in tokens:
        if token.kind is Kind.PUNCT and token.value in "()":
            depth += 1 if token.value == "(" else -1
        elif depth == 0 and start is None and token.upper() == "TTL":
            start = token.end
        elif depth == 0 and start is not None and token.upper() == "SETTINGS":
            end = token.start
            break
    return "" if start is None else engine_full[start:end].strip()


@_register("modify_ttl")
@dataclass(eq=False)
class ModifyTtl(ClickHouseOperation):
    """Set the table's TTL (``MODIFY TTL``, a mutation that applies it to existing parts), unless it is so."""

    database: str
    table: str
    ttl: str
    #: Keep the TTL it replaces for the downgrade (not when it is ``restore_ttl``'s own change).
    captures: bool = True

    @classmethod
    def modify_ttl(cls, operations: Operations, database: str, table: str, ttl: str) -> None:
        operations.invoke(cls(database, table, ttl))

    def describe(self) -> str:
        return f"set the TTL of {self.database}.{self.table} to {' '.join(self.ttl.split())}"

    def render(self) -> list[str]:
        return mutation_step(self.database, self.table, f"MODIFY TTL {self.ttl}", issue=True).render()

    def apply(self, rt: StepContext) -> Payload:
        info = rt.catalog.table(self.database, self.table)
        if info is None:
            raise DriftDetected(f"modify_ttl: {self.database}.{self.table} does not exist")
        live = live_ttl(info.engine_full)
        formatted = _formatted(rt, f"ALTER TABLE t MODIFY TTL {self.ttl}")
        wanted = formatted.split("MODIFY TTL", 1)[1].strip().removesuffix(")")
        done = same_text(live, wanted)
        if not done and self.captures:
            capture(rt, f"{self.database}.{self.table} TTL", live)
        waited = (
            mutation_step(self.database, self.table, f"MODIFY TTL {self.ttl}", issue=not done).apply(rt) or {}
        )
        if not done:
            return {"previous": live}
        note = str(waited.get("note", ""))
        return {"note": "already as wanted" + (f"; {note}" if note.startswith("waited") else "")}

    def reverse(self) -> ClickHouseOperation:
        return RestoreTtl(self.database, self.table)


@_register("remove_ttl")
@dataclass(eq=False)
class RemoveTtl(ClickHouseOperation):
    """Remove the table's TTL (metadata only), unless it has none."""

    database: str
    table: str
    captures: bool = True

    @classmethod
    def remove_ttl(cls, operations: Operations, database: str, table: str) -> None:
        operations.invoke(cls(database, table))

    def describe(self) -> str:
        return f"remove the TTL of {self.database}.{self.table}"

    def render(self) -> list[str]:
        return [f"ALTER TABLE {qualified(self.database, self.table)} REMOVE TTL"]

    def apply(self, rt: StepContext) -> Payload:
        info = rt.catalog.table(self.database, self.table)
        live = live_ttl(info.engine_full) if info is not None else ""
        if not live:
            return {"note": "has none"}
        if self.captures:
            capture(rt, f"{self.database}.{self.table} TTL", live)
        rt.execute(self.render()[0])
        return {"previous": live}

    def reverse(self) -> ClickHouseOperation:
        return RestoreTtl(self.database, self.table)


@_register("restore_ttl")
@dataclass(eq=False)
class RestoreTtl(ClickHouseOperation):
    """Put back the TTL that ``modify_ttl``/``remove_ttl`` replaced in this revision (none: remove it)."""

    database: str
    table: str

    @classmethod
    def restore_ttl(cls, operations: Operations, database: str, table: str) -> None:
        operations.invoke(cls(database, table))

    def describe(self) -> str:
        return f"restore the TTL of {self.database}.{self.table} as this revision found it"

    def render(self) -> list[str]:
        return [
            f"-- ALTER TABLE {qualified(self.database, self.table)} MODIFY TTL <the TTL captured> (or REMOVE TTL)"
        ]

    def apply(self, rt: StepContext) -> Payload:
        previous = captured(rt, f"{self.database}.{self.table} TTL")
        if previous is None:
            raise UsageError(
                f"restore_ttl({self.database}.{self.table}): no TTL was captured by revision {rt.revision}; "
                "use modify_ttl or remove_ttl with the old value"
            )
        if previous:
            return ModifyTtl(self.database, self.table, previous, captures=False).apply(rt)
        return RemoveTtl(self.database, self.table, captures=False).apply(rt)


# -- skipping indexes and projections ------------------------------------------------------------------


def _materialize(rt: StepContext, database: str, table: str, kind: str, name: str) -> Payload:
    """MATERIALIZE the index or projection unless one was issued since it was added: then wait for it."""
    rows = [
        MutationRow(mutation_number(m.mutation_id), m.command, m.is_done)
        for m in rt.catalog.mutations(database, table)
    ]
    state = materialized(rows, kind, ident(name))
    if state is Materialized.DONE:
        return {"note": "materialized earlier"}
    command = f"MATERIALIZE {kind} {ident(name)}"
    return mutation_step(database, table, command, issue=state is Materialized.MISSING).apply(rt) or {}


class _AddPart(ClickHouseOperation):
    """What adding an index and adding a projection share: add it unless it exists as wanted (one
    that exists otherwise is drift), then (``materialize``) build it for the existing parts."""

    #: ``INDEX`` or ``PROJECTION``, as the ALTER statements name it.
    kind: ClassVar[str]
    database: str
    table: str
    name: str
    materialize: bool

    def _add(self) -> str:
        """The ``ALTER TABLE ... ADD ... IF NOT EXISTS`` statement."""
        raise NotImplementedError

    def _exists_as_wanted(self, rt: StepContext) -> bool:
        """Whether it exists already (as the revision adds it); raises DriftDetected when it exists otherwise."""
        raise NotImplementedError

    def render(self) -> list[str]:
        command = f"MATERIALIZE {self.kind} {ident(self.name)}"
        return [self._add()] + (
            mutation_step(self.database, self.table, command, issue=True).render() if self.materialize else []
        )

    def apply(self, rt: StepContext) -> Payload:
        note = "exists, kept"
        if not self._exists_as_wanted(rt):
            rt.execute(self._add())
            note = ""
        if not self.materialize:
            return {"note": note} if note else {}
        payload = _materialize(rt, self.database, self.table, self.kind, self.name)
        return {**payload, "note": ", ".join(n for n in (note, str(payload.get("note", ""))) if n)}


@dataclass(eq=False)
class _DropPart(ClickHouseOperation):
    """Drop an index or a projection, unless it is gone."""

    #: ``INDEX`` or ``PROJECTION``, and the system table that lists them.
    kind: ClassVar[str]
    system_table: ClassVar[str]

    database: str
    table: str
    name: str

    def describe(self) -> str:
        return f"drop {self.kind.lower()} {self.name} from {self.database}.{self.table}"

    def render(self) -> list[str]:
        return [
            f"ALTER TABLE {qualified(self.database, self.table)} DROP {self.kind} IF EXISTS {ident(self.name)}"
        ]

    def apply(self, rt: StepContext) -> Payload:
        present = rt.catalog.scalar(
            f"SELECT count() FROM system.{self.system_table}"
            " WHERE database = {d:String} AND table = {t:String} AND name = {n:String}",
            {"d": self.database, "t": self.table, "n": self.name},
        )
        if not present:
            return {"note": "already gone"}
        rt.execute(self.render()[0])
        return {}


@_register("add_index")
@dataclass(eq=False)
class AddIndex(_AddPart):
    """Add a data-skipping index and (``materialize``) build it for the existing parts, as a waited mutation."""

    kind = "INDEX"

    database: str
    table: str
    name: str
    expr: str
    type: str
    granularity: int = 1
    materialize: bool = True

    @classmethod
    def add_index(
        cls,
        operations: Operations,
        database: str,
        table: str,
        name: str,
        expr: str,
        type: str,
        granularity: int = 1,
        *,
        materialize: bool = True,
    ) -> None:
        operations.invoke(cls(database, table, name, expr, type, granularity, materialize))

    def describe(self) -> str:
        built = ", materialized" if self.materialize else ""
        return f"add index {self.name} ({self.expr} TYPE {self.type}) to {self.database}.{self.table}{built}"

    def _definition(self, expr: str, type: str, granularity: int) -> str:
        return f"INDEX {ident(self.name)} {expr} TYPE {type} GRANULARITY {granularity}"

    def _add(self) -> str:
        table = qualified(self.database, self.table)
        add = f"ALTER TABLE {table} ADD {self._definition(self.expr, self.type, self.granularity)}"
        return add.replace(" ADD INDEX ", " ADD INDEX IF NOT EXISTS ", 1)

    def _exists_as_wanted(self, rt: StepContext) -> bool:
        rows = rt.catalog.rows(
            "SELECT expr, type_full, granularity FROM system.data_skipping_indices"
            " WHERE database = {d:String} AND table = {t:String} AND name = {n:String}",
            {"d": self.database, "t": self.table, "n": self.name},
        )
        if not rows:
            return False
        expr, type_full, granularity = rows[0]
        wanted = _formatted(
            rt, f"ALTER TABLE t ADD {self._definition(self.expr, self.type, self.granularity)}"
        )
        live = _formatted(
            rt, f"ALTER TABLE t ADD {self._definition(str(expr), str(type_full), int(granularity))}"
        )
        if not same_text(wanted, live):
            raise DriftDetected(
                f"index {self.name} of {self.database}.{self.table} exists as {expr} TYPE {type_full} "
                f"GRANULARITY {granularity}, not as the revision adds it; drop_index it first, or change the revision"
            )
        return True

    def reverse(self) -> ClickHouseOperation:
        return DropIndex(self.database, self.table, self.name)


@_register("drop_index")
@dataclass(eq=False)
class DropIndex(_DropPart):
    kind = "INDEX"
    system_table = "data_skipping_indices"

    @classmethod
    def drop_index(cls, operations: Operations, database: str, table: str, name: str) -> None:
        operations.invoke(cls(database, table, name))


@_register("add_projection")
@dataclass(eq=False)
class AddProjection(_AddPart):
    """Add a projection and (``materialize``) build it for the existing parts, as a waited mutation."""

    kind = "PROJECTION"

    database: str
    table: str
    name: str
    select: str
    materialize: bool = True

    @classmethod
    def add_projection(
        cls,
        operations: Operations,
        database: str,
        table: str,
        name: str,
        select: str,
        *,
        materialize: bool = True,
    ) -> None:
        operations.invoke(cls(database, table, name, select, materialize))

    def describe(self) -> str:
        built = ", materialized" if self.materialize else ""
        return f"add projection {self.name} to {self.database}.{self.table}{built}"

    def _add(self) -> str:
        table = qualified(self.database, self.table)
        return f"ALTER TABLE {table} ADD PROJECTION IF NOT EXISTS {ident(self.name)} ({self.select.strip()})"

    def _exists_as_wanted(self, rt: StepContext) -> bool:
        live = rt.catalog.scalar(
            "SELECT query FROM system.projections WHERE database = {d:String} AND table = {t:String}"
            " AND name = {n:String}",
            {"d": self.database, "t": self.table, "n": self.name},
        )
        if live is None:
            return False
        if not same_text(_formatted(rt, self.select.strip()), _formatted(rt, str(live))):
            raise DriftDetected(
                f"projection {self.name} of {self.database}.{self.table} exists as {live!s}, not as the revision "
                "adds it; drop_projection it first, or change the revision"
            )
        return True

    def reverse(self) -> ClickHouseOperation:
        return DropProjection(self.database, self.table, self.name)


@_register("drop_projection")
@dataclass(eq=False)
class DropProjection(_DropPart):
    kind = "PROJECTION"
    system_table = "projections"

    @classmethod
    def drop_projection(cls, operations: Operations, database: str, table: str, name: str) -> None:
        operations.invoke(cls(database, table, name))
