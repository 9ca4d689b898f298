"""k2-migrations: safe, resumable schema migrations for ClickHouse, built on Alembic.

The package is laid out by architecture:

- :mod:`k2_migrations.core` is engine-neutral: the ClickHouse operations revisions use,
  row-count guards, the run lock, the journal, the version table and the run orchestration.
- :mod:`k2_migrations.backends` opens a connection to a ClickHouse server (HTTP/HTTPS) or to the
  embedded engine (chDB), both through clickhouse-connect.
- :mod:`k2_migrations.cli` is the ``k2-migrate`` command.
- :mod:`k2_migrations.k2` holds what the K2 platform's revisions in ``versions/`` share.

Nothing heavy is imported here, so ``k2-migrate --help`` stays fast.
"""

import warnings

__version__ = "0.1.0"

# clickhouse-sqlalchemy owns the clickhouse:// SQLAlchemy name and clickhouse-connect warns about it
# when its own dialect loads; k2-migrate only uses clickhousedb://, online and in --sql scripts alike.
warnings.filterwarnings("ignore", message=".*remains registered to another SQLAlchemy dialect.*")
