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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from k2_migrations.config import mask_secrets
from k2_migrations.decisions.attempts import done_step
from k2_migrations.engine.results import CheckResult, DroppedTable, GuardResult, RevisionReport, StepReport
from k2_migrations.engine.signals import StopSignals
from k2_migrations.errors import InProgress, Interrupted, K2MigrateError, LockHeld, SqlFailed
from k2_migrations.introspection.catalog import Catalog
from k2_migrations.sqltext.quoting import qualified

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from k2_migrations.decisions.attempts import Attempt
    from k2_migrations.decisions.freshness import Freshness
    from k2_migrations.decisions.guards import Part
    from k2_migrations.engine.context import Operation, ProgressSink
    from k2_migrations.introspection.topology import ClusterMode
    from k2_migrations.state.journal import Journal
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
        cluster: ClusterMode | None = None,
    ) -> None:
        self._client = client
        #: Cluster mode (None: one server): where each statement goes, and each host's outcome.
        self.cluster = cluster
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
        self.guard_baselines: dict[str, tuple[dict[str, list[Part]], dict[str, str]]] = {}
        self.dropped_on_purpose: dict[str, DroppedTable] = {}
        self.interval_starts: dict[str, float] = {}
        self.interval_batches: dict[str, tuple[list[int], int]] = {}
        self.freshness: dict[tuple[str, str], Freshness] = {}
        self.stopped_merges: set[tuple[str, str]] = set()
        self.databases: set[str] = set()
        self.signals = StopSignals(progress, running=self._running, cancel=self._cancel_running)
        self._revision: RevisionReport | None = None
        self._attempt_id = ""
        self._resume: Attempt | None = None
        self._step = 0
        self._statements: list[str] = []
        self._hosts: dict[str, str] = {}
        #: This step's ON CLUSTER statements that did not finish on every host (journaled with it).
        self._incomplete: list[str] = []
        self._resuming_step = False

    # -- what operations use -------------------------------------------------------------------

    @property
    def client(self) -> Client:
        assert self._client is not None, "no connection in planning mode"
        return self._client

    @property
    def catalog(self) -> Catalog:
        cluster = self.cluster
        return Catalog(self.client, cluster.name if cluster is not None and not cluster.cloud else None)

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
        """Run one statement, remember it for the journal and log it (see :func:`_sent`).

        In cluster mode it goes where :class:`ClusterMode` sends it, and each host's outcome is
        kept for the step's journal row (a host that failed or fell behind stops the step).
        """
        sent = self.form(sql)
        self._statements.append(sent)
        with _sent(sent):
            self._run(self.client, sql, sent)

    def form(self, sql: str) -> str:
        """``sql`` as this run sends it: ON CLUSTER where cluster mode puts it, a revision's
        ``ON CLUSTER '{cluster}'`` removed on one server."""
        if self.cluster is not None:
            return self.cluster.form(sql)
        if "{cluster}" not in sql:
            return sql  # the common case, without loading the tokenizer
        from k2_migrations.introspection.topology import without_cluster

        return without_cluster(sql)

    def _run(self, client: Client, sql: str, sent: str) -> None:
        if self.cluster is None:
            client.command(sent)
            return
        from k2_migrations.introspection.topology import HostsBehind

        try:
            hosts = self.cluster.run(client, sql)
        except HostsBehind as exc:
            self._hosts.update(exc.journal())
            self._incomplete.append(sent)
            raise
        self._hosts.update({h.host: h.describe() for h in hosts if h.host not in self._hosts})

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

        def run(sql: str, sent: str) -> None:
            client = factory()
            try:
                with _sent(sent):  # each with its own duration: they overlap
                    self._run(client, sql, sent)
            finally:
                client.close()

        forms = [self.form(sql) for sql in statements]
        self._statements.extend(forms)
        with ThreadPoolExecutor(len(statements)) as pool:
            for future in [pool.submit(run, sql, sent) for sql, sent in zip(statements, forms, strict=True)]:
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
                StepReport(
                    index,
                    key,
                    "planned",
                    sql=[s if s.startswith("--") else self.form(s) for s in operation.render()],
                    guards=operation.guard_notes(),
                )
            )
            return
        if self.signals.stopped_by:
            raise Interrupted(
                f"stopped by {self.signals.stopped_by} before step {index} of {self.revision}; "
                "run the same command again to resume from this step"
            )
        if self.lock is not None and self.lock.lost:
            raise LockHeld(
                f"the migration lock was lost before step {index} of {self.revision} (broken or expired); "
                "check k2-migrate lock, then run the same command again to resume"
            )
        prior = self._resume.steps.get(index) if self._resume else None
        done = done_step(self._resume, index)
        # A step that was done must be the same step now; the one that failed may have been fixed.
        if done is not None and done.operation != mask_secrets(key):
            raise InProgress(
                f"revision {self.revision} changed since its interrupted run: step {index} was "
                f"{done.operation!r}, now {key!r}; restore the revision file as it was, resume, then change it"
            )
        if done is not None:
            operation.replay(self, done.payload)
            self._revision.steps.append(StepReport(index, key, "skipped", note="done in an earlier run"))
            self.progress.line(f"  [{index}] {key}: already done")
            return
        self._resuming_step = prior is not None
        self._statements = []
        self._hosts = {}
        self._incomplete = []
        self.progress.line(f"  [{index}] {key}" + (" (re-checking the interrupted step)" if prior else ""))
        self._journal_step(index, key, "started", defer=True)
        started = time.perf_counter()
        try:
            if prior is not None and self.cluster is not None:
                self._finish_on_every_host(prior.payload)
            payload = operation.apply(self) or {}
        except K2MigrateError as exc:
            hosts = {"hosts": self._hosts, "incomplete": self._incomplete} if self._hosts else None
            self._journal_step(index, key, "failed", error=exc.message, payload=hosts, started=started)
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
        if self._hosts:
            payload = {**payload, "hosts": self._hosts}
        note = str(payload.get("note", ""))
        self._journal_step(
            index, key, "done", payload=payload, started=started, defer=not operation.journal_eagerly
        )
        self._revision.steps.append(StepReport(index, key, "done", elapsed_ms, note, list(self._statements)))
        self.progress.line(f"      done in {elapsed_ms / 1000:.2f}s" + (f": {note}" if note else ""))

    def _finish_on_every_host(self, prior: dict[str, Any]) -> None:
        """Before re-checking a step whose ON CLUSTER statements did not finish on every host: say
        which hosts were behind, and send again those statements that re-run safely (CREATE ... IF
        NOT EXISTS and the like), so the hosts that had not run them do; the step's own re-check
        reads this host's state, which they leave as it is. The others are re-decided by the step."""
        behind = {h: outcome for h, outcome in (prior.get("hosts") or {}).items() if outcome != "done"}
        if not behind:
            return
        self.progress.line(
            "      earlier: " + "; ".join(f"{h} {outcome}" for h, outcome in sorted(behind.items()))
        )
        from k2_migrations.sqltext.cluster import reruns_safely

        for sent in prior.get("incomplete") or []:
            if reruns_safely(sent):
                self.progress.line(f"      sending again to every host: {_one_line(sent)}")
                self.execute(sent)

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
        """Ctrl-C or SIGTERM: stop at the next step boundary; a second Ctrl-C: stop now (see
        :class:`~k2_migrations.engine.signals.StopSignals`). Planning runs nothing to stop."""
        if self.planning or threading.current_thread() is not threading.main_thread():
            yield
            return
        with self.signals.watching():
            yield

    def _running(self) -> str:
        """What a second Ctrl-C cuts, for its message."""
        running = self._revision  # the main thread may end it meanwhile
        return f"step {self._step} of {running.revision}" if running else "the run"

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
