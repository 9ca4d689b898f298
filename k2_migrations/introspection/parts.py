"""What a copy of a table reads of its parts and columns: from ``system.parts`` (no scan) and the catalog."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k2_migrations.introspection.catalog import Catalog, TableInfo


def parts_after(catalog: Catalog, database: str, table: str, block: int) -> list[tuple[str, int, int, str]]:
    """(partition id, max block, rows, name) of the active parts holding blocks above ``block``."""
    rows = catalog.rows(
        "SELECT partition_id, max_block_number, rows, name FROM system.parts WHERE database = {d:String}"
        " AND table = {t:String} AND active AND max_block_number > {b:Int64} ORDER BY partition_id, name",
        {"d": database, "t": table, "b": block},
    )
    return [(str(p), int(m), int(r), str(n)) for p, m, r, n in rows]


def block_ranges(catalog: Catalog, database: str, table: str) -> list[tuple[str, int, int]]:
    """(partition id, lowest block, highest block) of each partition's active parts."""
    rows = catalog.rows(
        "SELECT partition_id, min(min_block_number), max(max_block_number) FROM system.parts"
        " WHERE database = {d:String} AND table = {t:String} AND active GROUP BY partition_id"
        " ORDER BY partition_id",
        {"d": database, "t": table},
    )
    return [(str(p), int(low), int(high)) for p, low, high in rows]


def partition_counts(catalog: Catalog, database: str, table: str) -> dict[str, int]:
    """Rows per partition id, from the active parts' metadata (exact where merges cannot collapse rows,
    or are stopped)."""
    rows = catalog.rows(
        "SELECT partition_id, sum(rows) FROM system.parts WHERE database = {d:String} AND table = {t:String}"
        " AND active GROUP BY partition_id",
        {"d": database, "t": table},
    )
    return {str(p): int(n) for p, n in rows}


def partitioned_alike(catalog: Catalog, database: str, one: TableInfo, other: TableInfo) -> bool:
    """Whether two tables of ``database`` put a row in partitions of the same id: the same partition
    key over columns of the same names and types (a partition id is the key's value, or a hash of
    its binary form)."""
    if one.partition_key != other.partition_key:
        return False
    rows = catalog.rows(
        "SELECT table, groupArray((name, type)) FROM (SELECT table, name, type FROM system.columns"
        " WHERE database = {d:String} AND table IN {t:Array(String)} AND is_in_partition_key ORDER BY name)"
        " GROUP BY table",
        {"d": database, "t": [one.name, other.name]},
    )
    keys = {str(table): [tuple(c) for c in columns] for table, columns in rows}
    return keys.get(one.name) == keys.get(other.name)


def common_columns(catalog: Catalog, database: str, source: str, target: str) -> list[str]:
    """The target's stored columns that the source has too, in the target's order."""
    columns = catalog.columns_by_table(database, [source, target])
    present = {c.name for c in columns.get(source, [])}
    return [
        c.name
        for c in columns.get(target, [])
        if c.name in present and c.default_kind not in ("MATERIALIZED", "ALIAS")
    ]
