"""Kafka tables the declared schema changes: re-created inside one ingestion pause, as versions/k2_003 does.

A Kafka table has no ALTER: any change to its columns or settings (topic, group, format, number of
consumers, ...) is a drop and a re-create, and so is every view reading it (a view's dependency does
not survive its source being dropped). Pure functions over the DDL of both sides (``db.name`` ->
CREATE as the engine renders it). All the changed Kafka tables go in one pause:

- ``begin_interval`` (the run's summary reports how long ingestion was paused);
- ``drop_objects`` of each database: the Kafka tables first and together, which stops consumption
  for every view on them at once (no view misses a message another view got, ClickHouse #6533),
  then the views reading them;
- ``create_object`` of each Kafka table with the declared DDL, then of each view reading it as
  declared (the caller orders them: each after what it reads), so ingestion resumes last;
- ``end_interval``.

``downgrade()`` walks the same way back with the current DDLs. The DDL of both sides is written in
the revision, never captured from the live objects: a revision re-run from the start would capture
what its first run made (the same rule as :mod:`.plan`).

Refused (the caller raises it as :class:`~.plan.Unplannable`): a view reading a changed Kafka table
that the declared schema drops (drop it in a revision of its own first), a materialized view
without ``TO`` reading one (dropping it would drop the rows of its inner table), and a view writing
into one (what its source receives during the pause would never reach the topic).
"""

from __future__ import annotations

from dataclasses import replace

from k2_migrations.introspection.shape import Shape
from k2_migrations.sqltext.objects import object_kind, view_source_and_target

#: The interval of the run's summary: how long ingestion was paused.
PAUSE = "ingestion_pause"
KAFKA = "Kafka table"

Schema = dict[str, dict[str, Shape] | None]
Obj = tuple[str, str]
#: One ``op`` call: its name, positional arguments and keyword arguments.
Call = tuple[str, tuple[object, ...], dict[str, object]]


def changed_kafka_tables(
    current: Schema, declared: Schema, current_ddl: dict[str, str], declared_ddl: dict[str, str]
) -> list[Obj]:
    """Kafka tables on both sides whose shapes differ (columns, settings: written with positional
    arguments or with SETTINGS, the same table is the same shape), by name; not in their comment
    alone (ALTER changes it in place, see :mod:`.plan`)."""
    return sorted(
        (database, name)
        for database, shapes in current.items()
        for name, shape in (shapes or {}).items()
        if name in (declared.get(database) or {})
        and replace(shape, comment="") != replace((declared.get(database) or {})[name], comment="")
        and object_kind(current_ddl[f"{database}.{name}"]) == KAFKA
        and object_kind(declared_ddl[f"{database}.{name}"]) == KAFKA
    )


def readers(ddl: dict[str, str], tables: list[Obj]) -> list[Obj]:
    """The views of one side reading any of ``tables`` (a name without database is in the view's own)."""
    wanted = set(tables)
    found: list[Obj] = []
    for key, sql in sorted(ddl.items()):
        if "view" not in (object_kind(sql) or ""):
            continue
        database, name = _split(key)
        sources, _ = view_source_and_target(sql)
        if any((t.database or database, t.name) in wanted for t in sources):
            found.append((database, name))
    return found


def refusals(
    current: dict[str, str], declared: dict[str, str], tables: list[Obj], views: list[Obj]
) -> list[str]:
    """Why the changed Kafka ``tables`` and the current ``views`` reading them cannot be paused."""
    out: list[str] = []
    for database, name in views:
        key = f"{database}.{name}"
        if key not in declared:
            out.append(
                f"{key} reads a Kafka table the declared schema changes, and is no longer declared: "
                "drop it in a revision of its own first, then autogenerate the Kafka change"
            )
        elif (
            object_kind(current[key]) == "materialized view"
            and view_source_and_target(current[key])[1] is None
        ):
            out.append(
                f"{key} reads a Kafka table the declared schema changes and stores its rows in an inner "
                "table (no TO): re-creating it would drop them; write it with TO a table first"
            )
    wanted = set(tables)
    for key, sql in sorted(current.items()):
        database, name = _split(key)
        target = view_source_and_target(sql)[1] if "view" in (object_kind(sql) or "") else None
        if target is not None and (target.database or database, target.name) in wanted:
            out.append(
                f"{key} writes into a Kafka table the declared schema changes: rows inserted into its "
                "source while the table is re-created would never reach the topic; write that revision by hand"
            )
    return out


def pause_calls(
    tables: list[Obj],
    current: dict[str, str],
    declared: dict[str, str],
    views_now: list[Obj],
    views_declared: list[Obj],
) -> tuple[list[Call], list[Call]]:
    """The upgrade's calls and the downgrade's (see the module's docstring); views each in creation order."""
    return _walk(tables, declared, views_now, views_declared), _walk(
        tables, current, views_declared, views_now
    )


def _walk(tables: list[Obj], ddl: dict[str, str], dropped: list[Obj], created: list[Obj]) -> list[Call]:
    calls: list[Call] = [("begin_interval", (PAUSE,), {})]
    databases = sorted({d for d, _ in tables}) + sorted({d for d, _ in dropped} - {d for d, _ in tables})
    for database in databases:
        names = [n for d, n in tables if d == database] + [n for d, n in reversed(dropped) if d == database]
        calls.append(("drop_objects", (database, names), {}))
    for database, name in [*tables, *created]:
        calls.append(("create_object", (database, name, ddl[f"{database}.{name}"]), {}))
    calls.append(("end_interval", (PAUSE,), {}))
    return calls


def _split(key: str) -> Obj:
    database, _, name = key.partition(".")
    return database, name
