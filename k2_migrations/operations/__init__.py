"""The ClickHouse operations revision authors call on Alembic's ``op``, registered here in one place.

Importing this package registers every operation on ``alembic.op``::

    op.create_database("k2")
    op.move_table("default", "bronze_trades_binance", "k2")
    op.run_mutation("k2", "ohlcv_1m", "UPDATE window_end = ... WHERE ...", done_when="...")

One module per family (databases and objects, moves, columns, mutations, guards and checks,
adoption, plain SQL files, views, table rebuilds, table settings/comment/sorting key), each operation one object that describes, renders, applies, replays and reverses itself
(see :mod:`k2_migrations.operations.base`). Names that Alembic's own ``op`` already uses for SQL
databases (``add_column``, ``execute``) are not overridden: the ClickHouse versions are
``add_column_if_missing`` and ``execute_sql``.
"""

from k2_migrations.operations import (
    adoption,
    columns,
    guards,
    moves,
    mutations,
    objects,
    rebuild,
    settings,
    sqlfile,
    structure,
    views,
)
from k2_migrations.operations.base import ClickHouseOperation

__all__ = [
    "ClickHouseOperation",
    "adoption",
    "columns",
    "guards",
    "moves",
    "mutations",
    "objects",
    "rebuild",
    "settings",
    "sqlfile",
    "structure",
    "views",
]
