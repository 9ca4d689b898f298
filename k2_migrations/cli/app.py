"""The ``k2-migrate`` command.

Only click is imported at module level, so ``k2-migrate --help`` answers fast; each command imports
what it uses. Every error a user can cause ends in one line on stderr (``k2-migrate: error: ...``)
and the exit code of its class (see :mod:`k2_migrations.errors`), never a traceback and never a
password. With ``--json`` the result — or the error — is a JSON document on stdout.

Every setting is one click option, and click alone decides where its value comes from: the flag,
else its environment variable (``envvar=``), else its key in ``[k2_migrate]`` of alembic.ini (the
context's ``default_map``), else the default of :class:`~k2_migrations.commands.project.Settings`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import logging

    from k2_migrations.commands.project import Project, Settings
    from k2_migrations.output.progress import Progress

#: The sections of alembic.ini that ``logging.config.fileConfig`` reads.
LOGGING_SECTIONS = ("loggers", "handlers", "formatters")
#: The driver and the HTTP library under it: their warnings are their account of a failure.
DRIVER_LOGGERS = frozenset({"clickhouse_connect", "urllib3"})


class _Main(click.Group):
    """The group, with a bad value from the environment or alembic.ini named by where it came from.

    Click words every bad value as the flag's (``Invalid value for '--lock-timeout'``) and prints
    its usage text; a value the user never typed should say which variable or file holds it.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as exc:
            param = exc.param
            if not isinstance(param, click.Option) or param.name is None:
                raise
            source = ctx.get_parameter_source(param.name)
            if source == click.core.ParameterSource.ENVIRONMENT:
                where = f"{param.envvar}"
            elif source == click.core.ParameterSource.DEFAULT_MAP:
                where = f"{param.name} in [k2_migrate] of {ctx.params.get('config_file', 'alembic.ini')}"
            else:
                raise
            raise ConfigError(f"{where}: {exc.message.rstrip('.')}; fix or remove it") from None


class ConfigError(click.ClickException):
    """A setting that cannot be used, found before any command runs: one line, exit 2 (usage).

    A click exception, so click's own handling ends the process, in place of its usual usage text.
    """

    exit_code = 2  # ExitCode.USAGE; errors.py is not imported here, where only click is

    def show(self, file: Any = None) -> None:
        from k2_migrations.cli.output import echo
        from k2_migrations.config import mask_secrets

        echo(f"k2-migrate: error: {mask_secrets(self.message)}", err=True)


def _read_config(ctx: click.Context, param: click.Parameter, path: Path) -> Path:
    """Load ``[k2_migrate]`` of the ini named by ``-c``/``K2_MIGRATE_CONFIG`` into ``ctx.default_map``.

    A callback of the eager ``-c`` option, because the ini's path is itself an option: click
    processes eager options first and looks each other option's default up in ``ctx.default_map``
    only when it processes that option, so what is loaded here sits under the flags and environment
    variables of the options that follow, with no precedence written by hand. (The group's callback
    would be too late: its options are resolved before it runs. Overriding ``make_context`` would
    have to find ``-c`` in the raw arguments itself.) No file is no settings: ``init`` has none
    yet, and the command that needs one says so.
    """
    from k2_migrations.commands.project import ini_defaults
    from k2_migrations.errors import UsageError

    settings = [p.name for p in ctx.command.params if p.expose_value and p.name and p is not param]
    try:
        ctx.default_map = ini_defaults(path, "k2_migrate", settings)
    except UsageError as exc:
        raise ConfigError(exc.message) from None
    return path


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_file",
    default="alembic.ini",
    envvar="K2_MIGRATE_CONFIG",
    show_envvar=True,
    show_default=True,
    is_eager=True,
    callback=_read_config,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The project's alembic.ini.",
)
@click.option(
    "--url",
    metavar="URL",
    envvar="K2_MIGRATE_URL",
    show_envvar=True,
    help="Target: clickhouse://user@host:8123/db, clickhouses://..., chdb:///path "
    "[default: the embedded engine in .k2-migrate/chdb beside alembic.ini].",
)
@click.option(
    "--migrations-database",
    metavar="DB",
    envvar="K2_MIGRATE_DATABASE",
    show_envvar=True,
    help="Database of the version table, journal and lock [default: k2_migrations].",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    envvar="K2_MIGRATE_LOCK_TIMEOUT",
    show_envvar=True,
    help="Wait this long for another run's lock [default: 0, fail at once].",
)
@click.option(
    "--lock-expiry",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    envvar="K2_MIGRATE_LOCK_EXPIRY",
    show_envvar=True,
    help="A lock holder this long without a heartbeat counts as dead [default: 60].",
)
@click.option(
    "--cluster",
    metavar="NAME",
    envvar="K2_MIGRATE_CLUSTER",
    show_envvar=True,
    help="Cluster mode: DDL goes ON CLUSTER NAME to every host (not inside Replicated databases, "
    "not on ClickHouse Cloud); the migrations tables are replicated [default: one server].",
)
@click.option(
    "--ddl-timeout",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    envvar="K2_MIGRATE_DDL_TIMEOUT",
    show_envvar=True,
    help="Cluster mode: how long an ON CLUSTER statement waits for every host [default: 300].",
)
@click.option(
    "--schema-dir",
    "schema",
    metavar="PATH",
    envvar="K2_MIGRATE_SCHEMA",
    show_envvar=True,
    help="The declared schema (check --schema): folders of .sql files and package.module:metadata, "
    "comma-separated, relative to alembic.ini [default: schema/ beside alembic.ini].",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    envvar="K2_MIGRATE_VERBOSE",
    show_envvar=True,
    help="Log every statement sent, with its duration (the k2_migrations.sql logger at INFO).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    envvar="K2_MIGRATE_QUIET",
    show_envvar=True,
    help="Print only errors and what was asked for (--json documents, log, current).",
)
@click.version_option(package_name="k2-migrations")
@click.pass_context
def main(
    ctx: click.Context,
    config_file: Path,
    url: str | None,
    migrations_database: str | None,
    lock_timeout: float | None,
    lock_expiry: float | None,
    cluster: str | None,
    ddl_timeout: float | None,
    schema: str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """Safe, resumable schema migrations for ClickHouse, on Alembic.

    Each setting is a flag, an environment variable or a key in the [k2_migrate] section of
    alembic.ini, first found wins. With no target, the embedded engine in .k2-migrate/chdb is used.
    Passwords may come from K2_MIGRATE_PASSWORD or K2_MIGRATE_PASSWORD_FILE instead of the URL.

    Exit codes: 0 ok, 2 usage, 3 connection, 4 lock held, 5 guard failed, 6 SQL failed,
    7 revision in progress, 8 drift, 130 interrupted.
    """
    configure_logging(ctx, config_file, verbose)
    ctx.obj = {
        "config_file": config_file,
        "url": url,
        "migrations_database": migrations_database,
        "lock_timeout": lock_timeout,
        "lock_expiry": lock_expiry,
        "cluster": cluster,
        "ddl_timeout": ddl_timeout,
        "schema": schema,
        "verbose": verbose,
        "quiet": quiet,
        "command": " ".join(["k2-migrate", *sys.argv[1:]]),
    }


def configure_logging(ctx: click.Context, config_file: Path, verbose: bool) -> None:
    """Set up the standard logging once per process, from alembic.ini when it has the sections.

    ``fileConfig`` with ``disable_existing_loggers=False``: the loggers of libraries imported
    before it must keep working. A program that configured logging before calling ``main()``
    (root has handlers) keeps its own configuration, as does a second ``main()`` in one process.
    Without the sections: WARNING and above on stderr, as the shipped alembic.ini has it.

    The handlers configured here (root's) mask passwords in every record and drop the warnings and
    errors of the driver (``clickhouse_connect``) and of urllib3 under it: each is their account of
    a failure that reaches the user as k2-migrate's one-line error, some with a traceback. A filter
    on our handlers and not a level on their loggers, so their records still reach any handler of
    their own: one the ini gives ``qualname = clickhouse_connect``, or a host program's.

    ``-v`` lowers the ``k2_migrations.sql`` logger to INFO for this command (never raises it: an
    ini at DEBUG keeps DEBUG), and puts it back when the command ends.
    """
    import logging
    import logging.config

    root = logging.getLogger()
    if not root.handlers:
        sections = _logging_sections(config_file)
        if sections:
            path = config_file.resolve()
            try:
                logging.config.fileConfig(
                    path,
                    defaults={"here": str(path.parent), "__file__": str(path)},
                    disable_existing_loggers=False,
                )
            # fileConfig evaluates handler arguments and imports handler classes: any exception.
            except Exception as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise ConfigError(
                    f"cannot configure logging from {config_file}: {reason}; fix its [loggers] sections"
                ) from None
        else:
            logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        for handler in root.handlers:
            handler.addFilter(_shown)
    if verbose:
        sql = logging.getLogger("k2_migrations.sql")
        if sql.getEffectiveLevel() > logging.INFO:
            level = sql.level
            sql.setLevel(logging.INFO)
            ctx.call_on_close(lambda: sql.setLevel(level))


def _logging_sections(config_file: Path) -> bool:
    """Whether the ini configures logging; all three sections or none, else a one-line error."""
    import configparser

    # Parsed before, by _read_config: a file that reached here reads without an error.
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(config_file, encoding="utf-8")
    present = [name for name in LOGGING_SECTIONS if parser.has_section(name)]
    if present and len(present) < len(LOGGING_SECTIONS):
        missing = ", ".join(f"[{name}]" for name in LOGGING_SECTIONS if name not in present)
        raise ConfigError(
            f"{config_file} configures logging but has no {missing}; add it (k2-migrate init writes all three)"
        )
    return bool(present)


def _shown(record: logging.LogRecord) -> bool:
    """What the CLI's handlers let through (see :func:`configure_logging`): passwords masked."""
    import logging

    from k2_migrations.config import mask_secrets
    from k2_migrations.output.progress import end_open_bar

    if record.name.partition(".")[0] in DRIVER_LOGGERS and record.levelno >= logging.WARNING:
        return False
    record.msg, record.args = mask_secrets(record.getMessage()), ()
    if record.exc_info:
        record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
    end_open_bar()  # the line is about to be written: never onto a progress bar's line
    return True


def project_of(ctx: click.Context) -> Project:
    """The project, with the settings click resolved (an unset one takes Settings' default)."""
    from k2_migrations.commands.project import Project

    return Project(settings_of(ctx))


def settings_of(ctx: click.Context) -> Settings:
    """The settings click resolved, without loading the project (which imports Alembic)."""
    from k2_migrations.commands.project import Settings

    o = ctx.find_root().obj
    given: dict[str, Any] = {
        key: o[key]
        for key in (
            "url",
            "migrations_database",
            "lock_timeout",
            "lock_expiry",
            "cluster",
            "ddl_timeout",
            "schema",
        )
        if o[key] is not None
    }
    return Settings(config_file=o["config_file"], command=o["command"], verbose=o["verbose"], **given)


def progress_of(ctx: click.Context) -> Progress:
    from k2_migrations.output.progress import Progress

    return Progress(quiet=bool(ctx.find_root().obj["quiet"]))


json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of text.")
sql_option = click.option("--sql", is_flag=True, help="Print the SQL script (offline mode); touch nothing.")


# ignore_unknown_options: relative revisions such as -1 are arguments, not options.
relative = {"ignore_unknown_options": True}
