"""What would run, without running it: ``plan`` against the live version state, and ``--sql`` scripts."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from k2_migrations.commands.migrate import _instrument, _steps_fn, in_progress_message
from k2_migrations.commands.project import Project, _alembic_message
from k2_migrations.commands.session import open_session
from k2_migrations.engine.context import RunContext, attach
from k2_migrations.errors import K2MigrateError, UsageError

if TYPE_CHECKING:
    from k2_migrations.engine.executor import StepExecutor
    from k2_migrations.output.progress import Progress


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
    cluster = None
    if project.cluster is not None:
        from k2_migrations.introspection.topology import offline_cluster_mode

        cluster = offline_cluster_mode(project.cluster)
    attach(project.config, RunContext(project.migrations_database, cluster=cluster))
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


def plan(project: Project, target: str, progress: Progress) -> tuple[str, tuple[str, ...], StepExecutor]:
    """What an upgrade or downgrade to ``target`` would do, read against the live version table."""
    from alembic.runtime.environment import EnvironmentContext

    from k2_migrations.engine.executor import StepExecutor

    script = project.script
    project.check_target(target)
    with open_session(project) as session:
        heads = session.heads()
        attempt = session.journal.in_progress()
        cluster = session.cluster
    if len(heads) > 1:
        raise UsageError(f"the database has {len(heads)} heads ({', '.join(heads)}); plan one at a time")
    current = heads[0] if heads else None
    direction = _direction(project, current, target)
    runtime = StepExecutor(
        client=None,
        journal=None,
        snapshots=None,
        lock=None,
        progress=progress,
        planning=True,
        cluster=cluster,
    )
    steps = _instrument(project, runtime, _steps_fn(script, direction, target), None, direction)
    attach(project.config, RunContext(project.migrations_database, runtime=runtime, cluster=cluster))
    if attempt is not None:
        progress.line(f"note: {in_progress_message(project, attempt)}")
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
