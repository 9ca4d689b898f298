"""Alembic's env.py for k2-migrations: attaches the k2-migrate runtime to the migration context.

``k2-migrate`` drives Alembic itself and puts what this file needs in
``config.attributes["k2_run"]``: the open connection, the runtime that executes and journals
operations, and the database that holds the version state. Importing
:mod:`k2_migrations.core.versions_table` registers the Alembic impl that keeps the version state
append-only; :func:`~k2_migrations.core.versions_table.record_step` writes each step's change of
heads (the commit point of a revision) before the runtime closes the revision in the journal.
"""

from __future__ import annotations

from typing import Any

from alembic import context

import k2_migrations.core.operations  # noqa: F401  (registers the ClickHouse operations on op)
from k2_migrations.core.versions_table import record_step

run: dict[str, Any] = context.config.attributes.get("k2_run", {})
options: dict[str, Any] = {
    "version_table_schema": run.get("version_table_schema"),
    "transactional_ddl": False,
    "k2_runtime": run.get("runtime"),
    "on_version_apply": [record_step, *([run["on_version_apply"]] if run.get("on_version_apply") else [])],
}

if context.is_offline_mode():
    context.configure(dialect_name="clickhousedb", literal_binds=True, **options)
    context.run_migrations()
else:
    context.configure(connection=run["connection"], **options)
    context.run_migrations()
