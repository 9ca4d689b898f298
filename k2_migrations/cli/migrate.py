"""The commands that change or read the version state: upgrade, downgrade, plan, stamp, current, check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from k2_migrations.cli.app import json_option, progress_of, project_of, relative, settings_of, sql_option
from k2_migrations.cli.output import echo, handled, summary

if TYPE_CHECKING:
    from k2_migrations.commands.project import Project
    from k2_migrations.decisions.attempts import Attempt
    from k2_migrations.engine.results import RunResult
    from k2_migrations.errors import UsageError


def _migrate(ctx: click.Context, direction: str, revision: str, sql: bool, as_json: bool) -> None:
    if sql:
        from io import StringIO

        from k2_migrations.commands.plan import offline_sql
        from k2_migrations.config import mask_secrets

        # Alembic writes the script itself: collected first, so that its passwords are masked too.
        script = StringIO()
        offline_sql(project_of(ctx), direction, revision, script)
        click.echo(mask_secrets(script.getvalue()), nl=False)
        return
    if direction != "up":
        _run(ctx, direction, revision, as_json)
        return
    from k2_migrations.commands.fastpath import probe

    # Nothing to do is found out without Alembic and the lock where it can be; else the normal path,
    # inside the block so that it shares the engine the probe opened (commands/fastpath.py).
    with probe(settings_of(ctx), revision) as noop:
        if noop is not None:
            _report(noop, as_json)
            return
        _run(ctx, direction, revision, as_json)


def _run(ctx: click.Context, direction: str, revision: str, as_json: bool) -> None:
    from k2_migrations.commands.migrate import migrate
    from k2_migrations.errors import UsageError

    project = project_of(ctx)
    try:
        result = migrate(project, direction, revision, progress_of(ctx))
    except UsageError as exc:
        raise _too_far(project, direction, revision) or exc from None
    _report(result, as_json)


def _report(result: RunResult, as_json: bool) -> None:
    from k2_migrations.output.jsondoc import dump
    from k2_migrations.output.report import run_document, run_text

    if as_json:
        echo(dump(run_document(result)))
    else:
        summary(run_text(result))


def _too_far(project: Project, direction: str, revision: str) -> UsageError | None:
    """A relative target (+N, -N) that walks past the last revision, said in the user's terms.

    Alembic says "Relative revision +5 didn't produce 5 migrations"; this says from where and how
    many remain. Computed only once the run has refused, from the heads read again: a run that
    succeeds pays nothing for it.
    """
    import re

    from k2_migrations.commands.session import open_session
    from k2_migrations.errors import UsageError

    wanted = re.fullmatch(r"([+-])(\d+)", revision)
    if wanted is None or (wanted[1] == "+") != (direction == "up"):
        return None
    with open_session(project) as session:
        # Any: Alembic passes its steps functions a tuple of heads, where its annotations say str.
        heads: Any = session.heads()
    script = project.script
    try:
        steps = (
            script._upgrade_revs("heads", heads)
            if direction == "up"
            else script._downgrade_revs("base", heads)
        )
    except Exception:  # a revision the project does not know: Alembic's own message says so
        return None
    count, where = int(wanted[2]), ", ".join(heads) or "base"
    if count <= len(steps):
        return None
    verb, left = ("upgrade", "remain to head") if direction == "up" else ("downgrade", "are applied")
    if not steps:
        left = "it is at head" if direction == "up" else "it is at base"
        return UsageError(f"cannot {verb} {count} revision(s) from {where}: {left}")
    return UsageError(
        f"cannot {verb} {count} revision(s) from {where}: only {len(steps)} {left}; "
        f"k2-migrate {verb} {'head' if direction == 'up' else 'base'} goes all the way"
    )


@click.command()
@click.argument("revision", default="head")
@sql_option
@json_option
@click.pass_context
@handled(json_flag=True)
def upgrade(ctx: click.Context, revision: str, sql: bool, as_json: bool) -> None:
    """Upgrade to REVISION, by default head.

    REVISION is a revision id, head, heads, or +N (N revisions up); an interrupted run resumes first.
    """
    _migrate(ctx, "up", revision, sql, as_json)


@click.command(context_settings=relative)
@click.argument("revision")
@sql_option
@json_option
@click.pass_context
@handled(json_flag=True)
def downgrade(ctx: click.Context, revision: str, sql: bool, as_json: bool) -> None:
    """Downgrade to REVISION, a revision id, -N or base.

    An interrupted run is resumed or reverted first. downgrade --sql needs a range: FROM:TO.
    """
    _migrate(ctx, "down", revision, sql, as_json)


@click.command(context_settings=relative)
@click.argument("revision", default="head")
@json_option
@click.pass_context
@handled(json_flag=True)
def plan(ctx: click.Context, revision: str, as_json: bool) -> None:
    """Show what a run to REVISION would do, running nothing.

    Revisions, steps, SQL and guards of the upgrade or downgrade to REVISION (default: head), read
    against the database's version state.
    """
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
@click.argument("revisions", nargs=-1, required=True)
@click.option(
    "--purge",
    is_flag=True,
    help="Replace every applied revision, even ones this project does not know (the record keeps them).",
)
@click.pass_context
@handled()
def stamp(ctx: click.Context, revisions: tuple[str, ...], purge: bool) -> None:
    """Record REVISIONS as applied without running anything.

    As Alembic's stamp: each of REVISIONS (an id, head, heads or base) moves the branch it is on.
    With --purge the heads the database is at are replaced whatever they are: the way out of a
    version record naming a revision the project no longer has. Nothing is deleted: the change is
    one more row per revision in the version record.
    """
    from k2_migrations.commands.stamp import stamp as do_stamp

    before, after = do_stamp(project_of(ctx), revisions, progress_of(ctx), purge=purge)
    summary(f"stamped: {', '.join(before) or 'base'} -> {', '.join(after) or 'base'}")


@click.command()
@click.argument("revisions", nargs=-1)
@click.pass_context
@handled()
def accept(ctx: click.Context, revisions: tuple[str, ...]) -> None:
    """Accept edits made to applied revisions.

    check and upgrade refuse (exit 8) when an applied revision's file, or a .sql file it runs, changed
    after it was applied. Once the edit is known not to change what ran, accept REVISIONS (default:
    every edited one) records their files as they are now: one more change in the version record,
    with the same heads and the new digests; nothing is deleted.
    """
    from k2_migrations.commands.stamp import accept as do_accept

    accepted = do_accept(project_of(ctx), revisions)
    if not accepted:
        summary("accepted: no applied revision was edited")
        return
    summary("accepted: " + ", ".join(f"{revision} ({file})" for revision, file in accepted))


@click.command()
@click.option("--verbose", is_flag=True, help="Every field of each revision, as Alembic's current --verbose.")
@json_option
@click.pass_context
@handled(json_flag=True)
def current(ctx: click.Context, verbose: bool, as_json: bool) -> None:
    """Show the revision(s) the database is at."""
    if verbose:
        _current(ctx, verbose, as_json)
        return
    from k2_migrations.commands.fastpath import settled_read

    # The no-op fast path's read (commands/fastpath.py), where it is sure; else Alembic's, inside the
    # block so that it shares the engine the read opened.
    with settled_read(settings_of(ctx), "current") as seen:
        if seen is not None:
            heads = seen.state.heads
            docs = {h: seen.headers[h].doc for h in heads if h in seen.headers}
            _print_current(seen.url, heads, None, "", seen.script_heads, docs, as_json)
            return
        _current(ctx, verbose, as_json)


def _current(ctx: click.Context, verbose: bool, as_json: bool) -> None:
    """``current`` from Alembic's read of the revisions and the session's of the version state."""
    from k2_migrations.commands.session import open_session

    project = project_of(ctx)
    script = project.script
    with open_session(project) as session:
        heads = session.heads()
        attempt = session.journal.in_progress()
        url = session.backend.target.display()
    from k2_migrations.commands.migrate import in_progress_message

    settle = in_progress_message(project, attempt) if attempt is not None else ""
    revisions = {s.revision: s for s in script.walk_revisions()}
    script_heads = tuple(sorted(script.get_heads()))  # several while branches are not merged yet
    if not verbose:
        docs = {rev: revisions[rev].doc for rev in heads if rev in revisions}
        _print_current(url, heads, attempt, settle, script_heads, docs, as_json)
        return
    # Alembic's current --verbose: the target, then every field of each revision.
    summary(f"Current revision(s) for {url}:")
    for h in heads:
        script_rev = revisions.get(h)
        echo(
            script_rev.cmd_format(True) if script_rev is not None else f"Rev: {h} (unknown to this project!)"
        )
    _print_in_progress(settle)


def _print_current(
    url: str,
    heads: tuple[str, ...],
    attempt: Attempt | None,
    settle: str,
    script_heads: tuple[str, ...],
    docs: dict[str, str],
    as_json: bool,
) -> None:
    """``current``'s text or document; ``docs`` has the doc of each head the project knows."""
    from k2_migrations.output.jsondoc import dump

    head = script_heads[0] if len(script_heads) == 1 else ("base" if not script_heads else None)
    if as_json:
        document = {
            "ok": True,
            "url": url,
            "current": list(heads),
            "head": head,
            "heads": list(script_heads),
            "up_to_date": sorted(heads) == list(script_heads),
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
        suffix = " (head)" if h in script_heads else ""
        doc = f" — {docs[h]}" if h in docs else " — unknown to this project!"
        echo(f"{url}: {h}{suffix}{doc}")
    _print_in_progress(settle)


def _print_in_progress(settle: str) -> None:
    """The half-applied revision, with the two commands that settle it (``settle``; empty: none)."""
    if settle:
        summary(f"in progress: {settle}")


@click.command("check")
@click.option(
    "--schema",
    "declared",
    is_flag=True,
    help="Compare the target with the declared schema (schema/ beside alembic.ini, or --schema-dir).",
)
@json_option
@click.pass_context
@handled(json_flag=True)
def check_drift(ctx: click.Context, declared: bool, as_json: bool) -> None:
    """Report drift (--schema: from the declared schema).

    The schema recorded when the current revision was reached is compared with the live one;
    any difference where the revisions depend on it exits 8. With --schema, every difference between
    the target and the declared schema exits 8 (docs/declared-schema.md).
    """
    if declared:
        from k2_migrations.cli.declared import check_declared

        check_declared(ctx, as_json)
        return
    from k2_migrations.commands.check import check
    from k2_migrations.errors import DriftDetected, ExitCode
    from k2_migrations.output.jsondoc import dump

    revision, drift = check(settings_of(ctx))
    if as_json:
        echo(dump({"ok": not drift, "revision": revision, "drift": drift}))
        ctx.exit(int(ExitCode.DRIFT) if drift else 0)
    if not drift:
        echo(f"no drift: the live schema is what revision {revision} left")
        return
    for line in drift:
        echo(f"drift: {line}")
    raise DriftDetected(f"{len(drift)} difference(s) from the schema revision {revision} left")
