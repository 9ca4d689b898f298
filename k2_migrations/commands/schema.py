"""The declared schema against the target: ``k2-migrate check --schema``.

The declared statements are normalised by a scratch engine (:mod:`k2_migrations.declared.scratch`)
and the target's databases that the declared schema names are read the same way; the two are
compared as :func:`~k2_migrations.introspection.shape.diff_schema` compares a recorded schema with
the live one, with the declared side as what is expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from k2_migrations.commands.project import Project
from k2_migrations.introspection.shape import Difference

#: Where the declared schema is when ``schema`` is not set: this folder beside alembic.ini.
DEFAULT_SCHEMA = "schema"


@dataclass(frozen=True)
class SchemaCheck:
    sources: list[str]
    databases: list[str]
    differences: list[Difference]


def schema_sources(project: Project) -> tuple[list[str], Path]:
    """The entries of the ``schema`` setting (comma-separated), and the folder they are relative to."""
    value = project.settings.schema or DEFAULT_SCHEMA
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    return entries or [DEFAULT_SCHEMA], project.settings.config_file.resolve().parent


def check_schema(project: Project) -> SchemaCheck:
    """Differences between the declared schema (expected) and the target (found)."""
    from k2_migrations.commands.session import open_session
    from k2_migrations.declared.scratch import normalise
    from k2_migrations.declared.shapes import read_databases
    from k2_migrations.declared.source import load_sources
    from k2_migrations.introspection.catalog import Catalog
    from k2_migrations.introspection.shape import diff_schema

    entries, base = schema_sources(project)
    declared = normalise(load_sources(entries, base))
    databases = set(declared.schema)
    with open_session(project) as session:
        live = read_databases(Catalog(session.client), databases)
    return SchemaCheck(entries, sorted(databases), diff_schema(declared.schema, live))
