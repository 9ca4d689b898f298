"""Alembic's env.py for k2-migrations: attaches the k2-migrate runtime to the migration context.

``k2-migrate`` drives Alembic itself and puts what this file needs in
a :class:`~k2_migrations.engine.context.RunContext`: the open connection, the step executor that
runs and journals operations, and the database that holds the version state. Importing
:mod:`k2_migrations.state.versions` registers the Alembic impl that keeps the version state
append-only; :func:`~k2_migrations.state.versions.record_step` writes each step's change of
heads (the commit point of a revision) before the runtime closes the revision in the journal.
"""

from __future__ import annotations

import sys
from typing import Any

from alembic import context

import k2_migrations.operations  # noqa: F401  (registers the ClickHouse operations on op)
from k2_migrations.engine.context import attached
from k2_migrations.state.versions import record_step

run = attached(context.config)
if run is None:
    # Alembic's own command line: it would run revisions without the lock, the journal or the
    # guards. The version state is the same, but the run must go through k2-migrate.
    sys.exit(
        "this project's revisions run through k2-migrate (the lock, journal and guards live there): "
        "use k2-migrate with the same arguments, e.g. k2-migrate current, k2-migrate upgrade head"
    )
options: dict[str, Any] = {
    "version_table_schema": run.version_table_schema,
    "transactional_ddl": False,
    "k2_runtime": run.runtime,
    "k2_cluster": run.cluster,
    "on_version_apply": [record_step, *([run.on_version_apply] if run.on_version_apply else [])],
}

if context.is_offline_mode():
    context.configure(dialect_name="clickhousedb", literal_binds=True, **options)
else:
    context.configure(connection=run.connection, **options)
context.run_migrations()
