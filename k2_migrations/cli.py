"""The ``k2-migrate`` command.

Only click is imported at module level, so ``k2-migrate --help`` answers fast; each command imports
what it uses. Every error a user can cause ends in one line on stderr (``k2-migrate: error: ...``)
and the exit code of its class (see :mod:`k2_migrations.errors`), never a traceback and never a
password. With ``--json`` the result — or the error — is a JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from k2_migrations.core.runner import Project
    from k2_migrations.core.runtime import Progress

F = TypeVar("F", bound=Callable[..., Any])


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


def _handled(json_flag: bool = False) -> Callable[[F], F]:
    """Turn K2MigrateError (and any surprise) into one line and the right exit code."""

    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from k2_migrations.config import mask_secrets
            from k2_migrations.errors import ExitCode, K2MigrateError

            as_json = bool(kwargs.get("as_json")) if json_flag else False
            try:
                return fn(*args, **kwargs)
            except K2MigrateError as exc:
                _fail(mask_secrets(exc.message), int(exc.exit_code), as_json)
            except KeyboardInterrupt:
                _fail(
                    "interrupted; run the same command again to resume where it stopped",
                    int(ExitCode.INTERRUPTED),
                    as_json,
                )
            except click.exceptions.Exit:
                raise
            except click.ClickException:
                raise
            except Exception as exc:
                if isinstance(exc, BrokenPipeError) and _stdout_gone():
                    # A write outside _echo (Alembic's --sql script, a plain click.echo) found its
                    # reader gone: that reader has what it wanted. End quietly, as Python's
                    # convention is; a broken connection to ClickHouse is no such thing.
                    _drop_output(sys.stdout)
                    return None
                if os.environ.get("K2_MIGRATE_DEBUG"):
                    raise
                detail = mask_secrets(str(exc)).strip().splitlines()
                _fail(
                    f"unexpected {type(exc).__name__}: {detail[0] if detail else ''} "
                    "(a bug in k2-migrate; K2_MIGRATE_DEBUG=1 shows the traceback)",
                    1,
                    as_json,
                )

        return wrapper  # type: ignore[return-value]

    return decorate


def _echo(message: str, err: bool = False) -> None:
    """click.echo that never fails a command: a closed stdout or stderr drops what is written to it.

    After the first EPIPE the stream goes to /dev/null, so the command still runs to its end and
    exits with its own status (a migration that completed, drift found by check): ``k2-migrate
    log | head -2`` or ``upgrade 2>&1 | head -c 1`` change nothing but what is printed.
    """
    try:
        click.echo(message, err=err)
    except BrokenPipeError:
        _drop_output(sys.stderr if err else sys.stdout)


def _stdout_gone() -> bool:
    """True when stdout is a pipe (or socket) whose reader has gone: poll reports an error on it."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _drop_output(stream: Any) -> None:
    from k2_migrations.core.runtime import drop_output

    drop_output(stream)


def _fail(message: str, code: int, as_json: bool) -> None:
    if as_json:
        _echo(json.dumps({"ok": False, "error": message, "exit_code": code}))
    _echo(f"k2-migrate: error: {message}", err=True)
    sys.exit(code)


def _project(ctx: click.Context) -> Project:
    from k2_migrations.core.runner import Project, Settings

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


def _progress(ctx: click.Context) -> Progress:
    from k2_migrations.core.runtime import Progress

    return Progress(quiet=bool(ctx.obj["quiet"]))


def _migrate(ctx: click.Context, direction: str, revision: str, sql: bool, as_json: bool) -> None:
    from k2_migrations.core.runner import migrate, offline_sql
    from k2_migrations.report import dump, run_document, run_text

    project = _project(ctx)
    if sql:
        from io import StringIO

        from k2_migrations.config import mask_secrets

        # Alembic writes the script itself: collected first, so that its passwords are masked too.
        script = StringIO()
        offline_sql(project, direction, revision, script)
        click.echo(mask_secrets(script.getvalue()), nl=False)
        return
    result = migrate(project, direction, revision, _progress(ctx))
    _echo(dump(run_document(result)) if as_json else run_text(result))


json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of text.")
sql_option = click.option("--sql", is_flag=True, help="Print the SQL script (offline mode); touch nothing.")


@main.command()
@click.argument("revision", default="head")
@sql_option
@json_option
@click.pass_context
@_handled(json_flag=True)
def upgrade(ctx: click.Context, revision: str, sql: bool, as_json: bool) -> None:
    """Upgrade to REVISION (default: head), resuming an interrupted run."""
    _migrate(ctx, "up", revision, sql, as_json)


# ignore_unknown_options: relative revisions such as -1 are arguments, not options.
relative = {"ignore_unknown_options": True}


@main.command(context_settings=relative)
@click.argument("revision")
@sql_option
@json_option
@click.pass_context
@_handled(json_flag=True)
def downgrade(ctx: click.Context, revision: str, sql: bool, as_json: bool) -> None:
    """Downgrade to REVISION (e.g. -1, a revision id, or base)."""
    _migrate(ctx, "down", revision, sql, as_json)


@main.command(context_settings=relative)
@click.argument("revision", default="head")
@json_option
@click.pass_context
@_handled(json_flag=True)
def plan(ctx: click.Context, revision: str, as_json: bool) -> None:
    """Show what upgrading or downgrading to REVISION would do; run nothing."""
    from k2_migrations.core.runner import plan as make_plan
    from k2_migrations.report import dump, plan_document, plan_text

    project = _project(ctx)
    direction, heads, runtime = make_plan(project, revision, _progress(ctx))
    if as_json:
        _echo(dump(plan_document(direction, heads, revision, runtime)))
    else:
        _echo(plan_text(direction, heads, revision, runtime))


@main.command()
@click.argument("revision")
@click.pass_context
@_handled()
def stamp(ctx: click.Context, revision: str) -> None:
    """Record REVISION as applied without running anything."""
    from k2_migrations.core.runner import stamp as do_stamp

    before, after = do_stamp(_project(ctx), revision, _progress(ctx))
    _echo(f"stamped: {', '.join(before) or 'base'} -> {', '.join(after) or 'base'}")


@main.command()
@json_option
@click.pass_context
@_handled(json_flag=True)
def current(ctx: click.Context, as_json: bool) -> None:
    """Show the revision(s) the database is at."""
    from k2_migrations.core.runner import open_session
    from k2_migrations.report import dump

    project = _project(ctx)
    script = project.script
    with open_session(project) as session:
        heads = session.heads()
        attempt = session.journal.in_progress()
        url = session.backend.target.display()
    known = {h: script.get_revision(h) for h in heads if h in {s.revision for s in script.walk_revisions()}}
    script_heads = sorted(script.get_heads())  # several while branches are not merged yet
    head = script_heads[0] if len(script_heads) == 1 else ("base" if not script_heads else None)
    if as_json:
        document = {
            "ok": True,
            "url": url,
            "current": list(heads),
            "head": head,
            "heads": script_heads,
            "up_to_date": sorted(heads) == script_heads,
            "in_progress": None
            if attempt is None
            else {
                "revision": attempt.revision,
                "direction": attempt.direction,
                "attempt": attempt.attempt_id,
            },
        }
        _echo(dump(document))
        return
    if not heads:
        _echo(f"{url}: base (no revision applied)")
    for h in heads:
        script_rev = known.get(h)
        suffix = " (head)" if h in script_heads else ""
        doc = f" — {script_rev.doc}" if script_rev is not None else " — unknown to this project!"
        _echo(f"{url}: {h}{suffix}{doc}")
    if attempt is not None:
        from k2_migrations.core.runner import in_progress_message

        _echo(f"in progress: {in_progress_message(attempt)}")


@main.command("check")
@json_option
@click.pass_context
@_handled(json_flag=True)
def check_drift(ctx: click.Context, as_json: bool) -> None:
    """Compare the live schema with what the current revision left; exit 8 on drift."""
    from k2_migrations.core.runner import check
    from k2_migrations.errors import DriftDetected, ExitCode
    from k2_migrations.report import dump

    revision, drift = check(_project(ctx))
    if as_json:
        _echo(dump({"ok": not drift, "revision": revision, "drift": drift}))
        ctx.exit(int(ExitCode.DRIFT) if drift else 0)
    if not drift:
        _echo(f"no drift: the live schema is what revision {revision} left")
        return
    for line in drift:
        _echo(f"drift: {line}")
    raise DriftDetected(f"{len(drift)} difference(s) from the schema revision {revision} left")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@json_option
@click.pass_context
@_handled(json_flag=True)
def lint(ctx: click.Context, paths: tuple[Path, ...], as_json: bool) -> None:
    """Flag unsafe revisions (default: the project's version locations); exit 5 on any finding.

    Each finding is one line: file:line, the rule, what is wrong and the fix. Rules: no-downgrade,
    empty-revision, not-idempotent, drop-without-guard, rename-view-target, populate, drop-sync,
    kafka-group-changed, alter-kafka, and syntax, waiver-without-reason, waiver-unknown-rule
    (which cannot be waived). docs/authoring.md describes each.

    To keep code a rule flags on purpose, waive the finding with a comment on a line of the
    offending call or string, or on the line just above it, and say why after " -- ":

    \b
        # k2-lint: allow drop-without-guard -- scratch table, rebuilt by the next load
        op.drop_object("k2", "scratch", allow_rows=True)

    Several rules share one waiver: "# k2-lint: allow populate, drop-sync -- reason". A waiver
    without a reason waives nothing and is itself a finding, as is one naming an unknown rule.
    Waived findings are still listed, marked "(waived: reason)", and do not fail the lint.
    """
    from k2_migrations.authoring.lint import lint_paths
    from k2_migrations.errors import GuardFailed
    from k2_migrations.report import dump

    if not paths:
        locations = _project(ctx).config.get_main_option("version_locations", "versions") or "versions"
        paths = tuple(Path(p) for p in locations.split())
    findings = lint_paths(list(paths))
    failing = [f for f in findings if not f.waived]
    if as_json:
        _echo(dump({"ok": not failing, "findings": [{**f.__dict__, "path": str(f.path)} for f in findings]}))
    else:
        for finding in findings:
            _echo(finding.describe())
    if failing:
        raise GuardFailed(f"{len(failing)} lint finding(s); fix them or waive each with a reason")
    if not as_json:
        _echo(f"no findings ({len(findings)} waived)" if findings else "no findings")


@main.command("test-revisions")
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), help="Use (and keep) this directory."
)
@click.pass_context
@_handled()
def test_revisions(ctx: click.Context, keep: Path | None) -> None:
    """Stairway test: each revision up, down, up again on a throwaway embedded database."""
    from k2_migrations.core.stairway import raise_on_problems, stairway

    results = stairway(_project(ctx), _progress(ctx), keep)
    for result in results:
        if result.problems:
            verdict = "FAILED"
        elif result.down_kept:
            verdict = f"up, down, up: schema identical; down keeps the schema by design ({result.down_kept})"
        else:
            verdict = "up, down, up: schema identical"
        _echo(f"{result.revision}: {verdict}")
        for problem in result.problems:
            _echo(f"  {problem}")
    raise_on_problems(results)


@main.command()
@click.pass_context
@_handled()
def history(ctx: click.Context) -> None:
    """List the revisions, newest first."""
    for script in _project(ctx).script.walk_revisions():
        _echo(script.cmd_format(verbose=False, include_doc=True, include_parents=True))


@main.command()
@click.pass_context
@_handled()
def heads(ctx: click.Context) -> None:
    """Show the head revision(s) of the scripts."""
    script = _project(ctx).script
    for head in script.get_revisions("heads"):
        assert head is not None
        _echo(head.cmd_format(verbose=False, include_branches=True))


@main.command()
@click.argument("revision")
@click.pass_context
@_handled()
def show(ctx: click.Context, revision: str) -> None:
    """Show one revision."""
    _echo(_project(ctx).revision(revision).cmd_format(verbose=True))


@main.command()
@click.option("-m", "--message", required=True, help="What the revision does.")
@click.option("--rev-id", help="Use this revision id instead of a generated one.")
@click.pass_context
@_handled()
def revision(ctx: click.Context, message: str, rev_id: str | None) -> None:
    """Write a new revision file from the ClickHouse template."""
    project = _project(ctx)
    head = project.single_head()
    created = project.script.generate_revision(
        rev_id or _new_rev_id(), message, head=head if head != "base" else "base"
    )
    assert created is not None
    _echo(f"wrote {created.path}")


@main.command()
@click.option("-m", "--message", required=True, help="What the merge joins.")
@click.pass_context
@_handled()
def merge(ctx: click.Context, message: str) -> None:
    """Write a revision that joins all current heads into one."""
    project = _project(ctx)
    heads = project.script.get_heads()
    if len(heads) < 2:
        raise _usage("there is only one head; nothing to merge")
    created = project.script.generate_revision(_new_rev_id(), message, head=list(heads))
    assert created is not None
    _echo(f"wrote {created.path}")


def _usage(message: str) -> Exception:
    from k2_migrations.errors import UsageError

    return UsageError(message)


def _new_rev_id() -> str:
    import uuid

    return uuid.uuid4().hex[:12]


@main.command()
@click.option("-n", "--limit", default=50, show_default=True, help="How many entries.")
@json_option
@click.pass_context
@_handled(json_flag=True)
def log(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Show the journal of runs and steps, newest first."""
    from k2_migrations.core.runner import open_session
    from k2_migrations.report import dump

    with open_session(_project(ctx)) as session:
        entries = session.journal.entries(limit)
    if as_json:
        _echo(dump({"ok": True, "entries": entries}))
        return
    if not entries:
        _echo("the journal is empty")
    for e in entries:
        where = f"{e['revision']} {e['direction']}".strip()
        step = f" step {e['step']}" if e["kind"] == "step" else ""
        error = f" — {e['error']}" if e["error"] else ""
        _echo(
            f"{e['at']:%Y-%m-%d %H:%M:%S} {e['run_id'][:8]} {e['kind']:<8} {e['status']:<9} {where}{step}"
            f" {e['operation']}{error}"
        )


@main.command("lock")
@json_option
@click.pass_context
@_handled(json_flag=True)
def show_lock(ctx: click.Context, as_json: bool) -> None:
    """Show who holds the migration lock, or the embedded database's path."""
    from k2_migrations.backends.embedded import EmbeddedPathBusy, EmbeddedPathHeld
    from k2_migrations.core.runner import open_session
    from k2_migrations.report import dump

    project = _project(ctx)
    try:
        # No wait: this command answers who is there now.
        with open_session(project, wait=False) as session:
            lock = session.lock()
            state = lock.read()
            stale = state is not None and lock.is_stale(state)
            kind = lock.kind  # "keeper" (the lock is in Keeper, cluster-wide) or "table"
    except (EmbeddedPathHeld, EmbeddedPathBusy) as exc:
        # A run holding the embedded path keeps everyone else out of the database, lock included.
        if exc.holder is None:
            raise
        path = project.target().path
        if as_json:
            document = {"ok": True, "held": True, "kind": "embedded-path", "holder": exc.holder.document()}
            click.echo(dump(document))
        else:
            click.echo(f"the embedded database {path} is held by {exc.holder.describe()}")
        return
    if as_json:
        holder = None if state is None else {**state.__dict__, "stale": stale}
        click.echo(dump({"ok": True, "held": state is not None, "kind": kind, "holder": holder}))
    elif state is None:
        click.echo("the lock is free")
    else:
        where = " (in Keeper)" if kind == "keeper" else ""
        click.echo(
            f"held{where} by {state.describe()}" + (" — stale: unlock --force breaks it" if stale else "")
        )


@main.command()
@click.option("--force", is_flag=True, help="Required: break the lock even if its holder may be alive.")
@click.pass_context
@_handled()
def unlock(ctx: click.Context, force: bool) -> None:
    """Break the migration lock left by a dead run."""
    from k2_migrations.core.runner import open_session
    from k2_migrations.errors import UsageError

    if not force:
        raise UsageError("unlock breaks another run's lock; check k2-migrate lock first, then add --force")
    with open_session(_project(ctx)) as session:
        broken = session.lock().force_break()
    _echo("the lock was free" if broken is None else f"broke the lock held by {broken.describe()}")
