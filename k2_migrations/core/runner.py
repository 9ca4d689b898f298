"""Running commands: the project's revisions, an open session, and Alembic underneath.

:class:`Project` is alembic.ini plus the revision scripts it points at, loaded with every user error
(unknown or ambiguous revision, syntax error, missing ``down_revision``, a cycle, two heads) turned
into one line. :class:`Session` is an open connection with the migrations database (version table,
journal, snapshots, lock). :func:`migrate` runs an upgrade or downgrade through Alembic's
EnvironmentContext with the runtime attached, after taking the lock and settling what an earlier
crash left behind.
"""

from __future__ import annotations

import getpass
import io
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2_migrations.config import (
    DEFAULT_MIGRATIONS_DATABASE,
    Target,
    check_identifier,
    default_target,
    mask_secrets,
    parse_url,
)
from k2_migrations.errors import InProgress, K2MigrateError, UsageError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext, MigrationStep
    from alembic.script import Script, ScriptDirectory

    from k2_migrations.backends import Backend
    from k2_migrations.core.journal import Attempt, Identity, Journal
    from k2_migrations.core.lock import MigrationLock
    from k2_migrations.core.runtime import Progress, Runtime
    from k2_migrations.core.snapshots import Snapshots

StepsFn = Callable[[Any, "MigrationContext"], Iterable["MigrationStep"]]


@dataclass
class Settings:
    """Everything a command needs to know before it connects."""

    config_file: Path = Path("alembic.ini")
    url: str | None = None
    migrations_database: str | None = None
    lock_timeout: float | None = None
    lock_expiry: float | None = None
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
        self.config: Config = Config(str(path))
        self.section: dict[str, str] = self.config.get_section("k2_migrate", {}) or {}
        self._script: ScriptDirectory | None = None

    # -- configuration ----------------------------------------------------------------------

    def target(self) -> Target:
        env = self.settings.environ
        url = self.settings.url or env.get("K2_MIGRATE_URL") or self.section.get("url") or None
        if not url:
            # Beside the configuration, not under the working directory: the same project reaches the
            # same database from wherever it is run (``-c /path/to/alembic.ini``).
            return default_target(self.settings.config_file.resolve().parent, env)
        return parse_url(url, env)

    @property
    def migrations_database(self) -> str:
        name = (
            self.settings.migrations_database
            or self.settings.environ.get("K2_MIGRATE_DATABASE")
            or self.section.get("migrations_database")
            or DEFAULT_MIGRATIONS_DATABASE
        )
        return check_identifier(name, "migrations database")

    def number(self, key: str, given: float | None, default: float) -> float:
        if given is not None:
            return given
        raw = self.section.get(key)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise UsageError(
                f"{key} = {raw!r} in [k2_migrate] of {self.settings.config_file} is not a number"
            ) from None

    # -- revisions ---------------------------------------------------------------------------

    @property
    def script(self) -> ScriptDirectory:
        if self._script is None:
            self._script = self._load_scripts()
        return self._script

    def _load_scripts(self) -> ScriptDirectory:
        from alembic.script import ScriptDirectory

        import k2_migrations.core.operations  # noqa: F401  (registers the operations on op)

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


class Session:
    """An open connection and the migrations database's tables on it."""

    def __init__(self, project: Project, backend: Backend) -> None:
        from k2_migrations.core.journal import Journal
        from k2_migrations.core.snapshots import Snapshots

        self.project = project
        self.backend = backend
        self.database = project.migrations_database
        self.identity = _identity(backend, project.settings.command)
        self.journal: Journal = Journal(backend.client, self.database, self.identity)
        self.snapshots: Snapshots = Snapshots(backend.client, self.database)

    @property
    def client(self) -> Any:
        return self.backend.client

    def ensure_metadata(self) -> None:
        from clickhouse_connect.driver.exceptions import DatabaseError

        try:
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            self.journal.ensure()
            self.snapshots.ensure()
        except DatabaseError as exc:
            raise _privilege_error(exc, f"create the migrations database {self.database}") from None

    def lock(self) -> MigrationLock:
        from k2_migrations.core.lock import DEFAULT_EXPIRY_S, MigrationLock

        return MigrationLock(
            self.client,
            self.database,
            self.identity,
            embedded=self.backend.target.embedded,
            expiry_s=self.project.number("lock_expiry", self.project.settings.lock_expiry, DEFAULT_EXPIRY_S),
            client_factory=self.backend.new_client,
        )

    def heads(self) -> tuple[str, ...]:
        """The applied heads as the engine reports them."""
        from k2_migrations.core.versions_table import read_heads

        return read_heads(self.client, self.database)

    def ensure_version_state(self, attempt: Attempt | None) -> tuple[str, ...]:
        """Create the version state (adopting a previous release's table) under the lock; the heads."""
        from k2_migrations.core.versions_table import ensure_version_state

        return ensure_version_state(self.client, self.database, self.project.script, attempt, self.identity)


@contextmanager
def open_session(project: Project, *, wait: bool = True) -> Iterator[Session]:
    """Open the target; with ``wait``, an embedded path another run has open is waited for as
    long as the lock is (``--lock-timeout``): both mean another run is using the database."""
    from k2_migrations.backends import open_backend

    settings = project.settings
    backend = open_backend(
        project.target(),
        wait_s=project.number("lock_timeout", settings.lock_timeout, 0.0) if wait else 0.0,
        command=settings.command,
        verbose=settings.verbose,
    )
    try:
        yield Session(project, backend)
    finally:
        backend.close()


def _identity(backend: Backend, command: str) -> Identity:
    from k2_migrations.core.journal import Identity

    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):
        os_user = str(os.getuid())
    db_user = backend.target.username if not backend.target.embedded else "embedded"
    # Masked here, once: the lock's rows (a table or Keeper) hold the command line as well as the journal.
    return Identity(
        os_user=os_user,
        db_user=db_user,
        host=socket.gethostname(),
        pid=os.getpid(),
        command=mask_secrets(command),
    )


def _privilege_error(exc: BaseException, doing: str) -> K2MigrateError:
    from k2_migrations.errors import ConnectionFailed, SqlFailed

    text = mask_secrets(str(exc))
    if "ACCESS_DENIED" in text or "Code: 497" in text or "Not enough privileges" in text:
        needed = text.split("you need ", 1)[1].split(")")[0] + ")" if "you need " in text else "a grant"
        return ConnectionFailed(f"the migration user may not {doing}: it needs {needed}; see docs/safety.md")
    return SqlFailed(f"cannot {doing}: {_alembic_message(exc)}")


# -- upgrade, downgrade, stamp ---------------------------------------------------------------------


@dataclass
class RunResult:
    """What a run did, for the summary and ``--json``."""

    command: str
    target: str
    url: str
    heads_before: tuple[str, ...]
    heads_after: tuple[str, ...]
    runtime: Runtime
    elapsed_s: float
    lock_broken: str | None = None
    reverted: str | None = None


def migrate(project: Project, direction: str, target: str, progress: Progress) -> RunResult:
    """Upgrade or downgrade to ``target`` under the lock, resuming or reverting an interrupted run."""
    from k2_migrations.core.runtime import Runtime

    script = project.script
    project.check_target(target)
    started = time.perf_counter()
    with open_session(project) as session:
        session.ensure_metadata()
        lock = session.lock()
        lock.acquire(project.number("lock_timeout", project.settings.lock_timeout, 0.0))
        runtime = Runtime(
            client=session.client,
            journal=session.journal,
            snapshots=session.snapshots,
            lock=lock,
            progress=progress,
            client_factory=session.backend.new_client,
        )
        runtime.verbose = project.settings.verbose
        heads_before: tuple[str, ...] = ()
        heads_after: tuple[str, ...] = ()
        try:
            attempt = session.journal.in_progress()
            heads_before = session.ensure_version_state(attempt)
            attempt = _settle(runtime, attempt, heads_before)
            steps = _steps_fn(script, direction, target)
            with runtime.interruptible():
                _run_alembic(
                    project, session, runtime, _instrument(project, runtime, steps, attempt, direction)
                )
            heads_after = session.heads()
            record_schema(session, runtime.databases, heads_after)
        finally:
            runtime.restart_all_merges()
            lock.release()
    return RunResult(
        command=direction,
        target=target,
        url=session.backend.target.display(),
        heads_before=heads_before,
        heads_after=heads_after,
        runtime=runtime,
        elapsed_s=time.perf_counter() - started,
        lock_broken=lock.broken_stale.describe() if lock.broken_stale else None,
    )


def _heads_key(heads: tuple[str, ...]) -> str:
    return ",".join(sorted(heads)) or "base"


def record_schema(session: Session, databases: set[str], heads: tuple[str, ...]) -> None:
    """Record the schema the revisions left, so ``check`` can tell drift from it later.

    Covers the databases this run touched and those the previous record covered: a database a
    downgrade dropped is recorded as absent.
    """
    import json

    from k2_migrations.core.catalog import Catalog
    from k2_migrations.core.shape import read_schema, shape_to_json

    previous = session.snapshots.recorded_schema()
    covered = databases | (set(json.loads(previous)) if previous else set())
    covered.discard(session.database)
    schema = read_schema(Catalog(session.client), covered)
    document = {
        db: None if shapes is None else {name: shape_to_json(shape) for name, shape in shapes.items()}
        for db, shapes in schema.items()
    }
    session.snapshots.record_schema(_heads_key(heads), session.journal.run_id, json.dumps(document))


def check(project: Project) -> tuple[str, list[str]]:
    """Compare the live schema with the one recorded when the current revision was applied."""
    import json

    from k2_migrations.core.catalog import Catalog
    from k2_migrations.core.shape import diff_schema, read_schema, shape_from_json

    with open_session(project) as session:
        heads = session.heads()
        key = _heads_key(heads)
        recorded = session.snapshots.recorded_schema(key) if session.journal.exists() else None
        if recorded is None:
            raise UsageError(
                f"no schema was recorded for revision {key} (stamped, or applied before k2-migrate recorded "
                "schemas); k2-migrate check compares against what an upgrade or downgrade left"
            )
        data = json.loads(recorded)
        expected = {
            db: None if shapes is None else {name: shape_from_json(s) for name, s in shapes.items()}
            for db, shapes in data.items()
        }
        live = read_schema(Catalog(session.client), set(expected))
    return key, [d.describe() for d in diff_schema(expected, live)]


def _settle(runtime: Runtime, attempt: Attempt | None, heads: tuple[str, ...]) -> Attempt | None:
    """Close an attempt whose version change did commit (the crash came after it)."""
    if attempt is None or attempt.revert:
        return attempt  # a revert is never committed by the version table: it leaves it as it was
    # The version table is the commit point: it changes only after the revision's function returned.
    committed = attempt.revision in heads if attempt.direction == "up" else attempt.revision not in heads
    if committed:
        runtime.close_attempt(attempt, "done")
        return None
    return attempt


def _steps_fn(script: ScriptDirectory, direction: str, target: str) -> StepsFn:
    # The same calls alembic.command.upgrade/downgrade make to compute the steps.
    if direction == "up":
        return lambda heads, context: script._upgrade_revs(target, heads)
    return lambda heads, context: script._downgrade_revs(target, heads)


def _instrument(
    project: Project, runtime: Runtime, steps_fn: StepsFn, attempt: Attempt | None, direction: str
) -> StepsFn:
    """Wrap each revision step with the runtime's revision boundaries; resume or revert first."""

    def steps(heads: Any, context: MigrationContext) -> Iterator[MigrationStep]:
        try:
            planned = list(steps_fn(heads, context))
        except Exception as exc:
            raise UsageError(f"{_alembic_message(exc)}; k2-migrate history lists the revisions") from None
        if attempt is not None and attempt.revert:
            if attempt.direction == direction:
                _revert(project, runtime, attempt, context, resume=True)  # finish the interrupted revert
            else:
                runtime.close_attempt(attempt, "abandoned")  # the revision runs again from its start
        elif attempt is not None:
            if attempt.direction == direction:
                first = planned[0].revision.revision if planned else None  # type: ignore[attr-defined]
                if first != attempt.revision:
                    raise InProgress(in_progress_message(attempt))
            else:
                _revert(project, runtime, attempt, context, resume=False)
        for step in planned:
            yield _wrap_step(runtime, step, attempt)

    return steps


def _wrap_step(runtime: Runtime, step: MigrationStep, attempt: Attempt | None) -> MigrationStep:
    script: Script = step.revision  # type: ignore[attr-defined]
    direction = "up" if step.is_upgrade else "down"
    resume = (
        attempt
        if attempt and attempt.revision == script.revision and attempt.direction == direction
        else None
    )
    original = step.migration_fn

    def run(**kw: Any) -> None:
        runtime.begin_revision(script.revision, direction, script.doc or "", resume)
        started = time.perf_counter()
        with _failures_journaled(runtime, script):
            original(**kw)
        runtime.revisions[-1].elapsed_s = time.perf_counter() - started
        runtime.end_revision("migrated")

    step.migration_fn = run
    return step


def _revert(
    project: Project, runtime: Runtime, attempt: Attempt, context: MigrationContext, *, resume: bool
) -> None:
    """Undo a half-applied revision by running its opposite function (every operation is idempotent).

    The interrupted attempt is closed first: from then on its steps' effects are being undone, and a
    crash in the middle leaves this revert in progress (finished by the same command, or abandoned
    by the opposite one, which then runs the revision again from its first step).
    """
    from alembic.operations import Operations

    script = project.revision(attempt.revision)
    if resume:
        direction = attempt.direction
    else:
        direction = "down" if attempt.direction == "up" else "up"
        runtime.close_attempt(attempt, "reverted")
    function = script.module.downgrade if direction == "down" else script.module.upgrade
    runtime.begin_revision(
        script.revision, direction, "revert an interrupted run", attempt if resume else None, revert=True
    )
    started = time.perf_counter()
    with _failures_journaled(runtime, script), Operations.context(context):
        function()
    runtime.revisions[-1].elapsed_s = time.perf_counter() - started
    runtime.end_revision("done")


@contextmanager
def _failures_journaled(runtime: Runtime, script: Script) -> Iterator[None]:
    """Journal the running revision as failed when its function raises; a Python error from the
    revision's own code becomes one line naming the file and line (see :func:`_revision_error`)."""
    try:
        yield
    except K2MigrateError as exc:
        runtime.end_revision("failed", exc.message)
        raise
    except Exception as exc:
        error = _revision_error(script, exc)
        runtime.end_revision(
            "failed", error.message if error else mask_secrets(str(exc)) or type(exc).__name__
        )
        if error is None:
            raise
        raise error from None
    except BaseException as exc:  # a second Ctrl-C, SystemExit
        runtime.end_revision("failed", mask_secrets(str(exc)) or type(exc).__name__)
        raise


def _revision_error(script: Script, exc: Exception) -> UsageError | None:
    """A Python error raised by a revision's own code, as one line naming the file and the line.

    None when no frame of the revision file is in the traceback: the error is k2-migrate's own.
    """
    import traceback

    path = os.path.realpath(script.path)
    lines = [
        f.lineno for f in traceback.extract_tb(exc.__traceback__) if os.path.realpath(f.filename) == path
    ]
    if not lines:
        return None
    detail = mask_secrets(str(exc)).strip().splitlines()
    return UsageError(
        f"revision {script.revision} ({os.path.relpath(path)}, line {lines[-1]}) raised "
        f"{type(exc).__name__}: {detail[0] if detail else 'no detail'}; fix the revision and run the same "
        "command again: it resumes at the step that failed"
    )


def in_progress_message(attempt: Attempt) -> str:
    verb = "upgrade" if attempt.direction == "up" else "downgrade"
    undo = "downgrade" if attempt.direction == "up" else "upgrade"
    return (
        f"revision {attempt.revision} is half-applied (an interrupted {verb}); run k2-migrate {verb} to "
        f"resume it, or k2-migrate {undo} to revert it, before anything else"
    )


def _run_alembic(project: Project, session: Session, runtime: Runtime, steps: StepsFn) -> None:
    from alembic.runtime.environment import EnvironmentContext

    script = project.script
    project.config.attributes["k2_run"] = {
        "connection": session.backend.connection,
        "runtime": runtime,
        "version_table_schema": session.database,
    }

    def on_applied(**kw: Any) -> None:
        runtime.end_revision("done")

    project.config.attributes["k2_run"]["on_version_apply"] = on_applied
    with EnvironmentContext(project.config, script, fn=steps):
        script.run_env()


def stamp(project: Project, target: str, progress: Progress) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Set the version table without running revisions (under the lock; refused mid-revision)."""
    from alembic.runtime.environment import EnvironmentContext

    from k2_migrations.core.runtime import Runtime

    script = project.script
    project.check_target(target)
    with open_session(project) as session:
        session.ensure_metadata()
        lock = session.lock()
        lock.acquire(project.number("lock_timeout", project.settings.lock_timeout, 0.0))
        try:
            attempt = session.journal.in_progress()
            if attempt is not None:
                raise InProgress(in_progress_message(attempt))
            before = session.ensure_version_state(attempt)
            runtime = Runtime(
                client=session.client, journal=session.journal, snapshots=None, lock=lock, progress=progress
            )
            project.config.attributes["k2_run"] = {
                "connection": session.backend.connection,
                "runtime": runtime,
                "version_table_schema": session.database,
            }

            def steps(heads: Any, context: MigrationContext) -> Iterable[MigrationStep]:
                return script._stamp_revs(target, heads)

            with EnvironmentContext(project.config, script, fn=steps, destination_rev=target):
                script.run_env()
            session.journal.write("run", "stamped", revision=target, operation=f"stamp {target}")
            after = session.heads()
        finally:
            lock.release()
    return before, after


def offline_sql(project: Project, direction: str, target: str, output: io.TextIOBase | Any) -> None:
    """Alembic's offline mode: print the SQL an upgrade/downgrade would run; touch nothing."""
    from alembic.runtime.environment import EnvironmentContext

    script = project.script
    starting: str | None = None
    destination = target
    if ":" in target:
        starting, destination = target.split(":", 1)
    if direction == "down" and starting is None:
        raise UsageError("downgrade --sql needs a range: k2-migrate downgrade --sql FROM:TO (e.g. head:base)")
    steps = _steps_fn(script, direction, destination)
    project.config.attributes["k2_run"] = {"version_table_schema": project.migrations_database}
    with EnvironmentContext(
        project.config,
        script,
        fn=steps,
        as_sql=True,
        starting_rev=starting,
        destination_rev=destination,
        output_buffer=output,
    ):
        script.run_env()


def plan(project: Project, target: str, progress: Progress) -> tuple[str, tuple[str, ...], Runtime]:
    """What an upgrade or downgrade to ``target`` would do, read against the live version table."""
    from alembic.runtime.environment import EnvironmentContext

    from k2_migrations.core.runtime import Runtime

    script = project.script
    project.check_target(target)
    with open_session(project) as session:
        heads = session.heads()
        attempt = session.journal.in_progress()
    if len(heads) > 1:
        raise UsageError(f"the database has {len(heads)} heads ({', '.join(heads)}); plan one at a time")
    current = heads[0] if heads else None
    direction = _direction(project, current, target)
    runtime = Runtime(client=None, journal=None, snapshots=None, lock=None, progress=progress, planning=True)
    steps = _instrument(project, runtime, _steps_fn(script, direction, target), None, direction)
    project.config.attributes["k2_run"] = {
        "version_table_schema": project.migrations_database,
        "runtime": runtime,
    }
    if attempt is not None:
        progress.line(f"note: {in_progress_message(attempt)}")
    with EnvironmentContext(
        project.config,
        script,
        fn=steps,
        as_sql=True,
        starting_rev=current,
        destination_rev=target,
        output_buffer=io.StringIO(),
    ):
        try:
            script.run_env()
        except K2MigrateError:
            raise
        except Exception as exc:
            raise UsageError(f"{_alembic_message(exc)}; k2-migrate history lists the revisions") from None
    return direction, heads, runtime


def _direction(project: Project, current: str | None, target: str) -> str:
    if target == "base" or target.startswith("-"):
        return "down"
    if target in {"head", "heads"} or target.startswith("+") or current is None:
        return "up"
    wanted = project.revision(target).revision
    ancestors = {r.revision for r in project.script.iterate_revisions(current, "base")}
    return "down" if wanted in ancestors and wanted != current else "up"
