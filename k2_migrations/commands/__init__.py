"""The commands behind the CLI: migrate, plan, stamp, offline SQL and check, each over Alembic."""
