"""The commands that change or read the version state: upgrade, downgrade, plan, stamp, current, check."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from k2_migrations.cli.app import json_option, progress_of, project_of, relative, sql_option
from k2_migrations.cli.output import echo, handled

if TYPE_CHECKING:
    pass


def _migrate(ctx: click.Context, direction: str, revision: str, sql: bool, as_json: bool) -> None:
    from k2_migrations.commands.migrate import migrate
    from k2_migrations.commands.plan import offline_sql
    from k2_migrations.output.jsondoc import dump
    from k2_migrations.output.report import run_document, run_text

    project = project_of(ctx)
    if sql:
        from io import StringIO

        from k2_migrations.config import mask_secrets

        # Alembic writes the script itself: collected first, so that its passwords are masked too.
        script = StringIO()
        offline_sql(project, direction, revision, script)
        click.echo(mask_secrets(script.getvalue()), nl=False)
        return
    result = migrate(project, direction, revision, progress_of(ctx))
    echo(dump(run_document(result)) if as_json else run_text(result))


@click.command()
@click.argument("revision", default="head")
@sql_option
@json_option
@click.pass_context
@handled(json_flag=True)
def upgrade(ctx: click.Context, revision: str, sql: bool, as_json: bool) -> None:
    """Upgrade to REVISION (default: head), resuming an interrupted run."""
    _migrate(ctx, "up", revision, sql, as_json)


@click.command(context_settings=relative)
@click.argument("revision")
@sql_option
@json_option
@click.pass_context
@handled(json_flag=True)
def downgrade(ctx: click.Context, revision: str, sql: bool, as_json: bool) -> None:
    """Downgrade to REVISION (e.g. -1, a revision id, or base)."""
    _migrate(ctx, "down", revision, sql, as_json)


@click.command(context_settings=relative)
@click.argument("revision", default="head")
@json_option
@click.pass_context
@handled(json_flag=True)
def plan(ctx: click.Context, revision: str, as_json: bool) -> None:
    """Show what upgrading or downgrading to REVISION would do; run nothing."""
    from k2_migrations.commands.plan import plan as make_plan
    from k2_migrations.output.jsondoc import dump
    from k2_migrations.output.report import plan_document, plan_text

    project = project_of(ctx)
    direction, heads, runtime = make_plan(project, revision, progress_of(ctx))
    if as_json:
        echo(dump(plan_document(direction, heads, revision, runtime)))
    else:
        echo(plan_text(direction, heads, revision, runtime))


@click.command()
@click.argument("revision")
@click.pass_context
@handled()
def stamp(ctx: click.Context, revision: str) -> None:
    """Record REVISION as applied without running anything."""
    from k2_migrations.commands.stamp import stamp as do_stamp

    before, after = do_stamp(project_of(ctx), revision, progress_of(ctx))
    echo(f"stamped: {', '.join(before) or 'base'} -> {', '.join(after) or 'base'}")


@click.command()
@json_option
@click.pass_context
@handled(json_flag=True)
def current(ctx: click.Context, as_json: bool) -> None:
    """Show the revision(s) the database is at."""
    from k2_migrations.commands.session import open_session
    from k2_migrations.output.jsondoc import dump

    project = project_of(ctx)
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
        echo(dump(document))
        return
    if not heads:
        echo(f"{url}: base (no revision applied)")
    for h in heads:
        script_rev = known.get(h)
        suffix = " (head)" if h in script_heads else ""
        doc = f" — {script_rev.doc}" if script_rev is not None else " — unknown to this project!"
        echo(f"{url}: {h}{suffix}{doc}")
    if attempt is not None:
        from k2_migrations.commands.migrate import in_progress_message

        echo(f"in progress: {in_progress_message(attempt)}")


@click.command("check")
@json_option
@click.pass_context
@handled(json_flag=True)
def check_drift(ctx: click.Context, as_json: bool) -> None:
    """Compare the live schema with what the current revision left; exit 8 on drift."""
    from k2_migrations.commands.check import check
    from k2_migrations.errors import DriftDetected, ExitCode
    from k2_migrations.output.jsondoc import dump

    revision, drift = check(project_of(ctx))
    if as_json:
        echo(dump({"ok": not drift, "revision": revision, "drift": drift}))
        ctx.exit(int(ExitCode.DRIFT) if drift else 0)
    if not drift:
        echo(f"no drift: the live schema is what revision {revision} left")
        return
    for line in drift:
        echo(f"drift: {line}")
    raise DriftDetected(f"{len(drift)} difference(s) from the schema revision {revision} left")
