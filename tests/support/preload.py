"""What the fork servers (:mod:`tests.support.fork_server`, :mod:`tests.support.walk_server`) import
once before they fork a ``k2-migrate`` process per request: most of a short command's start.

Never chDB itself: a child whose parent had loaded chDB hangs opening its engine, so each child
loads it.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings

#: Imported with every module of the packages in ``PRELOAD_PACKAGES`` (found by package, so that the
#: list follows the code).
PRELOAD = (
    "alembic.command",
    "alembic.config",
    "alembic.runtime.environment",
    "clickhouse_connect.cc_sqlalchemy.alembic",
    "clickhouse_connect.cc_sqlalchemy.dialect",
    "pyarrow.lib",  # chDB's heaviest dependency: loading it in the server is safe, chDB itself is not
    "k2_migrations.cli",
    "k2_migrations.output.report",
)

PRELOAD_PACKAGES = (
    "k2_migrations.backends",
    "k2_migrations.commands",
    "k2_migrations.engine",
    "k2_migrations.introspection",
    "k2_migrations.operations",
    "k2_migrations.state",
)


def preload() -> None:
    """Import once what every run would import."""
    warnings.filterwarnings("ignore", message=".*remains registered to another SQLAlchemy dialect.*")
    for name in PRELOAD:
        importlib.import_module(name)
    for package in PRELOAD_PACKAGES:
        for module in pkgutil.iter_modules(importlib.import_module(package).__path__, f"{package}."):
            importlib.import_module(module.name)
