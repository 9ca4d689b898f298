"""``k2-migrate init [DIR]``: a new project, an alembic.ini and an empty versions/, nothing else.

The ini is written from the text below rather than copied from Alembic's templates (``alembic
init``): those write an env.py and a script.py.mako into the project, where k2-migrate's must come
from the package (``script_location = k2_migrations:alembic_env``), and they know nothing of the
``[k2_migrate]`` settings.
"""

from __future__ import annotations

from pathlib import Path

import click

from k2_migrations.cli.output import handled, summary, usage_error

ALEMBIC_INI = """\
# A k2-migrations project: Alembic's configuration and k2-migrate's settings.
# k2-migrate revision -m "..." writes a revision into versions/; k2-migrate upgrade head applies them.

[alembic]
# Alembic's env.py and the revision template, from the k2-migrations package: they run each revision
# under k2-migrate's lock and journal. Not a directory of this project.
script_location = k2_migrations:alembic_env
# Where the revisions live: versions/ beside this file, wherever k2-migrate is run from.
version_locations = %(here)s/versions
# How a new revision's file is named: r, its id, then the message as a slug ("%%" is a literal "%").
file_template = r%%(rev)s_%%(slug)s
truncate_slug_length = 40
# version_locations is split on the operating system's path separator.
path_separator = os

[k2_migrate]
# k2-migrate's settings, each commented out at its default. A flag (before the command) or the
# environment variable named wins over the key here.
#
# Where to connect (--url, K2_MIGRATE_URL). Unset: the embedded engine in .k2-migrate/chdb beside
# this file. Keep passwords out of it: K2_MIGRATE_PASSWORD or K2_MIGRATE_PASSWORD_FILE.
# url = clickhouse://migrator@localhost:8123/default
#
# The database of the version record, the journal, the snapshots and the lock
# (--migrations-database, K2_MIGRATE_DATABASE).
# migrations_database = k2_migrations
#
# Seconds to wait for another run's lock; 0 fails at once (--lock-timeout, K2_MIGRATE_LOCK_TIMEOUT).
# lock_timeout = 0
#
# Seconds without a heartbeat after which a lock's holder counts as dead and its lock may be
# broken (--lock-expiry, K2_MIGRATE_LOCK_EXPIRY).
# lock_expiry = 60
#
# Cluster mode (--cluster, K2_MIGRATE_CLUSTER): DDL goes ON CLUSTER to every host and the migrations
# tables are replicated; how long each ON CLUSTER statement waits for every host (--ddl-timeout,
# K2_MIGRATE_DDL_TIMEOUT). See docs/clusters.md.
# cluster = my_cluster
# ddl_timeout = 300
#
# The declared schema that check --schema compares the target with (--schema-dir, K2_MIGRATE_SCHEMA):
# folders of .sql files and package.module:metadata entries, comma-separated. See docs/declared-schema.md.
# schema = schema
#
# Log every statement sent with its duration (-v, K2_MIGRATE_VERBOSE); no progress lines (-q,
# K2_MIGRATE_QUIET).
# verbose = false
# quiet = false

# Logging, read by Python's logging.config.fileConfig. -v sets the k2_migrations.sql logger to
# INFO: one line per statement, passwords masked. level = DEBUG on the root logger also logs each
# statement in full before it is sent, and what Alembic and the other libraries log.
[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)s %(name)s: %(message)s
"""


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@handled()
def init(directory: Path) -> None:
    """Start a new project: alembic.ini and versions/.

    DIRECTORY defaults to here: an alembic.ini with every key explained and an empty versions/. Refuses to overwrite an alembic.ini or a versions/ that holds anything.
    """
    ini = directory / "alembic.ini"
    versions = directory / "versions"
    if ini.exists():
        raise usage_error(f"{ini} exists; k2-migrate init starts a new project, in an empty directory")
    if versions.is_dir() and any(versions.iterdir()):
        raise usage_error(
            f"{versions} holds files; k2-migrate init starts a new project, in an empty directory"
        )
    if versions.exists() and not versions.is_dir():
        raise usage_error(f"{versions} is a file; k2-migrate init needs a versions/ directory there")
    try:
        versions.mkdir(parents=True, exist_ok=True)
        with ini.open("x", encoding="utf-8") as out:
            out.write(ALEMBIC_INI)
    except OSError as exc:
        raise usage_error(f"cannot create the project in {directory}: {exc.strerror or exc}") from None
    summary(f"created {ini} and {versions}/")
    summary(f'next: cd {directory} && k2-migrate revision -m "first revision", then k2-migrate upgrade head')
