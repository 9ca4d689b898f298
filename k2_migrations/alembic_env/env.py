"""Alembic's env.py for k2-migrations: attaches the k2-migrate runtime to the migration context.

``k2-migrate`` drives Alembic itself and puts what this file needs in
``config.attributes["k2_run"]``: the open connection, the runtime that executes and journals
operations, and the database that holds the version table.
"""

from __future__ import annotations

from typing import Any

import clickhouse_connect.cc_sqlalchemy.alembic  # noqa: F401  (registers the clickhousedb Alembic impl)
from alembic import context

import k2_migrations.core.operations  # noqa: F401  (registers the ClickHouse operations on op)

run: dict[str, Any] = context.config.attributes.get("k2_run", {})
options: dict[str, Any] = {
    "version_table_schema": run.get("version_table_schema"),
    "transactional_ddl": False,
    "k2_runtime": run.get("runtime"),
}
if run.get("on_version_apply"):
    options["on_version_apply"] = run["on_version_apply"]

if context.is_offline_mode():
    context.configure(dialect_name="clickhousedb", literal_binds=True, **options)
    context.run_migrations()
else:
    context.configure(connection=run["connection"], **options)
    context.run_migrations()
