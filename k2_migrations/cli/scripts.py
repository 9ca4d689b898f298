"""The commands about revision scripts: history, heads, branches, show, edit, revision, merge.

Each is Alembic's command of the same name (``alembic.command``), with Alembic's errors as one line.
Where Alembic would read the database through env.py (``history -i``, ``show current``, ``edit
current``) the heads are read through k2-migrate's own session instead, as ``current`` reads them:
Alembic's path runs a migration context that creates the version state on a fresh database,
outside the lock, from a command that should only read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from k2_migrations.cli.app import project_of
from k2_migrations.cli.output import echo, handled, usage_error

if TYPE_CHECKING:
    from k2_migrations.commands.project import Project

#: Where a revision symbol Alembic could not resolve can be looked up.
HISTORY_HINT = "k2-migrate history lists the revisions"


@contextmanager
def alembic_errors(hint: str = HISTORY_HINT) -> Iterator[None]:
    """Alembic's own errors (an unknown revision, a head that is not one, no editor) as one line."""
    from alembic.script.revision import ResolutionError, RevisionError
    from alembic.util import CommandError

    from k2_migrations.commands.project import _alembic_message

    try:
        yield
    except (CommandError, RevisionError) as exc:
        # ScriptDirectory re-raises a revision error as a CommandError caused by it.
        unresolved = next((e for e in (exc, exc.__cause__) if isinstance(e, ResolutionError)), None)
        if unresolved is not None:
            # Said in k2-migrate's words: Alembic's "Can't locate revision identified by 'x'" reads,
            # to the secret masking, like SQL's IDENTIFIED BY 'password', and would print as '***'.
            raise usage_error(f"unknown revision {unresolved.argument!r}; {HISTORY_HINT}") from None
        raise usage_error(f"{_alembic_message(exc)}; {hint}") from None


def loaded(ctx: click.Context, quiet: bool = False) -> Project:
    """The project with its revisions loaded (a broken one is one line, not a traceback).

    ``quiet`` is Alembic's own switch (``alembic -q``): it silences the "Generating ..." lines of a
    new revision. It must be set before Alembic first reads the configuration's messaging options,
    which it keeps; it also silences ``Config.print_stdout``, so only commands whose output is the
    file they write use it.
    """
    import argparse

    project = project_of(ctx)
    if quiet:
        project.config.cmd_opts = argparse.Namespace(quiet=True)
    project.script  # noqa: B018
    return project


def current_heads(project: Project) -> tuple[str, ...]:
    """The heads the database is at, read through k2-migrate's session (as ``current`` reads them)."""
    from k2_migrations.commands.session import open_session

    with open_session(project) as session:
        return session.heads()


@click.command()
@click.option("-r", "--rev-range", metavar="[START]:[END]", help="Only this range; 'current' is allowed.")
@click.option("-i", "--indicate-current", is_flag=True, help="Mark the revision(s) the database is at.")
@click.option("--verbose", is_flag=True, help="Every field of each revision.")
@click.pass_context
@handled()
def history(ctx: click.Context, rev_range: str | None, indicate_current: bool, verbose: bool) -> None:
    """List the revisions, newest first.

    As Alembic's history: -r START:END (either side may be empty, or "current"), -i marks the
    revision(s) the database is at, --verbose prints every field.
    """
    from alembic import command

    project = loaded(ctx)
    base: str | None = None
    head: str | None = None
    if rev_range is not None:
        if ":" not in rev_range:
            raise usage_error(f"history range {rev_range!r} needs [START]:[END], START: or :END")
        base, head = (side or None for side in rev_range.strip().split(":", 1))
    if not indicate_current and "current" not in {base, head}:
        with alembic_errors():
            command.history(project.config, rev_range=rev_range, verbose=verbose)
        return
    currents = current_heads(project)
    # Alembic's _display_history with the database's heads in place of its env.py read (see above).
    base_spec: str | tuple[str, ...] | None = currents if base == "current" else base
    head_spec: str | tuple[str, ...] | None = currents if head == "current" else head
    with alembic_errors():
        for script in project.script.walk_revisions(base=base_spec or "base", head=head_spec or "heads"):  # type: ignore[arg-type]
            if indicate_current:
                script._db_current_indicator = script.revision in currents
            project.config.print_stdout(
                script.cmd_format(
                    verbose=verbose, include_branches=True, include_doc=True, include_parents=True
                )
            )


@click.command()
@click.option("--verbose", is_flag=True, help="Every field of each head.")
@click.option("--resolve-dependencies", is_flag=True, help="Treat depends_on revisions as parents.")
@click.pass_context
@handled()
def heads(ctx: click.Context, verbose: bool, resolve_dependencies: bool) -> None:
    """Show the head revision(s) of the scripts."""
    from alembic import command

    project = loaded(ctx)
    with alembic_errors():
        command.heads(project.config, verbose=verbose, resolve_dependencies=resolve_dependencies)


@click.command()
@click.option("--verbose", is_flag=True, help="Every field of each branch point.")
@click.pass_context
@handled()
def branches(ctx: click.Context, verbose: bool) -> None:
    """Show the branch points of the revisions."""
    from alembic import command

    project = loaded(ctx)
    with alembic_errors():
        command.branches(project.config, verbose=verbose)


@click.command()
@click.argument("revision")
@click.pass_context
@handled()
def show(ctx: click.Context, revision: str) -> None:
    """Show revision(s): an id, head, heads, or current."""
    from alembic import command

    project = loaded(ctx)
    if revision != "current":
        with alembic_errors():
            command.show(project.config, revision)
        return
    currents = current_heads(project)
    if not currents:
        echo("the database is at base (no revision applied)")
    with alembic_errors("the database is at a revision this project does not have; k2-migrate current"):
        for script in project.script.get_revisions(currents):
            assert script is not None
            project.config.print_stdout(script.log_entry)


@click.command()
@click.argument("revision")
@click.pass_context
@handled()
def edit(ctx: click.Context, revision: str) -> None:
    """Open revision file(s) in $EDITOR: an id, head or current."""
    from alembic import command
    from alembic.util import open_in_editor

    project = loaded(ctx)
    symbol: str | tuple[str, ...] = revision
    if revision == "current":
        symbol = current_heads(project)
        if not symbol:
            raise usage_error("the database is at base: no current revision to edit; name a revision")
    with alembic_errors():
        found = project.script.get_revisions(symbol)
    if not found:
        raise usage_error(f"no revision file for {revision!r}; {HISTORY_HINT}")
    # What is left to fail is the editor: Alembic's own lookup of $EDITOR, then $VISUAL, then vi/nano/...
    with alembic_errors("set EDITOR to the editor's command"):
        if revision != "current":
            command.edit(project.config, revision)
            return
        for script in found:
            assert script is not None
            open_in_editor(script.path)


@click.command()
@click.option("-m", "--message", required=True, help="What the revision does.")
@click.option("--head", default="head", show_default=True, help="The revision to build on.")
@click.option(
    "--splice", is_flag=True, help="Allow --head to be a revision that is not a head (a new branch)."
)
@click.option("--branch-label", help="A label for the branch this revision starts.")
@click.option("--depends-on", multiple=True, help="A revision this one depends on (repeatable).")
@click.option("--rev-id", help="Use this revision id instead of a generated one.")
@click.option("--version-path", help="Write the file in this one of the version_locations.")
@click.option(
    "--sql",
    "sql_files",
    is_flag=True,
    help="Plain SQL: also write REV.upgrade.sql and REV.downgrade.sql, which the revision runs.",
)
@click.option(
    "--autogenerate",
    is_flag=True,
    help="The operations from the target's schema to the declared one, proven.",
)
@click.option("--allow-drops", is_flag=True, help="With --autogenerate: write drops (else commented out).")
@click.option("--no-verify", is_flag=True, help="With --autogenerate: write the revision without its proof.")
@click.option(
    "--from-revisions",
    is_flag=True,
    help="With --autogenerate: compare the revisions replayed on a scratch engine, not the target.",
)
@click.pass_context
@handled()
def revision(
    ctx: click.Context,
    message: str,
    head: str,
    splice: bool,
    branch_label: str | None,
    depends_on: tuple[str, ...],
    rev_id: str | None,
    version_path: str | None,
    sql_files: bool,
    autogenerate: bool,
    allow_drops: bool,
    no_verify: bool,
    from_revisions: bool,
) -> None:
    """Write a new revision file from the ClickHouse template.

    With --autogenerate, its operations take the target (at the head) to the declared schema
    (docs/declared-schema.md), proven on a scratch engine first unless --no-verify.

    With --sql, its upgrade() and downgrade() run two plain SQL files written beside it
    (op.run_sql_file): REV.upgrade.sql and REV.downgrade.sql, each statement a step of its own.
    """
    from alembic import command

    from k2_migrations.commands.project import write_sql_files

    project = loaded(ctx, quiet=bool(ctx.obj["quiet"]))
    if head == "head":
        project.single_head()  # two heads: name one (--head) or merge them, said in one line
    if autogenerate:
        if sql_files:
            raise usage_error("--autogenerate writes op calls, --sql plain SQL: choose one")
        with alembic_errors("k2-migrate heads lists the heads; version_locations in alembic.ini the paths"):
            write_autogenerated(
                project, message, head, (allow_drops, not no_verify, from_revisions), rev_id, version_path
            )
        return
    if allow_drops or no_verify or from_revisions:
        raise usage_error("--allow-drops, --no-verify and --from-revisions go with --autogenerate")
    # Read by the revision template (script.py.mako), which Alembic hands the configuration.
    project.config.attributes["k2_sql_revision"] = sql_files
    with alembic_errors("k2-migrate heads lists the heads; version_locations in alembic.ini the paths"):
        written = command.revision(
            project.config,
            message=message,
            head=head,
            splice=splice,
            branch_label=branch_label,
            version_path=version_path,
            rev_id=rev_id,
            # A list, as Alembic's own command line passes it (action="append"); the annotation says str.
            depends_on=list(depends_on) or None,  # type: ignore[arg-type]
        )
    if sql_files:
        from alembic.script import Script

        assert isinstance(written, Script)  # one revision, not autogenerate's several
        for path in write_sql_files(written, message, Path(project.script.dir)):
            project.config.print_stdout(f"Generating {path} ...  done")


def write_autogenerated(
    project: Project,
    message: str,
    head: str,
    flags: tuple[bool, bool, bool],
    rev_id: str | None,
    version_path: str | None,
) -> None:
    """Plan (and prove) the revision, then write it through the template; each proof difference a line.

    ``flags``: allow drops, verify, from the revisions.
    """
    from alembic.util import rev_id as new_rev_id

    from k2_migrations.commands.autogenerate import NoDifference, ProofFailed, autogenerate
    from k2_migrations.declared.plan import body

    try:
        allow_drops, verify, from_revisions = flags
        result = autogenerate(project, allow_drops=allow_drops, verify=verify, from_revisions=from_revisions)
    except ProofFailed as exc:
        for line in exc.differences:
            echo(f"difference: {line}", err=True)
        raise
    if isinstance(result, NoDifference):
        echo(f"no difference from the declared schema in {', '.join(result.sources)}: nothing written")
        return
    indent = "\n    "
    written = project.script.generate_revision(
        rev_id or new_rev_id(),
        message,
        head=head,
        version_path=version_path,
        config=project.config,
        upgrades=indent.join(body(result.plan.upgrade)),
        downgrades=indent.join(body(result.plan.downgrade)),
    )
    assert written is not None
    if result.proof_seconds is None:
        echo(f"not proven (--no-verify): {written.path}")
    else:
        echo(f"proven on a scratch engine in {result.proof_seconds:.1f} s: {written.path}")


@click.command()
@click.argument("revisions", nargs=-1)
@click.option("-m", "--message", required=True, help="What the merge joins.")
@click.option("--branch-label", help="A label for the merged branch.")
@click.option("--rev-id", help="Use this revision id instead of a generated one.")
@click.pass_context
@handled()
def merge(
    ctx: click.Context,
    revisions: tuple[str, ...],
    message: str,
    branch_label: str | None,
    rev_id: str | None,
) -> None:
    """Write a revision that joins REVISIONS (default: heads)."""
    from alembic import command

    project = loaded(ctx, quiet=bool(ctx.obj["quiet"]))
    if not revisions and len(project.script.get_heads()) < 2:
        raise usage_error("there is only one head; nothing to merge")
    with alembic_errors():
        command.merge(
            project.config,
            list(revisions) or "heads",
            message=message,
            branch_label=branch_label,
            rev_id=rev_id,
        )
