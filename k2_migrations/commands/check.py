"""Drift: the schema each run left is recorded; ``check`` compares the live schema with it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k2_migrations.commands.project import Project, Settings
from k2_migrations.commands.session import Session, open_session
from k2_migrations.errors import UsageError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

#: How an edit is accepted, named by every message about edited revisions.
ACCEPT_HINT = (
    "if the edit is intended (it changes nothing already applied), k2-migrate accept REVISION... records "
    "the files as they are now; else restore them"
)


def _heads_key(heads: tuple[str, ...]) -> str:
    return ",".join(sorted(heads)) or "base"


def project_digests(project: Project) -> tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, str]]:
    """Each revision's source digest now, its parents, and its file (relative to the working directory)."""
    import os

    from alembic.util import to_tuple

    from k2_migrations.state.digests import revision_digest

    digests: dict[str, str] = {}
    parents: dict[str, tuple[str, ...]] = {}
    files: dict[str, str] = {}
    for script in project.script.walk_revisions():
        parents[script.revision] = tuple(to_tuple(script.down_revision, default=()))
        if script.path:
            digests[script.revision] = revision_digest(script.path)
            files[script.revision] = os.path.relpath(script.path)
    return digests, parents, files


def edited(project: Project, session: Session, heads: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """The applied revisions edited since their digest was recorded: each with its file and its
    digest now."""
    from k2_migrations.decisions.digests import edited_revisions
    from k2_migrations.state.versions import read_digests

    current, parents, files = project_digests(project)
    found = edited_revisions(read_digests(session.client, session.database), current, heads, parents)
    return [(revision, files[revision], current[revision]) for revision in found]


def edited_message(found: list[tuple[str, str, str]]) -> str:
    """The one line naming edited revisions and how to accept the edit."""
    shown = ", ".join(f"{revision} ({file})" for revision, file, _ in found)
    return f"revision(s) edited after they were applied: {shown}; {ACCEPT_HINT}"


def record_schema(session: Session, databases: set[str], heads: tuple[str, ...], *, ran: bool = True) -> None:
    """Record the schema the revisions left, so ``check`` can tell drift from it later.

    Covers the databases this run touched and those the previous record covered: a database a
    downgrade dropped is recorded as absent. A run that ran no revision (``ran`` False) left the
    schema as it found it: it records nothing when these heads have a record already — recording
    then would take any drift since for what the revisions left, and hide it from ``check``.
    """
    import json

    from k2_migrations.introspection.catalog import Catalog
    from k2_migrations.introspection.shape import read_schema, shape_to_json

    if not ran and session.snapshots.recorded_schema(_heads_key(heads)) is not None:
        return
    previous = session.snapshots.recorded_schema()
    covered = databases | (set(json.loads(previous)) if previous else set())
    covered.discard(session.database)
    schema = read_schema(Catalog(session.client), covered)
    document = {
        db: None if shapes is None else {name: shape_to_json(shape) for name, shape in shapes.items()}
        for db, shapes in schema.items()
    }
    session.snapshots.record_schema(_heads_key(heads), session.journal.run_id, json.dumps(document))


def check(settings: Settings) -> tuple[str, list[str]]:
    """Compare the live schema with the one recorded when the current revision was applied.

    The heads come from the no-op fast path's read (:func:`~k2_migrations.commands.fastpath.settled_read`:
    one query, no lock, no Alembic) where it can make it and finds no applied revision edited; else
    from the session, with Alembic's revisions for the digests (which names the edited ones).
    """
    from k2_migrations.commands.fastpath import settled_read
    from k2_migrations.state.snapshots import Snapshots

    with settled_read(settings, "check", unedited=True) as seen:
        if seen is not None:
            key = _heads_key(seen.state.heads)
            return _compare(seen.client, key, Snapshots(seen.client, seen.database).recorded_schema(key), [])
        project = Project(settings)
        with open_session(project) as session:
            heads = session.heads()
            key = _heads_key(heads)
            changed = edited(project, session, heads)
            recorded = session.snapshots.recorded_schema(key) if session.journal.exists() else None
            return _compare(session.client, key, recorded, changed)


def _compare(
    client: Client, key: str, recorded: str | None, changed: list[tuple[str, str, str]]
) -> tuple[str, list[str]]:
    """The differences between the live schema and the one ``recorded`` at heads ``key``, then the
    ``changed`` (edited) revisions; no record is a usage error."""
    import json

    from k2_migrations.introspection.catalog import Catalog
    from k2_migrations.introspection.dependencies import broken_views
    from k2_migrations.introspection.shape import diff_schema, read_schema, shape_from_json

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
    live = read_schema(Catalog(client), set(expected))
    broken = broken_views(Catalog(client), {db for db, shapes in live.items() if shapes is not None})
    found = [d.describe() for d in diff_schema(expected, live)]
    found += [f"{view} view does not compile: {reason}" for view, reason in broken]
    if changed:
        found.append(edited_message(changed))
    return key, found
