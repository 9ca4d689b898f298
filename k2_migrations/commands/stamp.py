"""``stamp``: set the version state without running revisions, under the lock, refused mid-revision."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from k2_migrations.commands.migrate import in_progress_message
from k2_migrations.commands.project import Project
from k2_migrations.commands.session import open_session
from k2_migrations.engine.context import RunContext, attach
from k2_migrations.errors import InProgress

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext, MigrationStep

    from k2_migrations.output.progress import Progress


def stamp(project: Project, target: str, progress: Progress) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Set the version table without running revisions (under the lock; refused mid-revision)."""
    from alembic.runtime.environment import EnvironmentContext

    from k2_migrations.engine.executor import StepExecutor

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
            runtime = StepExecutor(
                client=session.client, journal=session.journal, snapshots=None, lock=lock, progress=progress
            )
            attach(project.config, RunContext(session.database, session.backend.connection, runtime))

            def steps(heads: Any, context: MigrationContext) -> Iterable[MigrationStep]:
                return script._stamp_revs(target, heads)

            with EnvironmentContext(project.config, script, fn=steps, destination_rev=target):
                script.run_env()
            session.journal.write("run", "stamped", revision=target, operation=f"stamp {target}")
            after = session.heads()
        finally:
            lock.release()
    return before, after
