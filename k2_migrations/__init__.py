"""k2-migrations: safe, resumable schema migrations for ClickHouse, built on Alembic.

The package is laid out by architecture, each layer importing only those below it
(docs/architecture.md draws it):

- :mod:`~k2_migrations.cli` — the ``k2-migrate`` command: options, one-line errors, output.
- :mod:`~k2_migrations.commands` — what each command does over Alembic: migrate, plan, stamp, check.
- :mod:`~k2_migrations.operations` — the ClickHouse operations revisions call on ``op``.
- :mod:`~k2_migrations.engine` — the step executor: runs, journals and resumes each operation.
- :mod:`~k2_migrations.state` — k2-migrate's own state: version record, journal, snapshots, lock.
- :mod:`~k2_migrations.introspection` — reading the live schema from system tables.
- :mod:`~k2_migrations.sqltext` — SQL text through a real tokenizer; quoting; DDL rendering.
- :mod:`~k2_migrations.output` — progress, the run summary, JSON documents.
- :mod:`~k2_migrations.backends` — opening a server or the embedded engine (chDB).
- :mod:`~k2_migrations.authoring` — lint and the stairway test, for people writing revisions.
- :mod:`~k2_migrations.k2` — the K2 platform's own code; nothing generic imports it.

Nothing heavy is imported here, so ``k2-migrate --help`` stays fast.
"""

import warnings

__version__ = "0.1.0"

# clickhouse-sqlalchemy owns the clickhouse:// SQLAlchemy name and clickhouse-connect warns about it
# when its own dialect loads; k2-migrate only uses clickhousedb://, online and in --sql scripts alike.
warnings.filterwarnings("ignore", message=".*remains registered to another SQLAlchemy dialect.*")
