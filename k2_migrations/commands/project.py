"""The project: alembic.ini and the revision scripts it names, loaded with every user error as one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from k2_migrations.config import (
    DEFAULT_DDL_TIMEOUT_S,
    DEFAULT_LOCK_EXPIRY_S,
    DEFAULT_MIGRATIONS_DATABASE,
    Target,
    check_identifier,
    default_target,
    mask_secrets,
    parse_url,
)
from k2_migrations.errors import UsageError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory


def ini_defaults(path: Path, section: str, known: Iterable[str]) -> dict[str, str]:
    """``[section]`` of an ini file, as click's ``default_map``: the one way a setting is read from it.

    The CLI's ``[k2_migrate]`` (:mod:`k2_migrations.cli.app`) and the K2 revisions' ``[k2]``
    (:mod:`k2_migrations.k2.settings`) both hand this to click, which puts it under the flag and
    the environment variable and over the default. ``%(here)s`` is the file's directory, as Alembic
    reads alembic.ini. A missing file or section is no settings; a key that names no setting is
    refused, since a misspelt key would otherwise be ignored without a word.
    """
    import configparser

    here = path.resolve()
    parser = configparser.ConfigParser({"here": str(here.parent), "__file__": str(here)})
    try:
        parser.read(str(path), encoding="utf-8")  # str: the errors quote it as given
        if not parser.has_section(section):
            return {}
        values = {key: parser.get(section, key) for key in parser[section] if key not in parser.defaults()}
    except (configparser.Error, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise UsageError(f"cannot read {path}: {reason}; fix the file") from None
    names = set(known)
    for key in values:
        if key not in names:
            raise UsageError(
                f"unknown key {key!r} in [{section}] of {path}; the keys are {', '.join(sorted(names))}"
            )
    return values


@dataclass
class Settings:
    """Everything a command needs to know before it connects, resolved.

    The CLI resolves each value once, by click's precedence (flag, then environment variable, then
    ``[k2_migrate]`` of alembic.ini, then the default here; see :mod:`k2_migrations.cli.app`), so
    nothing below re-reads the environment or the ini for them. ``url`` None is the embedded engine
    beside alembic.ini. ``environ`` is for the password (``K2_MIGRATE_PASSWORD``/``_FILE``), which
    :mod:`k2_migrations.config` reads when it parses the URL.
    """

    config_file: Path = Path("alembic.ini")
    url: str | None = None
    migrations_database: str = DEFAULT_MIGRATIONS_DATABASE
    lock_timeout: float = 0.0
    lock_expiry: float = DEFAULT_LOCK_EXPIRY_S
    #: Cluster mode's cluster (None: one server); see :mod:`k2_migrations.introspection.topology`.
    cluster: str | None = None
    ddl_timeout: float = DEFAULT_DDL_TIMEOUT_S
    #: The declared schema: folders and ``package.module:MetaData`` (comma-separated), relative to
    #: alembic.ini's folder; None is ``schema/`` there (see :mod:`k2_migrations.commands.schema`).
    schema: str | None = None
    command: str = ""
    verbose: bool = False
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))


class Project:
    """alembic.ini and the revision scripts it names."""

    def __init__(self, settings: Settings) -> None:
        from alembic.config import Config

        path = settings.config_file
        if not path.is_file():
            raise UsageError(
                f"no {path} here; run k2-migrate from the project root or give -c PATH/alembic.ini"
            )
        self.settings = settings
        # stdout as it is now (Alembic binds its default when imported), so alembic.command output
        # goes where the CLI's own does.
        self.config: Config = Config(str(path), stdout=sys.stdout)
        self._script: ScriptDirectory | None = None

    # -- configuration ----------------------------------------------------------------------

    def target(self) -> Target:
        if not self.settings.url:
            # Beside the configuration, not under the working directory: the same project reaches the
            # same database from wherever it is run (``-c /path/to/alembic.ini``).
            return default_target(self.settings.config_file.resolve().parent, self.settings.environ)
        return parse_url(self.settings.url, self.settings.environ)

    @property
    def migrations_database(self) -> str:
        return check_identifier(self.settings.migrations_database, "migrations database")

    @property
    def cluster(self) -> str | None:
        """The cluster of cluster mode (quoted where SQL needs it: remote_servers names may hold ``-``)."""
        name = (self.settings.cluster or "").strip()
        return name or None

    # -- revisions ---------------------------------------------------------------------------

    @property
    def script(self) -> ScriptDirectory:
        if self._script is None:
            self._script = self._load_scripts()
        return self._script

    def _load_scripts(self) -> ScriptDirectory:
        from alembic.script import ScriptDirectory

        import k2_migrations.operations  # noqa: F401  (registers the operations on op)

        try:
            script = ScriptDirectory.from_config(self.config)
            revisions = list(script.walk_revisions())
        except SyntaxError as exc:
            raise UsageError(
                f"revision file {exc.filename}: syntax error at line {exc.lineno}: {exc.msg}; fix the file"
            ) from None
        except AttributeError as exc:
            missing = str(exc).rsplit("attribute ", 1)[-1].strip("'")
            raise UsageError(
                f"a revision file in {', '.join(self.config.get_main_option('version_locations', '').split())} has "
                f"no {missing} ({exc}); give it {missing} = None for a first revision, or its parent's id"
            ) from None
        except Exception as exc:
            raise UsageError(f"cannot load the revisions: {_alembic_message(exc)}") from None
        _refuse_package_locations(script, self.settings.config_file)
        for revision in revisions:
            module = revision.module
            for name in ("upgrade", "downgrade"):
                if not callable(getattr(module, name, None)):
                    raise UsageError(f"revision file {revision.path} has no {name}() function; add one")
        return script

    def revision(self, rev: str) -> Script:
        try:
            # The revision map's own error says "ambiguous" where ScriptDirectory's says "not found".
            resolved = self.script.revision_map.get_revision(rev)
            found = self.script.get_revision(resolved.revision) if resolved is not None else None
        except Exception as exc:
            raise UsageError(f"{_alembic_message(exc)}; k2-migrate history lists the revisions") from None
        if found is None:
            raise UsageError(f"unknown revision {rev!r}; k2-migrate history lists the revisions")
        return found

    def check_target(self, target: str) -> None:
        """Resolve a named target early, so an unknown or ambiguous id is reported as such."""
        if target in {"head", "heads", "base"} or target[:1] in {"+", "-"} or "@" in target or ":" in target:
            return
        self.revision(target)

    def single_head(self) -> str:
        heads = self.script.get_heads()
        if len(heads) > 1:
            raise UsageError(
                f"the revisions have {len(heads)} heads ({', '.join(sorted(heads))}); "
                "join them with k2-migrate merge, or name one of them"
            )
        return heads[0] if heads else "base"


#: The two files of a revision written by ``k2-migrate revision --sql``, beside it: what its upgrade()
#: and downgrade() run (``op.run_sql_file``). Alembic reads only ``*.py`` files as revisions.
SQL_FILES = ("upgrade", "downgrade")


def write_sql_files(script: Script, message: str, templates: Path) -> list[Path]:
    """Write the ``.sql`` files a revision written by ``revision --sql`` runs, from the templates in
    ``templates`` (Alembic's script_location), and return them.

    Refuses to overwrite one (possible only with a reused ``--rev-id``): the revision file just
    written is removed again, so no revision runs files it did not come with.
    """
    from alembic.util import template_to_file

    directory = Path(script.path).parent
    paths = [directory / f"{script.revision}.{function}.sql" for function in SQL_FILES]
    taken = next((path for path in paths if path.exists()), None)
    if taken is not None:
        Path(script.path).unlink()
        raise UsageError(
            f"{taken} exists; the revision was not written: remove the file or give another --rev-id"
        )
    for function, path in zip(SQL_FILES, paths, strict=True):
        template_to_file(
            templates / f"script.{function}.sql.mako",
            path,
            "utf-8",
            message=message,
            up_revision=script.revision,
        )
    return paths


def _refuse_package_locations(script: ScriptDirectory, config_file: Path) -> None:
    """Revisions belong to the project: a version location inside the installed package (Alembic's
    default when alembic.ini names none) would write them into site-packages and lose them."""
    package = Path(__file__).resolve().parents[1]
    for location in script._version_locations:
        if Path(location).resolve().is_relative_to(package):
            raise UsageError(
                f"{config_file} puts the revisions inside the installed k2_migrations package ({location}); "
                "add version_locations = %(here)s/versions under [alembic] (k2-migrate init writes one)"
            )


def _alembic_message(exc: BaseException) -> str:
    text = mask_secrets(str(exc)).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    if message.startswith("Multiple head revisions are present"):
        return "the revisions have more than one head; join them with k2-migrate merge, or name one head"
    return message
