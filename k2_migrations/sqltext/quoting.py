"""Quoting: identifiers only when they need it, string literals, qualified names."""

from __future__ import annotations

import re

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
