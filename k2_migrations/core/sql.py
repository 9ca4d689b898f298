"""Small SQL helpers: identifier quoting, literals and inserting rows (rewriting lives in :mod:`k2_migrations.sqltext`)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

# Moved to the tokenizer-based package; still importable from here by the callers that know it here.
from k2_migrations.sqltext import rewrite_databases

__all__ = ["ident", "insert_rows", "literal", "qualified", "rewrite_databases", "split_qualified"]

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """Quote an identifier only when it needs it, so rendered SQL reads like hand-written SQL."""
    if _PLAIN.match(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def qualified(database: str, name: str) -> str:
    return f"{ident(database)}.{ident(name)}"


def literal(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def split_qualified(name: str, default_database: str) -> tuple[str, str]:
    database, dot, table = name.partition(".")
    return (database, table) if dot else (default_database, name)


def insert_rows(client: Client, table: str, columns: list[str], rows: list[list[Any]]) -> None:
    """INSERT the few rows k2-migrate writes itself (journal, snapshots) as one JSONEachRow block.

    One statement whatever the number of rows, its cost flat (about 4 ms on chDB for 1 or 100 rows):
    server-side parameter binding grows with the number of parameters (0.5 s for 100 journal rows),
    and ``client.insert`` would load pandas on first use to insert a handful of rows.
    """
    body = "\n".join(
        json.dumps(dict(zip(columns, (_json_value(v) for v in row), strict=True)), ensure_ascii=False)
        for row in rows
    )
    client.raw_insert(table, columns, body.encode(), fmt="JSONEachRow")


def _json_value(value: Any) -> Any:
    """Datetimes as ClickHouse reads them from JSON (UTC, microseconds); the rest as JSON has them."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
