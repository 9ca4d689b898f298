"""Reading the objects of a declared schema's databases as both sides are compared: shapes, inner tables named.

A materialized view without ``TO`` stores its rows in an inner table named after the view's UUID
(``.inner_id.<uuid>``), which differs between any two engines that created the same view. Both the
scratch engine and the target are read through :func:`read_databases`, which names each inner table
after its view (``.inner.<view>``, as Ordinary databases do), so the inner tables are compared too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from k2_migrations.introspection.shape import Shape, read_schema

if TYPE_CHECKING:
    from k2_migrations.introspection.catalog import Catalog

INNER_ID = ".inner_id."
INNER = ".inner."


def read_databases(catalog: Catalog, databases: set[str]) -> dict[str, dict[str, Shape] | None]:
    """The shapes of every object of ``databases`` (None: no such database), inner tables by view."""
    schema = read_schema(catalog, databases)
    for database, shapes in schema.items():
        if shapes is not None and any(name.startswith(INNER_ID) for name in shapes):
            owners = {
                str(uuid): str(name)
                for name, uuid in catalog.rows(
                    "SELECT name, toString(uuid) FROM system.tables"
                    " WHERE database = {d:String} AND engine = 'MaterializedView'",
                    {"d": database},
                )
            }
            schema[database] = {_inner_name(name, owners): shape for name, shape in shapes.items()}
    return schema


def _inner_name(name: str, owners: dict[str, str]) -> str:
    if not name.startswith(INNER_ID):
        return name
    owner = owners.get(name.removeprefix(INNER_ID))
    return INNER + owner if owner is not None else name
