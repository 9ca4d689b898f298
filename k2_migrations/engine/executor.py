"""The run-time of one ``upgrade``/``downgrade``/``plan``: what operations execute through.

:class:`StepExecutor` is attached to Alembic's MigrationContext (``opts["k2_runtime"]``). Every ClickHouse
operation a revision invokes on ``op`` comes here through :meth:`StepExecutor.run_step`, which

- refuses to start a step after Ctrl-C or after the run lost its lock (a safe point);
- on a resumed attempt, skips steps the journal has as done (replaying what they left in memory,
  such as a guard's baseline) and re-checks the step that was running against the live state;
- journals the step ``started`` and then ``done`` or ``failed``, with its SQL, timing and payload;
- collects what the run's summary reports: guards, checks, timed intervals, progress.

In planning mode nothing executes: each step is recorded with its SQL and guards for ``plan``.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from k2_migrations.config import mask_secrets
from k2_migrations.engine.results import CheckResult, DroppedTable, GuardResult, RevisionReport, StepReport
from k2_migrations.errors import InProgress, Interrupted, K2MigrateError, LockHeld, SqlFailed
from k2_migrations.introspection.catalog import Catalog
from k2_migrations.sqltext.quoting import qualified

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from k2_migrations.engine.context import Operation, ProgressSink
    from k2_migrations.state.journal import Attempt, Journal
    from k2_migrations.state.lock import MigrationLock
    from k2_migrations.state.snapshots import Snapshots


class StepExecutor:
    """Executes, journals, resumes and reports the operations of one run."""

    def __init__(
        self,
        *,
        client: Client | None,
        journal: Journal | None,
        snapshots: Snapshots | None,
        lock: MigrationLock | None,
        progress: ProgressSink,
        planning: bool = False,
        client_factory: Callable[[], Client] | None = None,
    ) -> None:
        self._client = client
        self.client_factory = client_factory
        self.journal = journal
        self.snapshots = snapshots
        self.lock = lock
        self.progress = progress
        self.planning = planning
        self.revisions: list[RevisionReport] = []
        self.guard_results: list[GuardResult] = []
        self.checks: list[CheckResult] = []
        self.intervals: dict[tuple[str, str], float] = {}
        self.guard_baselines: dict[str, tuple[dict[str, int], dict[str, str]]] = {}
        self.dropped_on_purpose: dict[str, DroppedTable] = {}
        self.interval_starts: dict[str, float] = {}
        self.stopped_merges: set[tuple[str, str]] = set()
        self.databases: set[str] = set()
        self._stopped_by = ""  # what asked the run to stop at the next step: Ctrl-C or SIGTERM
        self._cut = ""  # where a second Ctrl-C stopped the run inside the running step
        self._revision: RevisionReport | None = None
        self._attempt_id = ""
        self._resume: Attempt | None = None
        self._step = 0
        self._statements: list[str] = []
        self._resuming_step = False

    # -- what operations use -------------------------------------------------------------------

    @property
    def client(self) -> Client:
        assert self._client is not None, "no connection in planning mode"
        return self._client

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.client)

    @property
    def revision(self) -> str:
        return self._revision.revision if self._revision else ""

    @property
    def attempt_id(self) -> str:
        return self._attempt_id

    @property
    def step(self) -> int:
        """The index of the running step within its revision (1-based, as progress lines show it)."""
        return self._step

    @property
    def resuming_step(self) -> bool:
        """True when the current step was started by an earlier run that did not finish it."""
        return self._resuming_step

    def execute(self, sql: str) -> None:
        """Run one statement, remember it for the journal and log it (see :func:`_sent`)."""
        self._statements.append(sql)
        with _sent(sql):
            self.client.command(sql)

    def journal_now(self) -> None:
        """Make the journal rows held back so far durable, the running step's ``started`` included.

        For a step about to leave a state that only its journal row explains to the next run (a
        partition move's half-built destination).
        """
        if self.journal is not None:
            self.journal.flush()

    def execute_together(self, statements: list[str]) -> None:
        """Run independent statements at the same time, each on a client of its own.

        For statements that mostly wait (dropping a Kafka table waits for its consumer to stop):
        run together, their waits overlap instead of adding up.
        """
        if len(statements) < 2 or self.client_factory is None:
            for sql in statements:
                self.execute(sql)
            return
        from concurrent.futures import ThreadPoolExecutor

        factory = self.client_factory

        def run(sql: str) -> None:
            client = factory()
            try:
                with _sent(sql):  # each with its own duration: they overlap
                    client.command(sql)
            finally:
                client.close()

        self._statements.extend(statements)
        with ThreadPoolExecutor(len(statements)) as pool:
            for future in [pool.submit(run, sql) for sql in statements]:
                future.result()

    def stop_merges(self, database: str, table: str) -> None:
        if (database, table) not in self.stopped_merges:
            self.execute(f"SYSTEM STOP MERGES {qualified(database, table)}")
            self.stopped_merges.add((database, table))

    def start_merges(self, database: str, table: str) -> None:
        if (database, table) in self.stopped_merges:
            self.stopped_merges.discard((database, table))
            if self.catalog.exists(database, table):
                self.execute(f"SYSTEM START MERGES {qualified(database, table)}")

    @contextmanager
    def merges_held(self, database: str, table: str) -> Iterator[None]:
        """Hold merges on a collapsing table while it is counted and moved, unless a guard already is."""
        held_before = (database, table) in self.stopped_merges
        self.stop_merges(database, table)
        try:
            yield
        finally:
            if not held_before:
                self.start_merges(database, table)

    def restart_all_merges(self) -> None:
        for database, table in sorted(self.stopped_merges):
            try:
                self.start_merges(database, table)
            except Exception as exc:  # best effort at the end of a run; say so instead of hiding it
                self.progress.line(f"  warning: could not restart merges on {database}.{table}: {exc}")

    # -- revisions -----------------------------------------------------------------------------

    def begin_revision(
        self, revision: str, direction: str, description: str, resume: Attempt | None, *, revert: bool = False
    ) -> None:
        import uuid

        self._revision = RevisionReport(
            revision, direction, description, resumed=resume is not None, reverted=revert
        )
        self.revisions.append(self._revision)
        self._step = 0
        self._resume = resume
        self._attempt_id = resume.attempt_id if resume else uuid.uuid4().hex[:16]
        arrow = "↑" if direction == "up" else "↓"
        verb = "resuming" if resume else ("planning" if self.planning else "applying")
        self.progress.line(f"{arrow} {verb} {revision} ({direction}): {description}")
        self._journal_revision(
            self._attempt_id,
            revision,
            direction,
            "started",
            operation=description,
            payload={"revert": revert},
        )

    def end_revision(self, status: str, error: str = "") -> None:
        if self._revision is None:
            return
        self._journal_revision(
            self._attempt_id, self._revision.revision, self._revision.direction, status, error=error
        )
        if status != "migrated":
            self._revision = None

    def close_attempt(self, attempt: Attempt, status: str) -> None:
        """Mark an attempt finished from outside its run (its version change committed before a crash, or it was reverted)."""
        self._journal_revision(attempt.attempt_id, attempt.revision, attempt.direction, status)

    def _journal_revision(
        self,
        attempt_id: str,
        revision: str,
        direction: str,
        status: str,
        *,
        operation: str = "",
        error: str = "",
        payload: dict[str, Any] | None = None,
    ) -> None:
        if self.journal and not self.planning:
            self.journal.write(
                "revision",
                status,
                attempt_id=attempt_id,
                revision=revision,
                direction=direction,
                operation=operation,
                error=error,
                payload=payload,
            )

    # -- steps -----------------------------------------------------------------------------

    def run_step(self, operation: Operation) -> None:
        assert self._revision is not None, "operations run inside a revision"
        self._step += 1
        index = self._step
        key = operation.describe()
        self.databases |= operation.touches()
        if self.planning:
            self._revision.steps.append(
                StepReport(index, key, "planned", sql=operation.render(), guards=operation.guard_notes())
            )
            return
        if self._stopped_by:
            raise Interrupted(
                f"stopped by {self._stopped_by} before step {index} of {self.revision}; "
                "run the same command again to resume from this step"
            )
        if self.lock is not None and self.lock.lost:
            raise LockHeld(
                f"the migration lock was lost before step {index} of {self.revision} (broken or expired); "
                "check k2-migrate lock, then run the same command again to resume"
            )
        prior = self._resume.steps.get(index) if self._resume else None
        # A step that was done must be the same step now; the one that failed may have been fixed.
        if prior is not None and prior.status == "done" and prior.operation != mask_secrets(key):
            raise InProgress(
                f"revision {self.revision} changed since its interrupted run: step {index} was "
                f"{prior.operation!r}, now {key!r}; restore the revision file as it was, resume, then change it"
            )
        if prior is not None and prior.status == "done":
            operation.replay(self, prior.payload)
            self._revision.steps.append(StepReport(index, key, "skipped", note="done in an earlier run"))
            self.progress.line(f"  [{index}] {key}: already done")
            return
        self._resuming_step = prior is not None
        self._statements = []
        self.progress.line(f"  [{index}] {key}" + (" (re-checking the interrupted step)" if prior else ""))
        self._journal_step(index, key, "started", defer=True)
        started = time.perf_counter()
        try:
            payload = operation.apply(self) or {}
        except K2MigrateError as exc:
            self._journal_step(index, key, "failed", error=exc.message, started=started)
            raise
        except Exception as exc:
            message = _first_line(mask_secrets(str(exc)))
            self._drain()
            self._journal_step(index, key, "failed", error=message, started=started)
            raise SqlFailed(
                f"step {index} of {self.revision} ({key}) failed: {message}; fix the cause and run the "
                "same command again: the revision resumes at this step"
            ) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        note = str(payload.get("note", ""))
        self._journal_step(
            index, key, "done", payload=payload, started=started, defer=not operation.journal_eagerly
        )
        self._revision.steps.append(StepReport(index, key, "done", elapsed_ms, note, list(self._statements)))
        self.progress.line(f"      done in {elapsed_ms / 1000:.2f}s" + (f": {note}" if note else ""))

    def _drain(self) -> None:
        """Absorb what a statement that failed mid-stream left on the connection.

        Over chDB, a query that fails after it started streaming (``throwIf`` in a SELECT, say)
        leaves the rest of its error in the connection, and the next statement's result carries it.
        A throwaway ``SELECT 1`` takes it, so the journal write that follows is clean.
        """
        try:
            self.client.command("SELECT 1")
        except Exception:
            return

    def _journal_step(
        self,
        index: int,
        key: str,
        status: str,
        *,
        error: str = "",
        payload: dict[str, Any] | None = None,
        started: float | None = None,
        defer: bool = False,
    ) -> None:
        if self.journal is None:
            return
        assert self._revision is not None
        self.journal.write(
            "step",
            status,
            attempt_id=self._attempt_id,
            revision=self._revision.revision,
            direction=self._revision.direction,
            step=index,
            operation=key,
            sql=";\n".join(self._statements),
            elapsed_ms=0.0 if started is None else (time.perf_counter() - started) * 1000,
            error=error,
            payload=payload,
            defer=defer,
        )

    # -- summary items -------------------------------------------------------------------------

    def now(self) -> float:
        """Wall-clock seconds, comparable across processes (a timed interval may span a crash)."""
        return datetime.now(UTC).timestamp()

    # -- Ctrl-C and SIGTERM ------------------------------------------------------------------

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Ctrl-C or SIGTERM: stop at the next step boundary; a second Ctrl-C: stop now.

        A deploy system's SIGTERM asks for the same orderly stop as a first Ctrl-C (exit 130, the
        next run resumes). The second Ctrl-C raises KeyboardInterrupt in the main thread; the step
        it cuts is journaled ``started``/``failed``, so the next run re-checks it against the live
        state, and the run ends with :class:`Interrupted` saying so.

        Python runs a signal handler only in the main thread, between bytecodes, and once for
        signals that arrived while it could not run: while the main thread waits inside the
        embedded engine, two Ctrl-C make one late call. The C-level handler also writes every
        signal to a wakeup fd at once, so a watcher thread counts them there (see
        :meth:`_watch_signals`); the handler only raises once the watcher has decided to cut.
        """
        if self.planning or threading.current_thread() is not threading.main_thread():
            yield
            return

        closing = False

        def handler(signum: int, frame: FrameType | None) -> None:
            self._stopped_by = self._stopped_by or _SIGNAL_NAMES[signum]
            if self._cut and not closing:
                raise KeyboardInterrupt

        reader, writer = socket.socketpair()
        writer.setblocking(False)
        previous = {signum: signal.signal(signum, handler) for signum in _SIGNAL_NAMES}
        previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        watcher = threading.Thread(
            target=self._watch_signals, args=(reader,), name="k2-migrate-signals", daemon=True
        )
        watcher.start()
        try:
            yield
        except BaseException:
            if not self._cut:
                raise
            # Whatever the cut raised first (KeyboardInterrupt, or the cancelled statement's error).
            raise Interrupted(
                f"stopped at once by a second Ctrl-C in {self._cut}: the step was cut short; run the same "
                "command again: it re-checks that step against the live state and resumes"
            ) from None
        finally:
            closing = True  # a cut decided from here on finds the revisions over: nothing left to cut
            signal.set_wakeup_fd(previous_fd)
            writer.close()  # the watcher reads the end of its stream and returns
            watcher.join()
            for signum, previous_handler in previous.items():  # runs a pending handler first
                signal.signal(signum, previous_handler)
            reader.close()

    def _watch_signals(self, reader: socket.socket) -> None:
        """Announce each stop request the moment it arrives; on the second Ctrl-C, cut the step.

        Cutting cancels the statements the embedded engine was running (its wait does not end for
        a signal), then signals the main thread again so that the handler runs, now raising, even
        if it already ran for both Ctrl-C. A server's statement is a socket wait: that signal
        interrupts it.
        """
        sigints = 0
        while data := reader.recv(64):
            for signum in data:
                if signum == signal.SIGTERM:
                    self.progress.line("  SIGTERM: stopping after the current step")
                elif signum == signal.SIGINT:
                    sigints += 1
                    if sigints == 1:
                        self.progress.line(
                            "  Ctrl-C: stopping after the current step (press again to stop at once)"
                        )
                    elif sigints == 2:  # a third is the signal sent here
                        self.progress.line("  Ctrl-C again: stopping now")
                        running = self._revision  # the main thread may end it meanwhile
                        self._cut = f"step {self._step} of {running.revision}" if running else "the run"
                        self._cancel_running(time.monotonic())
                        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    def _cancel_running(self, since: float) -> None:
        """Cancel the embedded engine's statements that were running at ``since``.

        Every statement of an embedded engine belongs to this process. Only those already running
        when Ctrl-C came are cancelled: the journal rows the main thread writes on its way out
        start later and must not be.
        """
        if self.lock is None or not self.lock.embedded or self.client_factory is None:
            return
        try:
            client = self.client_factory()
            try:
                age = time.monotonic() - since
                client.command(f"KILL QUERY WHERE elapsed >= {age:.3f} AND query_id != queryID() ASYNC")
            finally:
                client.close()
        except Exception as exc:  # the stop then waits for the statement; say why instead of hiding it
            self.progress.line(f"  warning: could not cancel the running statement: {_first_line(str(exc))}")


#: The signals that ask a run to stop, by the name messages use.
_SIGNAL_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0][:400] if stripped else "no detail"


#: Every statement a run sends, with its duration (``-v`` sets it to INFO; see :mod:`k2_migrations.cli.app`).
SQL_LOG = logging.getLogger("k2_migrations.sql")


@contextmanager
def _sent(sql: str) -> Iterator[None]:
    """Log ``sql`` (passwords masked) around sending it: at DEBUG in full before it goes, so a
    statement that hangs is on record, and at INFO on one line with its duration once it returns or
    fails. The standard logging module and not the progress lines: where it goes, and how much of
    it, is the configuration's to say (``[loggers]`` of alembic.ini)."""
    if not SQL_LOG.isEnabledFor(logging.INFO):
        yield
        return
    text = mask_secrets(sql)
    SQL_LOG.debug("sending: %s", text)
    started = time.monotonic()
    outcome = "failed after "
    try:
        yield
        outcome = ""
    finally:
        SQL_LOG.info("%s  -- %s%.3f s", _one_line(text), outcome, time.monotonic() - started)


def _one_line(sql: str) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= 160 else flat[:157] + "..."
