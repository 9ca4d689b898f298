"""The commands about revision scripts: history, heads, show, revision, merge."""

from __future__ import annotations

import click

from k2_migrations.cli.app import project_of
from k2_migrations.cli.output import echo, handled, usage_error


@click.command()
@click.option("-r", "--rev-range", metavar="[START]:[END]", help="Only this range of revisions.")
@click.option("--verbose", is_flag=True, help="Every field of each revision.")
@click.pass_context
@handled()
def history(ctx: click.Context, rev_range: str | None, verbose: bool) -> None:
    """List the revisions, newest first (Alembic's history)."""
    from alembic import command

    project = project_of(ctx)
    project.script  # noqa: B018  (loads the revisions: a broken one is one line, not a traceback)
    command.history(project.config, rev_range=rev_range, verbose=verbose)


@click.command()
@click.option("--verbose", is_flag=True, help="Every field of each head.")
@click.pass_context
@handled()
def heads(ctx: click.Context, verbose: bool) -> None:
    """Show the head revision(s) of the scripts (Alembic's heads)."""
    from alembic import command

    project = project_of(ctx)
    project.script  # noqa: B018  (loads the revisions: a broken one is one line, not a traceback)
    command.heads(project.config, verbose=verbose)


@click.command()
@click.argument("revision")
@click.pass_context
@handled()
def show(ctx: click.Context, revision: str) -> None:
    """Show one revision (Alembic's show)."""
    from alembic import command

    project = project_of(ctx)
    command.show(project.config, project.revision(revision).revision)


@click.command()
@click.option("-m", "--message", required=True, help="What the revision does.")
@click.option("--rev-id", help="Use this revision id instead of a generated one.")
@click.pass_context
@handled()
def revision(ctx: click.Context, message: str, rev_id: str | None) -> None:
    """Write a new revision file from the ClickHouse template."""
    project = project_of(ctx)
    head = project.single_head()
    created = project.script.generate_revision(
        rev_id or _new_rev_id(), message, head=head if head != "base" else "base"
    )
    assert created is not None
    echo(f"wrote {created.path}")


@click.command()
@click.option("-m", "--message", required=True, help="What the merge joins.")
@click.pass_context
@handled()
def merge(ctx: click.Context, message: str) -> None:
    """Write a revision that joins all current heads into one."""
    project = project_of(ctx)
    heads = project.script.get_heads()
    if len(heads) < 2:
        raise usage_error("there is only one head; nothing to merge")
    created = project.script.generate_revision(_new_rev_id(), message, head=list(heads))
    assert created is not None
    echo(f"wrote {created.path}")


def _new_rev_id() -> str:
    import uuid

    return uuid.uuid4().hex[:12]
