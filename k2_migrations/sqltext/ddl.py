"""ClickHouse DDL from SQLAlchemy objects, rendered by clickhouse-sqlalchemy.

Revision authors may describe a table as a SQLAlchemy ``Table`` with clickhouse-sqlalchemy's types
and engines (``LowCardinality``, ``DateTime64``, ``SimpleAggregateFunction``, ``AggregatingMergeTree``
...) instead of writing its DDL, and a column's type as a type object instead of a string. This is
what clickhouse-sqlalchemy is the right tool for: it compiles ClickHouse DDL offline, so the result
is the same in ``plan``, ``--sql`` and a real run. Nothing else in k2-migrations uses it (its Alembic
support does not import with current Alembic, and its version table collapses heads).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Dialect
    from sqlalchemy.types import TypeEngine


@cache
def _dialect() -> Dialect:
    from clickhouse_sqlalchemy.drivers.base import ClickHouseDialect

    dialect: Dialect = ClickHouseDialect()
    return dialect


def render_ddl(ddl: str | Table) -> str:
    """DDL text as given, or ``CREATE TABLE`` compiled from a ``Table``."""
    if isinstance(ddl, str):
        return ddl.strip().rstrip(";")
    from sqlalchemy.schema import CreateTable

    return str(CreateTable(ddl).compile(dialect=_dialect())).strip()


def render_type(type_: str | TypeEngine[object]) -> str:
    """A ClickHouse type name, from a string or a clickhouse-sqlalchemy type object."""
    if isinstance(type_, str):
        return type_
    return str(type_.compile(dialect=_dialect()))
