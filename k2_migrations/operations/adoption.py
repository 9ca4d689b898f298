"""Adopting a schema created by other hands: create what is missing, compare what exists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alembic.operations import Operations

from k2_migrations.engine.context import Payload
from k2_migrations.errors import DriftDetected, UsageError
from k2_migrations.operations.base import ClickHouseOperation, _register
from k2_migrations.sqltext import (
    TableName,
    could_consume_kafka,
    object_kind,
    rewrite_databases,
    view_source_and_target,
)

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext
    from k2_migrations.introspection.shape import Difference

# -- adopting a schema created by other hands ----------------------------------------------------


@_register("adopt_objects")
@dataclass(eq=False)
class AdoptObjects(ClickHouseOperation):
    """Create what is missing of a schema and adopt what exists, refusing only what later revisions depend on.

    ``objects`` are ``(name, ddl)`` pairs in creation order, all in ``database``. An existing object
    is compared with its DDL as the server itself renders it (see :mod:`k2_migrations.introspection.shape`):
    every difference is reported, and whether one stops the run follows from what the later
    revisions do with the object. ``carried`` names the objects they re-create from their live
    definitions (views and Kafka tables moved to another database): their own text travels with them,
    so only what they read, where they write and which messages they consume must match. Every other
    object is kept and acted on as it is (a data table is moved and altered), so its structure must
    match too. Refused differences stop the run with the list, before anything is created. A
    materialized view that reads one of these objects but is not among them is refused too: revisions
    that move the pipeline would leave it behind.
    """

    database: str
    objects: list[tuple[str, str]]
    carried: tuple[str, ...] = ()

    @classmethod
    def adopt_objects(
        cls,
        operations: Operations,
        database: str,
        objects: list[tuple[str, str]],
        *,
        carried: tuple[str, ...] | list[str] = (),
    ) -> None:
        unknown = sorted(set(carried) - {name for name, _ in objects})
        if unknown:
            raise UsageError(f"adopt_objects: carried names no object of the list: {', '.join(unknown)}")
        operations.invoke(cls(database, list(objects), tuple(carried)))

    def describe(self) -> str:
        return f"adopt or create {len(self.objects)} object(s) in {self.database}"

    def render(self) -> list[str]:
        lines = ["-- each object below is created only if missing; an existing one is compared instead"]
        if self.carried:
            lines.append(
                f"-- re-created later from their live definitions (only routes and Kafka identity must match): "
                f"{', '.join(self.carried)}"
            )
        lines.extend(ddl.strip().rstrip(";") for _, ddl in self.objects)
        return lines

    def guard_notes(self) -> list[str]:
        return [
            "refuses an existing schema whose data tables differ in columns, types, engine or keys, whose views "
            "read or write other tables, or whose Kafka tables differ in topic, group, format or error mode"
        ]

    def apply(self, rt: StepContext) -> Payload:
        from k2_migrations.introspection.shape import compare, read_shapes

        catalog = rt.catalog
        live = catalog.tables(self.database, [n for n, _ in self.objects])
        missing = [(n, d) for n, d in self.objects if n not in live]
        present = [(n, d) for n, d in self.objects if n in live]
        differences: list[Difference] = []
        if present:
            scratch = f"k2_migrations_scratch_{rt.attempt_id}"
            rt.execute(f"CREATE DATABASE IF NOT EXISTS {scratch}")
            try:
                kafka = [
                    TableName(self.database, n) for n, d in self.objects if object_kind(d) == "Kafka table"
                ]
                for name, ddl in self.objects:
                    reads_kafka = could_consume_kafka(ddl, kafka)
                    if not reads_kafka and not catalog.exists(scratch, name):
                        # Views on Kafka tables are never created, even in scratch: they would consume.
                        rt.execute(rewrite_databases(ddl.strip().rstrip(";"), {self.database: scratch}))
                names = [n for n, _ in present]
                found, built = (
                    read_shapes(catalog, self.database, names),
                    read_shapes(catalog, scratch, names),
                )
                for name, ddl in present:
                    expected = built.get(name) or _text_shape(ddl, self.database)
                    differences.extend(
                        compare(
                            f"{self.database}.{name}", expected, found[name], carried=name in self.carried
                        )
                    )
            finally:
                rt.execute(f"DROP DATABASE IF EXISTS {scratch}")
        differences.extend(self._unknown_views(rt))
        unsafe = [d for d in differences if d.unsafe]
        for difference in differences:
            rt.progress.line(
                f"      {'UNSAFE ' if difference.unsafe else ''}difference: {difference.describe()}"
            )
        if unsafe:
            raise DriftDetected(
                f"the existing schema in {self.database} differs where later revisions depend on it: "
                + "; ".join(f"{d.describe()} ({d.why})" for d in unsafe)
                + " — bring these objects in line (or adjust the revision), then run again"
            )
        for _, ddl in missing:
            rt.execute(ddl.strip().rstrip(";"))
        return {
            "note": f"{len(present)} adopted, {len(missing)} created, {len(differences)} harmless difference(s)",
            "differences": [d.describe() for d in differences],
        }

    def _unknown_views(self, rt: StepContext) -> list[Difference]:
        from k2_migrations.introspection.shape import Difference

        known = {name for name, _ in self.objects}
        why = "later revisions move the pipeline without it"
        out: list[Difference] = []
        for name in known:
            for view in rt.catalog.views_reading(self.database, name):
                if view.split(".", 1)[1] not in known or not view.startswith(f"{self.database}."):
                    out.append(
                        Difference(view, "reads", "no other views", f"{self.database}.{name}", True, why)
                    )
        return out


def _text_shape(ddl: str, database: str) -> Any:
    """The shape of a view we would not create even in scratch: its source and target from the DDL."""
    from k2_migrations.introspection.shape import HOME, Shape

    sources, target = view_source_and_target(ddl)

    def home(table: TableName) -> str:
        return str(TableName(HOME if table.database == database else table.database, table.name))

    return Shape(
        engine="MaterializedView",
        columns=(),
        defaults=(),
        sorting_key="",
        partition_key="",
        primary_key="",
        view_target=home(target) if target else "",
        view_sources=tuple(sorted({home(s) for s in sources})),
        partial=True,
    )
