"""The ``k2-migrate`` command.

Only click is imported at module level, so ``k2-migrate --help`` answers fast; each command imports
what it uses. Every error a user can cause ends in one line on stderr (``k2-migrate: error: ...``)
and the exit code of its class (see :mod:`k2_migrations.errors`), never a traceback and never a
password. With ``--json`` the result — or the error — is a JSON document on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from k2_migrations.commands.project import Project
    from k2_migrations.output.progress import Progress


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url", metavar="URL", help="Target: clickhouse://user@host:8123/db, clickhouses://..., chdb:///path."
)
@click.option(
    "-c",
    "--config",
    "config_file",
    default="alembic.ini",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The project's alembic.ini.",
)
@click.option("--migrations-database", metavar="DB", help="Database of the version table, journal and lock.")
@click.option(
    "--lock-timeout",
    type=float,
    metavar="SECONDS",
    help="Wait this long for another run's lock (default: fail at once).",
)
@click.option("-v", "--verbose", is_flag=True, help="Print every statement as it runs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
@click.version_option(package_name="k2-migrations")
@click.pass_context
def main(
    ctx: click.Context,
    url: str | None,
    config_file: Path,
    migrations_database: str | None,
    lock_timeout: float | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """Safe, resumable schema migrations for ClickHouse, on Alembic.

    The target comes from --url, K2_MIGRATE_URL, or url in the [k2_migrate] section of alembic.ini;
    with none, the embedded engine in .k2-migrate/chdb is used. Passwords may come from
    K2_MIGRATE_PASSWORD or K2_MIGRATE_PASSWORD_FILE instead of the URL.

    Exit codes: 0 ok, 2 usage, 3 connection, 4 lock held, 5 guard failed, 6 SQL failed,
    7 revision in progress, 8 drift, 130 interrupted.
    """
    ctx.obj = {
        "url": url,
        "config_file": config_file,
        "migrations_database": migrations_database,
        "lock_timeout": lock_timeout,
        "verbose": verbose,
        "quiet": quiet,
        "command": " ".join(["k2-migrate", *sys.argv[1:]]),
    }


def project_of(ctx: click.Context) -> Project:
    from k2_migrations.commands.project import Project, Settings

    o = ctx.obj
    return Project(
        Settings(
            config_file=o["config_file"],
            url=o["url"],
            migrations_database=o["migrations_database"],
            lock_timeout=o["lock_timeout"],
            command=o["command"],
            verbose=o["verbose"],
        )
    )


def progress_of(ctx: click.Context) -> Progress:
    from k2_migrations.output.progress import Progress

    return Progress(quiet=bool(ctx.obj["quiet"]))


json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of text.")
sql_option = click.option("--sql", is_flag=True, help="Print the SQL script (offline mode); touch nothing.")


# ignore_unknown_options: relative revisions such as -1 are arguments, not options.
relative = {"ignore_unknown_options": True}
