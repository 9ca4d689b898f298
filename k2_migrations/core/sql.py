"""Small SQL helpers: identifier quoting, literals, and rewriting database references in DDL."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

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


_TOKEN = re.compile(
    r"""('(?:[^'\\]|\\.)*')        # string literal: left alone
      |("(?:[^"\\]|\\.)*")         # double-quoted identifier
      |(`(?:[^`\\]|\\.)*`)         # backquoted identifier
      |([A-Za-z_][A-Za-z0-9_]*)    # bare word
      |(\s+|.)                     # anything else
    """,
    re.VERBOSE | re.DOTALL,
)


def rewrite_databases(ddl: str, mapping: dict[str, str]) -> str:
    """Replace database qualifiers (``db.`` / ```db`.``) in DDL, leaving string literals alone.

    A materialized view's source and ``TO`` target do not follow a RENAME, so moving a pipeline
    means re-creating each view with its database references changed and nothing else changed.
    Only a word directly followed by a dot counts as a database qualifier, so a column or string
    that happens to spell a database name is untouched.
    """
    tokens = [m.group(0) for m in _TOKEN.finditer(ddl)]
    out: list[str] = []
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        previous = tokens[index - 1] if index > 0 else ""
        bare = token.strip('`"')
        if following == "." and previous != "." and bare in mapping and not token.startswith("'"):
            out.append(ident(mapping[bare]))
        else:
            out.append(token)
    return "".join(out)


def insert_rows(client: Client, table: str, columns: list[tuple[str, str]], rows: list[list[Any]]) -> None:
    """INSERT rows with server-side parameter binding.

    Used for the few rows k2-migrate writes itself (journal, snapshots): ``client.insert`` would
    load pandas on first use (half a second of start-up) to insert a handful of rows.
    """
    placeholders = []
    parameters: dict[str, Any] = {}
    for r, row in enumerate(rows):
        names = []
        for (column, type_), value in zip(columns, row, strict=True):
            key = f"{column}_{r}"
            parameters[key] = value
            names.append(f"{{{key}:{type_}}}")
        placeholders.append("(" + ", ".join(names) + ")")
    column_list = ", ".join(column for column, _ in columns)
    client.command(
        f"INSERT INTO {table} ({column_list}) VALUES {', '.join(placeholders)}", parameters=parameters
    )
