"""Operating and authoring commands: log, lock, unlock, lint, test-revisions."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from k2_migrations.cli.app import json_option, progress_of, project_of
from k2_migrations.cli.output import echo, handled

if TYPE_CHECKING:
    pass


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@json_option
@click.pass_context
@handled(json_flag=True)
def lint(ctx: click.Context, paths: tuple[Path, ...], as_json: bool) -> None:
    """Flag unsafe revisions; exit 5 on any finding.

    PATHS default to the project's version locations.

    Each finding is one line: file:line, the rule, what is wrong and the fix. The .sql files
    revisions run (op.run_sql_file) and .sql files in PATHS are read too, each statement at its own
    line. The rules (docs/authoring.md describes each):

    \b
        no-downgrade, empty-revision, not-idempotent, drop-without-guard,
        rename-view-target, populate, drop-sync, kafka-group-changed, alter-kafka,
        recreate-view, unchecked-dependents, sql-file-missing, empty-sql-file; and,
        which cannot be waived:
        syntax, waiver-without-reason, waiver-unknown-rule

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
    from k2_migrations.output.jsondoc import dump

    if not paths:
        locations = project_of(ctx).config.get_main_option("version_locations", "versions") or "versions"
        paths = tuple(Path(p) for p in locations.split())
    findings = lint_paths(list(paths))
    failing = [f for f in findings if not f.waived]
    if as_json:
        echo(dump({"ok": not failing, "findings": findings}))
    else:
        for finding in findings:
            echo(finding.describe())
    if failing:
        raise GuardFailed(f"{len(failing)} lint finding(s); fix them or waive each with a reason")
    if not as_json:
        echo(f"no findings ({len(findings)} waived)" if findings else "no findings")


@click.command("test-revisions")
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), help="Use (and keep) this directory."
)
@click.pass_context
@handled()
def test_revisions(ctx: click.Context, keep: Path | None) -> None:
    """Run each revision up, down and up again (stairway test).

    On a throwaway embedded database, in the order upgrade heads applies them (branches and merges
    included); each downgrade must restore the schema and the heads from before its upgrade.
    """
    from k2_migrations.authoring.stairway import raise_on_problems, stairway

    results = stairway(project_of(ctx), progress_of(ctx), keep)
    for result in results:
        if result.problems:
            verdict = "FAILED"
        elif result.down_kept:
            verdict = f"up, down, up: schema identical; down keeps the schema by design ({result.down_kept})"
        else:
            verdict = "up, down, up: schema identical"
        echo(f"{result.revision}: {verdict}")
        for problem in result.problems:
            echo(f"  {problem}")
    raise_on_problems(results)


@click.command()
@click.option("-n", "--limit", default=50, show_default=True, help="How many entries.")
@json_option
@click.pass_context
@handled(json_flag=True)
def log(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Show the journal of runs and steps, newest first."""
    from k2_migrations.commands.session import open_session
    from k2_migrations.output.jsondoc import dump

    with open_session(project_of(ctx)) as session:
        entries = session.journal.entries(limit)
    if as_json:
        echo(dump({"ok": True, "entries": entries}))
        return
    if not entries:
        echo("the journal is empty")
    for e in entries:
        where = f"{e['revision']} {e['direction']}".strip()
        step = f" step {e['step']}" if e["kind"] == "step" else ""
        error = f" — {e['error']}" if e["error"] else ""
        echo(
            f"{e['at']:%Y-%m-%d %H:%M:%S} {e['run_id'][:8]} {e['kind']:<8} {e['status']:<9} {where}{step}"
            f" {e['operation']}{error}"
        )


@click.command("lock")
@json_option
@click.pass_context
@handled(json_flag=True)
def show_lock(ctx: click.Context, as_json: bool) -> None:
    """Show who holds the migration lock.

    Or, for the embedded engine, which process has its path open.
    """
    from k2_migrations.backends.embedded import EmbeddedPathBusy, EmbeddedPathHeld
    from k2_migrations.commands.session import open_session
    from k2_migrations.output.jsondoc import dump

    project = project_of(ctx)
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
        holder = None if state is None else {**dataclasses.asdict(state), "stale": stale}
        click.echo(dump({"ok": True, "held": state is not None, "kind": kind, "holder": holder}))
    elif state is None:
        click.echo("the lock is free")
    else:
        where = " (in Keeper)" if kind == "keeper" else ""
        click.echo(
            f"held{where} by {state.describe()}" + (" — stale: unlock --force breaks it" if stale else "")
        )


@click.command()
@click.option("--force", is_flag=True, help="Required: break the lock even if its holder may be alive.")
@click.pass_context
@handled()
def unlock(ctx: click.Context, force: bool) -> None:
    """Break the migration lock left by a dead run."""
    from k2_migrations.commands.session import open_session
    from k2_migrations.errors import UsageError

    if not force:
        raise UsageError("unlock breaks another run's lock; check k2-migrate lock first, then add --force")
    with open_session(project_of(ctx)) as session:
        broken = session.lock().force_break()
    echo("the lock was free" if broken is None else f"broke the lock held by {broken.describe()}")
