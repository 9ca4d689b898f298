"""``stamp``: set the version state without running revisions, under the lock, refused mid-revision."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from k2_migrations.commands.check import edited, project_digests
from k2_migrations.commands.migrate import in_progress_message
from k2_migrations.commands.project import Project, _alembic_message
from k2_migrations.commands.session import Session, open_session
from k2_migrations.engine.context import RunContext, attach
from k2_migrations.errors import InProgress, UsageError

if TYPE_CHECKING:
    from k2_migrations.output.progress import Progress
    from k2_migrations.state.lock import MigrationLock


def stamp(
    project: Project, targets: Sequence[str], progress: Progress, *, purge: bool = False
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Set the version state to ``targets`` without running revisions; the heads before and after.

    Without ``purge`` this is Alembic's own stamp (``alembic.command.stamp``) on the attached run:
    each target moves the branch it is on, and each change of heads is one INSERT through
    :func:`~k2_migrations.state.versions.record_step`. With ``purge``, Alembic would delete the
    version table's rows and stamp from nothing; the record is append-only, so the heads Alembic
    would stamp from nothing replace the current ones in one INSERT instead
    (:func:`~k2_migrations.state.versions.replace_heads`) — also when they name revisions this
    project does not have, which is what ``--purge`` is for.
    """
    from alembic import command
    from alembic.script.revision import ResolutionError, RevisionError
    from alembic.util import CommandError

    from k2_migrations.engine.executor import StepExecutor
    from k2_migrations.state.versions import replace_heads

    script = project.script
    for target in targets:
        project.check_target(target)
    with _settled_state(project) as (session, lock, before):
        try:
            if purge:
                # From no heads, every step of Alembic's stamp starts a branch at its revision.
                stamped = [r for step in script._stamp_revs(tuple(targets), ()) for r in step.to_revisions]
                digests = {r: d for r, d in project_digests(project)[0].items() if r in stamped}
                replace_heads(session.client, session.database, stamped, session.identity, digests)
            else:
                runtime = StepExecutor(
                    client=session.client,
                    journal=session.journal,
                    snapshots=None,
                    lock=lock,
                    progress=progress,
                    cluster=session.cluster,
                )
                attach(
                    project.config,
                    RunContext(
                        session.database, session.backend.connection, runtime, cluster=session.cluster
                    ),
                )
                command.stamp(project.config, list(targets))
        except (CommandError, RevisionError) as exc:
            # ScriptDirectory re-raises a revision error as a CommandError caused by it. Not in
            # Alembic's words: "identified by 'x'" would be masked as SQL's IDENTIFIED BY.
            unresolved = next((e for e in (exc, exc.__cause__) if isinstance(e, ResolutionError)), None)
            if unresolved is not None:
                raise UsageError(
                    f"the version record or the target names revision {unresolved.argument!r}, which this "
                    "project does not have; k2-migrate stamp --purge replaces heads the project does not know"
                ) from None
            raise UsageError(
                f"{_alembic_message(exc)}; k2-migrate history lists the revisions, and stamp --purge "
                "replaces heads this project does not know"
            ) from None
        operation = f"stamp {'--purge ' if purge else ''}{' '.join(targets)}"
        session.journal.write("run", "stamped", revision=" ".join(targets), operation=operation)
        after = session.heads()
    return before, after


def accept(project: Project, revisions: Sequence[str]) -> list[tuple[str, str]]:
    """Record the current source digest of edited applied revisions (``revisions``; none: every one
    edited), under the lock, as one change that keeps the heads; the revisions accepted, with files.

    A revision named that is not edited (or not applied) is refused: accepting it would say nothing.
    """
    from k2_migrations.state.versions import accept_edits

    with _settled_state(project) as (session, _, heads):
        found = {revision: (file, digest) for revision, file, digest in edited(project, session, heads)}
        named = [project.revision(r).revision for r in revisions] if revisions else sorted(found)
        unchanged = [r for r in named if r not in found]
        if unchanged:
            raise UsageError(
                f"revision(s) {', '.join(unchanged)} not edited since applied (or not applied); "
                "k2-migrate check names the edited ones"
            )
        digests = {r: found[r][1] for r in named}
        accept_edits(session.client, session.database, digests, heads, session.identity)
        if named:
            session.journal.write("run", "accepted", revision=" ".join(named), operation="accept edits")
    return [(r, found[r][0]) for r in named]


@contextmanager
def _settled_state(project: Project) -> Iterator[tuple[Session, MigrationLock, tuple[str, ...]]]:
    """The session, its lock held and the applied heads, for a command that writes the version state
    without running revisions: refused while a revision is half-applied (exit 7)."""
    with open_session(project) as session:
        session.check_cluster()
        session.ensure_metadata()
        lock = session.lock()
        lock.acquire(project.settings.lock_timeout)
        try:
            session.check_cluster(lock)
            attempt = session.journal.in_progress()
            if attempt is not None:
                raise InProgress(in_progress_message(project, attempt))
            yield session, lock, session.ensure_version_state(attempt)
        finally:
            lock.release()
