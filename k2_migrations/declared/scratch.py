"""Normalising a declared schema: its statements created in a scratch embedded engine, read back.

Run as a child process (``python -m k2_migrations.declared.scratch``): chDB allows one data path per
process and the command may already hold the target's. The child opens a fresh temporary directory,
creates every statement, reads the objects back from system tables as :mod:`.shapes` reads a target,
and prints them as JSON; the directory is removed when it exits. Nothing it creates reaches outside:

- **Statements in any order**: databases first (each database an object names is created when no
  statement declares it), then tables and dictionaries, then views; what fails is retried while a
  pass makes progress (a view before its source fails with UNKNOWN_TABLE, and succeeds on the next pass).
  What still fails is refused with the engine's own reason, one line each.
- **Streaming tables** (Kafka and the other engines of ``STREAMING_ENGINES``, known from
  system.tables after each table is created): creating one contacts
  no broker; a materialized view reading it would start its consumers (measured with chdb-core 26.1: a
  Kafka table pointed at a listening socket had no connection in 3 s alone, and 3 within 4 s of a view
  being attached). So each is read back as the engine rendered it the moment it is created, then
  replaced by a ``Null`` table of the same columns under the same name, which the views are created
  on: no consumer ever starts. The shape reported is the one read before the swap.
- **Dictionaries** are created and never loaded: nothing here calls ``dictGet`` or reloads them;
  each one's ``system.dictionaries`` status is reported so a test can hold that to ``NOT_LOADED``.
- ``POPULATE`` never reaches the engine: :mod:`.source` refuses it.
- **Gated features are allowed** (:data:`ALLOWED`): a setting that only gates creating an object
  (a text index, an experimental codec, a window view) is on, since a target may have it on or may
  hold the object already (added by an ALTER the gate does not check); the target decides what it
  holds, and ``check`` compares.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from k2_migrations.declared.child import run_child
from k2_migrations.declared.source import Declared, DeclaredSchemaError
from k2_migrations.introspection.catalog import Catalog, TableInfo
from k2_migrations.introspection.shape import Shape, read_shapes, shape_from_json, shape_to_json
from k2_migrations.sqltext.objects import object_kind
from k2_migrations.sqltext.quoting import ident, literal, qualified

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

#: How long the child may take: loading hundreds of statements takes seconds, not minutes.
TIMEOUT_S = 300.0
#: Settings that only gate creating an object, all on in the scratch engine (see the module's docstring).
ALLOWED = {
    name: 1
    for name in (
        "allow_experimental_codecs",
        "allow_experimental_live_view",
        "allow_experimental_statistics",
        "allow_experimental_time_series_table",
        "allow_experimental_window_view",
        "allow_suspicious_codecs",
        "allow_suspicious_fixed_string_types",
        "allow_suspicious_low_cardinality_types",
        "allow_suspicious_types_in_group_by",
        "allow_suspicious_types_in_order_by",
        "enable_full_text_index",
    )
}
_ORDER = {"database": 0, "table": 1, "Kafka table": 1, "dictionary": 2}


@dataclass(frozen=True)
class Normalised:
    """The declared schema as the engine renders it."""

    schema: dict[str, dict[str, Shape] | None]
    #: ``database.name`` of each object (inner tables aside): its CREATE as the engine renders it
    #: (a streaming table's as it was before the swap).
    ddl: dict[str, str]
    #: ``database.name`` of each dictionary: its status in the scratch engine (``NOT_LOADED``).
    dictionaries: dict[str, str]
    #: ``database.name`` of each streaming table that is a ``Null`` one in the scratch engine at the end.
    swapped: list[str]
    #: Wall time of the child process, start to exit.
    seconds: float


def normalise(statements: list[Declared]) -> Normalised:
    """Create ``statements`` in a scratch engine of a child process; their objects as the engine renders them.

    Statements the engine refuses raise :class:`DeclaredSchemaError` naming each one's origin and reason.
    """
    request = [{"sql": s.sql, "origin": s.origin, "database": s.database, "name": s.name} for s in statements]
    started = time.monotonic()
    result = run_child(
        ["k2_migrations.declared.scratch"],
        request,
        "the scratch engine normalising the declared schema",
        TIMEOUT_S,
        hint="; run again with fewer statements to find the one it stalls on",
    )
    if result["refused"]:
        raise DeclaredSchemaError([f"{origin}: {reason}" for origin, reason in result["refused"]])
    return Normalised(
        schema={
            db: None if shapes is None else {n: shape_from_json(s) for n, s in shapes.items()}
            for db, shapes in result["schema"].items()
        },
        ddl=result["ddl"],
        dictionaries=result["dictionaries"],
        swapped=result["swapped"],
        seconds=time.monotonic() - started,
    )


def build(client: Client, request: list[dict[str, str]]) -> dict[str, Any]:
    """Create the statements on ``client``'s engine (see the module's docstring); the JSON document."""
    from k2_migrations.declared.shapes import read_databases

    catalog = Catalog(client)
    databases = {item["database"] for item in request}
    declared_databases = {item["database"] for item in request if not item["name"]}
    implied = [
        {
            "sql": f"CREATE DATABASE IF NOT EXISTS {ident(db)}",
            "origin": f"database {db}",
            "database": db,
            "name": "",
        }
        for db in sorted(databases - declared_databases)
    ]
    ordered = implied + sorted(request, key=lambda item: _ORDER.get(object_kind(item["sql"]) or "", 3))
    views: list[dict[str, str]] = []
    others: list[dict[str, str]] = []
    for item in ordered:
        (views if "view" in (object_kind(item["sql"]) or "") else others).append(item)
    streams: dict[str, dict[str, Shape]] = {}
    errors: dict[str, str] = {}
    # Everything but views first, streaming tables swapped only after: a table declared
    # ``AS queue`` copies the Kafka engine, not the Null one.
    waiting = _create(client, others, errors)
    streamed: dict[str, str] = {}  # each streaming table's DDL as the engine rendered it, before the swap
    for item in others:
        info = _streaming(catalog, item) if item not in waiting else None
        if info is not None:
            streams.setdefault(info.database, {}).update(read_shapes(catalog, info.database, [info.name]))
            streamed[info.qualified] = info.create_query
            _swap_for_null(client, info.database, info.name)
    waiting = _create(client, views + waiting, errors)
    schema = read_databases(catalog, databases)
    for database, shapes in streams.items():
        found = schema.get(database)
        if found is not None:
            found.update(shapes)
    return {
        "schema": {
            db: None if shapes is None else {n: shape_to_json(s) for n, s in shapes.items()}
            for db, shapes in schema.items()
        },
        "refused": [[item["origin"], errors[item["origin"]]] for item in waiting],
        "ddl": {
            **{
                f"{db}.{name}": str(query)
                for db, name, query in catalog.rows(
                    "SELECT database, name, create_table_query FROM system.tables"
                    " WHERE database IN {d:Array(String)} AND NOT startsWith(name, '.inner')",
                    {"d": sorted(databases)},
                )
            },
            **streamed,
        },
        "dictionaries": {
            f"{db}.{name}": str(status)
            for db, name, status in catalog.rows(
                "SELECT database, name, toString(status) FROM system.dictionaries"
                " WHERE database IN {d:Array(String)}",
                {"d": sorted(databases)},
            )
        },
        # Read back: the streaming tables that are Null tables in the scratch engine now.
        "swapped": sorted(
            f"{db}.{name}"
            for db, shapes in streams.items()
            for name, info in catalog.tables(db, list(shapes)).items()
            if info.engine == "Null"
        ),
    }


def _create(client: Client, pending: list[dict[str, str]], errors: dict[str, str]) -> list[dict[str, str]]:
    """Create what can be, pass after pass while one makes progress; what could not, its error in ``errors``."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    while pending:
        waiting: list[dict[str, str]] = []
        for item in pending:
            try:
                client.command(item["sql"])
            except DatabaseError as exc:
                errors[item["origin"]] = _reason(exc)
                waiting.append(item)
        if len(waiting) == len(pending):
            break
        pending = waiting
    return pending


def _streaming(catalog: Catalog, item: dict[str, str]) -> TableInfo | None:
    """The table ``item`` created, if it streams: from system.tables, as ``CREATE TABLE t AS queue``
    (an engine copied from another table) names no engine in its text."""
    if object_kind(item["sql"]) not in {"table", "Kafka table"}:
        return None
    info = catalog.table(item["database"], item["name"])
    return info if info is not None and info.streams else None


def _swap_for_null(client: Client, database: str, name: str) -> None:
    """Replace the streaming table ``database.name`` by a ``Null`` table of the same columns.

    Its virtual columns (a Kafka table's ``_topic``, ``_offset``, ``_error``, ...), which views read,
    become ``ALIAS`` columns of the same types: readable by name, left out of ``SELECT *`` as before.
    """
    table, swap = qualified(database, name), qualified(database, f".k2-scratch-swap.{name}")
    described = client.query(f"DESCRIBE TABLE {table} SETTINGS describe_include_virtual_columns = 1")
    flag = described.column_names.index("is_virtual")
    virtual = [(str(row[0]), str(row[1])) for row in described.result_rows if row[flag]]
    client.command(f"CREATE TABLE {swap} AS {table} ENGINE = Null")
    if virtual:
        added = ", ".join(
            f"ADD COLUMN {ident(c)} {t} ALIAS defaultValueOfTypeName({literal(t)})" for c, t in virtual
        )
        client.command(f"ALTER TABLE {swap} {added}")
    client.command(f"DROP TABLE {qualified(database, name)}")
    client.command(f"RENAME TABLE {swap} TO {qualified(database, name)}")


def _reason(exc: Exception) -> str:
    """The engine's message on one line, without its code prefix and version suffix."""
    text = " ".join(str(exc).split())
    text = text.split(" (version ", 1)[0]
    return text.rsplit("DB::Exception: ", 1)[-1]


def main() -> None:
    import clickhouse_connect

    request = json.load(sys.stdin)
    with tempfile.TemporaryDirectory(prefix="k2-migrate-scratch-") as path:
        client = clickhouse_connect.get_client(dsn=f"chdb://{path}", settings=ALLOWED)
        try:
            document = build(client, request)
        finally:
            client.close()
    json.dump(document, sys.stdout)


if __name__ == "__main__":
    main()
