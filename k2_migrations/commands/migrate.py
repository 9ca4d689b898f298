"""Running commands: the project's revisions, an open session, and Alembic underneath.

:class:`Project` is alembic.ini plus the revision scripts it points at, loaded with every user error
(unknown or ambiguous revision, syntax error, missing ``down_revision``, a cycle, two heads) turned
into one line. :class:`Session` is an open connection with the migrations database (version table,
journal, snapshots, lock). :func:`migrate` runs an upgrade or downgrade through Alembic's
EnvironmentContext with the runtime attached, after taking the lock and settling what an earlier
crash left behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from k2_migrations.commands.check import edited, edited_message, record_schema
from k2_migrations.commands.project import Project, _alembic_message
from k2_migrations.commands.session import Session, open_session
from k2_migrations.config import (
    mask_secrets,
)
from k2_migrations.engine.context import RunContext, attach
from k2_migrations.engine.results import RunResult
from k2_migrations.errors import DriftDetected, InProgress, K2MigrateError, UsageError

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext, MigrationStep
    from alembic.script import Script, ScriptDirectory

    from k2_migrations.decisions.attempts import Attempt
    from k2_migrations.engine.executor import StepExecutor
    from k2_migrations.output.progress import Progress

StepsFn = Callable[[Any, "MigrationContext"], Iterable["MigrationStep"]]


# -- upgrade, downgrade, stamp ---------------------------------------------------------------------


def migrate(project: Project, direction: str, target: str, progress: Progress) -> RunResult:
    """Upgrade or downgrade to ``target`` under the lock, resuming or reverting an interrupted run."""
    from k2_migrations.engine.executor import StepExecutor

    script = project.script
    project.check_target(target)
    started = time.perf_counter()
    with open_session(project) as session:
        session.check_cluster()
        session.ensure_metadata()
        lock = session.lock()
        lock.acquire(project.settings.lock_timeout)
        runtime = StepExecutor(
            client=session.client,
            journal=session.journal,
            snapshots=session.snapshots,
            lock=lock,
            progress=progress,
            client_factory=session.backend.new_client,
            cluster=session.cluster,
        )
        heads_before: tuple[str, ...] = ()
        heads_after: tuple[str, ...] = ()
        try:
            session.check_cluster(lock)
            attempt = session.journal.in_progress()
            heads_before = session.ensure_version_state(attempt)
            if direction == "up":
                changed = edited(project, session, heads_before)
                if changed:
                    raise DriftDetected(edited_message(changed))
            attempt = _settle(runtime, attempt, heads_before)
            steps = _steps_fn(script, direction, target)
            with runtime.interruptible():
                _run_alembic(
                    project, session, runtime, _instrument(project, runtime, steps, attempt, direction)
                )
            heads_after = session.heads()
            record_schema(session, runtime.databases, heads_after, ran=bool(runtime.revisions))
        finally:
            runtime.restart_all_merges()
            lock.release()
    return RunResult(
        command=direction,
        target=target,
        url=session.backend.target.display(),
        heads_before=heads_before,
        heads_after=heads_after,
        runtime=runtime,
        elapsed_s=time.perf_counter() - started,
        lock_broken=lock.broken_stale.describe() if lock.broken_stale else None,
    )


def _settle(runtime: StepExecutor, attempt: Attempt | None, heads: tuple[str, ...]) -> Attempt | None:
    """Close an attempt whose version change did commit (the crash came after it)."""
    if attempt is None or attempt.revert:
        return attempt  # a revert is never committed by the version table: it leaves it as it was
    # The version table is the commit point: it changes only after the revision's function returned.
    committed = attempt.revision in heads if attempt.direction == "up" else attempt.revision not in heads
    if committed:
        runtime.close_attempt(attempt, "done")
        return None
    return attempt


def _steps_fn(script: ScriptDirectory, direction: str, target: str) -> StepsFn:
    # The same calls alembic.command.upgrade/downgrade make to compute the steps.
    if direction == "up":
        return lambda heads, context: script._upgrade_revs(target, heads)
    return lambda heads, context: script._downgrade_revs(target, heads)


def _instrument(
    project: Project, runtime: StepExecutor, steps_fn: StepsFn, attempt: Attempt | None, direction: str
) -> StepsFn:
    """Wrap each revision step with the runtime's revision boundaries; resume or revert first."""

    def steps(heads: Any, context: MigrationContext) -> Iterator[MigrationStep]:
        try:
            planned = list(steps_fn(heads, context))
        except Exception as exc:
            raise UsageError(f"{_alembic_message(exc)}; k2-migrate history lists the revisions") from None
        if attempt is not None and attempt.revert:
            if attempt.direction == direction:
                _revert(project, runtime, attempt, resume=True)  # finish the interrupted revert
            else:
                runtime.close_attempt(attempt, "abandoned")  # the revision runs again from its start
        elif attempt is not None:
            if attempt.direction == direction:
                first = planned[0].revision.revision if planned else None  # type: ignore[attr-defined]
                if first != attempt.revision:
                    raise InProgress(in_progress_message(project, attempt))
            else:
                _revert(project, runtime, attempt, resume=False)
        for step in planned:
            yield _wrap_step(runtime, step, attempt)

    return steps


def _wrap_step(runtime: StepExecutor, step: MigrationStep, attempt: Attempt | None) -> MigrationStep:
    script: Script = step.revision  # type: ignore[attr-defined]
    direction = "up" if step.is_upgrade else "down"
    resume = (
        attempt
        if attempt and attempt.revision == script.revision and attempt.direction == direction
        else None
    )
    original = step.migration_fn

    def run(**kw: Any) -> None:
        runtime.begin_revision(script.revision, direction, script.doc or "", resume)
        started = time.perf_counter()
        with _failures_journaled(runtime, script):
            original(**kw)
            _views_compile(runtime, script.revision)
        runtime.revisions[-1].elapsed_s = time.perf_counter() - started
        runtime.end_revision("migrated")

    step.migration_fn = run
    return step


def _views_compile(runtime: StepExecutor, revision: str) -> None:
    """Stop the run (exit 8, the revision left in progress) when a view of a database the run touched no
    longer compiles (2-3 ms a view): renaming or dropping what a view reads breaks it silently."""
    from k2_migrations.introspection.dependencies import broken_views

    if runtime.planning:
        return
    broken = broken_views(runtime.catalog, runtime.databases)
    if broken:
        shown = "; ".join(f"{view}: {reason}" for view, reason in broken)
        raise DriftDetected(
            f"after revision {revision}, view(s) no longer compile: {shown}; fix the revision (or its "
            "downgrade reverts it) and run the same command again"
        )


def _revert(project: Project, runtime: StepExecutor, attempt: Attempt, *, resume: bool) -> None:
    """Undo a half-applied revision by running its opposite function (every operation is idempotent).

    The interrupted attempt is closed first: from then on its steps' effects are being undone, and a
    crash in the middle leaves this revert in progress (finished by the same command, or abandoned
    by the opposite one, which then runs the revision again from its first step).

    It runs inside Alembic's own ``Operations.context`` (this is called while Alembic iterates the
    steps), so ``op`` is already there; a context of its own would remove ``op`` on leaving, under
    the revisions that run after it in the same command.
    """
    script = project.revision(attempt.revision)
    if resume:
        direction = attempt.direction
    else:
        direction = "down" if attempt.direction == "up" else "up"
        runtime.close_attempt(attempt, "reverted")
    function = script.module.downgrade if direction == "down" else script.module.upgrade
    runtime.begin_revision(
        script.revision, direction, "revert an interrupted run", attempt if resume else None, revert=True
    )
    started = time.perf_counter()
    with _failures_journaled(runtime, script):
        function()
    runtime.revisions[-1].elapsed_s = time.perf_counter() - started
    runtime.end_revision("done")


@contextmanager
def _failures_journaled(runtime: StepExecutor, script: Script) -> Iterator[None]:
    """Journal the running revision as failed when its function raises; a Python error from the
    revision's own code becomes one line naming the file and line (see :func:`_revision_error`)."""
    try:
        yield
    except K2MigrateError as exc:
        runtime.end_revision("failed", exc.message)
        raise
    except Exception as exc:
        error = _revision_error(script, exc)
        runtime.end_revision(
            "failed", error.message if error else mask_secrets(str(exc)) or type(exc).__name__
        )
        if error is None:
            raise
        raise error from None
    except BaseException as exc:  # a second Ctrl-C, SystemExit
        runtime.end_revision("failed", mask_secrets(str(exc)) or type(exc).__name__)
        raise


def _revision_error(script: Script, exc: Exception) -> UsageError | None:
    """A Python error raised by a revision's own code, as one line naming the file and the line.

    None when no frame of the revision file is in the traceback: the error is k2-migrate's own.
    """
    import traceback

    path = os.path.realpath(script.path)
    lines = [
        f.lineno for f in traceback.extract_tb(exc.__traceback__) if os.path.realpath(f.filename) == path
    ]
    if not lines:
        return None
    detail = mask_secrets(str(exc)).strip().splitlines()
    return UsageError(
        f"revision {script.revision} ({os.path.relpath(path)}, line {lines[-1]}) raised "
        f"{type(exc).__name__}: {detail[0] if detail else 'no detail'}; fix the revision and run the same "
        "command again: it resumes at the step that failed"
    )


def in_progress_message(project: Project, attempt: Attempt) -> str:
    """What is half-done, and the two commands that settle it and do nothing else.

    ``upgrade REVISION`` and ``downgrade PARENT`` stop at the revision either way: one finishes an
    interrupted upgrade (or reverts an interrupted downgrade), the other finishes an interrupted
    downgrade (or reverts an interrupted upgrade); an interrupted revert is finished by the command
    that started it, or abandoned by the other, which runs the revision again from its first step.
    """
    revision = attempt.revision
    up = f"k2-migrate upgrade {revision}"
    down = f"k2-migrate downgrade {_parent(project, revision)}"
    if attempt.revert:
        undone = "upgrade" if attempt.direction == "down" else "downgrade"
        finish, again = (down, up) if attempt.direction == "down" else (up, down)
        return (
            f"revision {revision} is half-applied (an interrupted revert of its {undone}); run {finish} "
            f"to finish the revert, or {again} to run its {undone} again from its first step, before "
            "anything else"
        )
    verb = "upgrade" if attempt.direction == "up" else "downgrade"
    resume, revert = (up, down) if attempt.direction == "up" else (down, up)
    return (
        f"revision {revision} is half-applied (an interrupted {verb}); run {resume} to resume it, or "
        f"{revert} to revert it, before anything else"
    )


def _parent(project: Project, revision: str) -> str:
    """The target just below ``revision``: its parent, ``base`` for a first revision, and for a merge
    either parent (a downgrade to one leaves the other branch, which is no descendant of it, as it is)."""
    try:
        down = project.revision(revision).down_revision
    except UsageError:
        return "to its parent (restore its file in the versions directory first)"
    if down is None:
        return "base"
    return down if isinstance(down, str) else down[0]


def _run_alembic(project: Project, session: Session, runtime: StepExecutor, steps: StepsFn) -> None:
    from alembic.runtime.environment import EnvironmentContext

    script = project.script

    def on_applied(**kw: Any) -> None:
        runtime.end_revision("done")

    attach(
        project.config,
        RunContext(
            session.database,
            session.backend.connection,
            runtime,
            on_version_apply=on_applied,
            cluster=session.cluster,
        ),
    )
    with EnvironmentContext(project.config, script, fn=steps):
        script.run_env()
