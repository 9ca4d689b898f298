"""The no-op fast path of ``upgrade head``: nothing pending is learnt without Alembic and without the lock.

A deploy runs ``k2-migrate upgrade head`` every time, usually with nothing to do. The normal path
imports Alembic, SQLAlchemy and the dialect, loads every revision and takes the lock before it finds
that out; here it is found out from:

1. the script's heads, read from the revision files' headers with :mod:`ast`, never importing them
   (:mod:`k2_migrations.commands.scriptheads`, cached by each file's stamp);
2. one query on a client without SQLAlchemy (:func:`k2_migrations.backends.open_client`): the
   migrations tables and their engines, the version record's heads with its newest ``seq``, every
   journal attempt's status with the journal's row count, and whether the schema was recorded at
   those heads; then the two watermarks once more;
3. :func:`k2_migrations.decisions.noop.noop_verdict` over those values.

Anything it is not sure of — an alembic.ini setting it does not model, a revision file it cannot read
as plain literals, a query that fails, a verdict of no — sends the run down the normal path, which
takes the lock and reads everything again under it. The client stays open meanwhile: on the embedded
engine the normal path's connection shares its engine instead of starting another. Cluster mode is
always the normal path. docs/safety.md ("The no-op fast path") says why an answer of "nothing to do"
given here is one the normal path would give.

``current`` and ``check`` answer from the same read (:func:`settled_read`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from k2_migrations.commands.scriptheads import CACHE_FILE, HeaderCache, read_script
from k2_migrations.decisions.noop import AttemptSummary, RevisionHeader, StateRead, Verdict, noop_verdict

if TYPE_CHECKING:
    from pathlib import Path

    from clickhouse_connect.driver.client import Client

    from k2_migrations.commands.project import Settings
    from k2_migrations.config import Target
    from k2_migrations.decisions.freshness import Freshness
    from k2_migrations.engine.results import CheckResult, GuardResult, RevisionReport, RunResult

LOG = logging.getLogger("k2_migrations.sql")

# -- the unlocked read -----------------------------------------------------------------------------


def _state_query(database: str) -> str:
    """The one query: tables, the record's heads and newest seq, journal attempts and row count,
    and whether the schema is recorded at the heads the script wants (``{key:String}``)."""
    record = f"`{database}`.k2_migrations_versions"
    journal = f"`{database}`.k2_migrations_journal"
    snapshots = f"`{database}`.k2_migrations_snapshots"
    return f"""
SELECT
  (SELECT groupArray((name, engine)) FROM system.tables WHERE database = {{d:String}}),
  (SELECT (groupArrayIf(revision, applied = 1), max(last_seq))
     FROM (SELECT revision, argMax(applied, seq) AS applied, max(seq) AS last_seq
             FROM {record} GROUP BY revision)),
  (SELECT (sum(n), arraySort(a -> a.5, groupArrayIf((attempt_id, revision, direction, status, first),
                                                    attempt_id != '')))
     FROM (SELECT attempt_id, count() AS n, argMin(revision, key) AS revision,
                  argMin(direction, key) AS direction, min(key) AS first,
                  if(countIf(kind = 'revision') > 0, argMaxIf(status, key, kind = 'revision'),
                     argMin(status, key)) AS status
             FROM (SELECT attempt_id, revision, direction, kind, status, (at, run_id, seq) AS key
                     FROM {journal})
            GROUP BY attempt_id)),
  (SELECT count() FROM {snapshots} WHERE object = '__schema__' AND revision = {{key:String}})
"""


def _watermark_query(database: str) -> str:
    return (
        f"SELECT (SELECT max(seq) FROM `{database}`.k2_migrations_versions),"
        f" (SELECT count() FROM `{database}`.k2_migrations_journal)"
    )


def _query(client: Client, sql: str, parameters: dict[str, str]) -> list[Any]:
    started = time.monotonic()
    rows = client.query(sql, parameters=parameters).result_rows
    LOG.info("%s  -- %.3f s", " ".join(sql.split())[:157] + "...", time.monotonic() - started)
    return list(rows[0])


def _query_rows(client: Client, sql: str) -> list[Any]:
    started = time.monotonic()
    rows = client.query(sql).result_rows
    LOG.info("%s  -- %.3f s", " ".join(sql.split())[:157] + "...", time.monotonic() - started)
    return list(rows)


def read_state(client: Client, database: str, key: str) -> tuple[StateRead, tuple[int, int]]:
    """The one query's values, and the watermarks read again after it (see :func:`noop_verdict`)."""
    tables, (heads, record_seq), (journal_rows, attempts), schema = _query(
        client, _state_query(database), {"d": database, "key": key}
    )
    state = StateRead(
        tables={str(name): str(engine) for name, engine in tables},
        heads=tuple(sorted(str(h) for h in heads)),
        record_seq=int(record_seq),
        journal_rows=int(journal_rows),
        attempts=tuple(AttemptSummary(str(a[0]), str(a[1]), str(a[2]), str(a[3])) for a in attempts),
        schema_recorded=int(schema) > 0,
    )
    seq_again, rows_again = _query(client, _watermark_query(database), {})
    return state, (int(seq_again), int(rows_again))


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class _NoRecords:
    """A run that ran nothing: the records :func:`~k2_migrations.output.report.run_text` reads."""

    revisions: list[RevisionReport] = field(default_factory=list)
    guard_results: list[GuardResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    intervals: dict[tuple[str, str], float] = field(default_factory=dict)
    freshness: dict[tuple[str, str], Freshness] = field(default_factory=dict)


def target_of(settings: Settings) -> Target:
    """The target as :meth:`Project.target` resolves it, without loading the project."""
    from k2_migrations.config import default_target, parse_url

    if not settings.url:
        return default_target(settings.config_file.resolve().parent, settings.environ)
    return parse_url(settings.url, settings.environ)


@contextmanager
def probe(settings: Settings, target: str) -> Iterator[RunResult | None]:
    """Yield the result of a no-op ``upgrade target`` when the fast path can tell there is nothing to
    do, else None; the client it read with stays open until the block ends (the normal path, run
    inside it, then shares an embedded engine rather than starting another)."""
    from k2_migrations.backends import open_client
    from k2_migrations.config import check_identifier, mask_secrets
    from k2_migrations.errors import K2MigrateError

    started = time.perf_counter()
    if settings.cluster or target not in {"head", "heads"} or not settings.config_file.is_file():
        yield None
        return
    wanted, headers, files = read_script(settings.config_file)
    if wanted is None:
        LOG.info("fast path: the revision files need Alembic to read them")
        yield None
        return
    database = check_identifier(settings.migrations_database, "migrations database")
    where = target_of(settings)
    try:
        handle = open_client(
            where, wait_s=settings.lock_timeout, command=settings.command, verbose=settings.verbose
        )
    except K2MigrateError:
        raise  # the embedded path held or unusable: the normal path would say the same
    except Exception as exc:  # a server's driver error: the normal path words it
        LOG.info("fast path: %s", mask_secrets(" ".join(str(exc).split()))[:200])
        yield None
        return
    cache = HeaderCache.load(settings.config_file.absolute().parent / CACHE_FILE)
    try:
        noop = _decide(handle.client, database, target, wanted, where, started)
        yield (
            None
            if noop is None or _edited(handle.client, database, noop.heads_after, headers, files, cache)
            else noop
        )
    finally:
        handle.close()


@dataclass(frozen=True)
class SettledRead:
    """The fast path's read for the commands that only look (``current``, ``check``): the migrations
    database in this release's layout with nothing in progress, read with one query, no lock, no
    Alembic; the client it read with, still open."""

    client: Client
    database: str
    url: str
    state: StateRead
    script_heads: tuple[str, ...]
    headers: dict[str, RevisionHeader]


@contextmanager
def settled_read(settings: Settings, command: str, *, unedited: bool = False) -> Iterator[SettledRead | None]:
    """Yield the read ``command`` (``current``, ``check``) answers from, or None (Alembic's read then)
    unless the revision files and the migrations database are as :func:`probe` requires them, no
    attempt is in progress (the normal path words that) and, with ``unedited``, no applied revision
    was edited (:func:`_edited`: the normal path names it). The client stays open until the block
    ends, so that a normal path run inside it shares an embedded engine rather than starting another."""
    from k2_migrations.backends import open_client
    from k2_migrations.config import check_identifier
    from k2_migrations.decisions.noop import CLOSED_STATUSES, layout_difference
    from k2_migrations.errors import K2MigrateError

    wanted, headers, files = (
        (None, {}, {})
        if settings.cluster or not settings.config_file.is_file()
        else read_script(settings.config_file)
    )
    if wanted is None:
        yield None
        return
    database = check_identifier(settings.migrations_database, "migrations database")
    where = target_of(settings)
    try:
        handle = open_client(
            where, wait_s=settings.lock_timeout, command=settings.command, verbose=settings.verbose
        )
    except K2MigrateError:
        raise  # the embedded path held or unusable: Alembic's read would say the same
    except Exception:  # a server's driver error: the normal path words it
        yield None
        return
    try:
        read: SettledRead | None = None
        try:
            state, again = read_state(handle.client, database, ",".join(wanted))
        except Exception:  # a missing database or table, a previous release's layout: Alembic's read
            state, again = None, (-1, -1)
        if (
            state is not None
            and layout_difference(state.tables) is None
            and all(a.status in CLOSED_STATUSES for a in state.attempts)
            and again == (state.record_seq, state.journal_rows)
            and not (
                unedited
                and _edited(
                    handle.client,
                    database,
                    state.heads,
                    headers,
                    files,
                    HeaderCache.load(settings.config_file.absolute().parent / CACHE_FILE),
                )
            )
        ):
            LOG.info("fast path: %s: %s", command, ", ".join(state.heads) or "base")
            read = SettledRead(handle.client, database, where.display(), state, wanted, headers)
        yield read
    finally:
        handle.close()


def _edited(
    client: Client,
    database: str,
    heads: tuple[str, ...],
    headers: dict[str, RevisionHeader],
    files: dict[str, Path],
    cache: HeaderCache,
) -> bool:
    """Whether an applied revision was edited since its digest was recorded (the normal path then
    names it), or the recorded digests cannot be read (a record without the column: the normal path
    adds it). Reads every revision file and the SQL files each runs (:meth:`HeaderCache.digest`)."""
    from k2_migrations.decisions.digests import edited_revisions

    try:
        rows = _query_rows(
            client,
            f"SELECT revision, argMaxIf(digest, seq, digest != '') AS d FROM `{database}`.k2_migrations_versions"
            " GROUP BY revision HAVING d != ''",
        )
        current = {revision: cache.digest(file) for revision, file in files.items()}
    except Exception as exc:  # any failure here only means: take the normal path
        LOG.info("fast path: digests: %s", " ".join(str(exc).split())[:200])
        return True
    recorded = {str(revision): str(digest) for revision, digest in rows}
    parents = {revision: header.down_revisions for revision, header in headers.items()}
    found = edited_revisions(recorded, current, heads, parents)
    if found:
        LOG.info("fast path: edited after applied: %s", ", ".join(found))
    return bool(found)


def _decide(
    client: Client, database: str, target: str, wanted: tuple[str, ...], where: Target, started: float
) -> RunResult | None:
    from k2_migrations.config import mask_secrets
    from k2_migrations.engine.results import RunResult

    try:
        state, again = read_state(client, database, ",".join(wanted) or "base")
    except Exception as exc:  # a missing database or table, a previous release's layout: Alembic's job
        LOG.info("fast path: %s", mask_secrets(" ".join(str(exc).split()))[:200])
        return None
    verdict: Verdict = noop_verdict(target, wanted, state, again)
    LOG.info("fast path: %s", verdict.reason)
    if not verdict.noop:
        return None
    return RunResult(
        command="up",
        target=target,
        url=where.display(),
        heads_before=state.heads,
        heads_after=state.heads,
        runtime=_NoRecords(),
        elapsed_s=time.perf_counter() - started,
    )
