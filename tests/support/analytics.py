"""A second schema that is not K2, and a writer that keeps inserting into it while a migration runs.

The K2 revisions were the only schema the suite ran on; the engineer's next migration is on some
other schema, while rows keep arriving. This one is a small web-analytics pipeline, written by hand
and independently of the operations it is used to test:

- ``events`` (MergeTree, monthly partitions, a unique ``id`` per row): what the site writes;
- ``daily`` (AggregatingMergeTree) fed by the ``TO`` materialized view ``daily_mv`` from ``events``;
- ``by_country_mv``: a materialized view with an inner engine (SummingMergeTree), no ``TO``;
- ``recent``: a plain view over ``events``;
- ``sites`` (MergeTree) and the dictionary ``sites_dict`` over it, which ``recent`` reads.

:class:`LiveWriter` inserts a batch of fresh ids every 50 ms from a thread of the process that holds
the engine (as a server's clients would), remembering which batches the engine confirmed; the oracle
is then exact: every confirmed id in ``events`` exactly once, and each view's target agreeing with
its source. :func:`k2_migrate_in_process` runs the ``k2-migrate`` entry point in the same process
against the same path, as the Kafka scenario does, so the writer keeps writing during the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

SITES = ("alpha.example", "beta.example", "gamma.example")
COUNTRIES = ("DE", "FR", "JP", "US")


def schema(db: str) -> list[str]:
    """The CREATE statements of the analytics schema in database ``db``, in dependency order."""
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"""CREATE TABLE {db}.sites
            (site String, owner String)
            ENGINE = MergeTree ORDER BY site""",
        f"""CREATE DICTIONARY {db}.sites_dict
            (site String, owner String)
            PRIMARY KEY site
            SOURCE(CLICKHOUSE(DB '{db}' TABLE 'sites'))
            LIFETIME(MIN 0 MAX 60)
            LAYOUT(COMPLEX_KEY_HASHED())""",
        f"""CREATE TABLE {db}.events
            (
                id UInt64,
                ts DateTime,
                site LowCardinality(String),
                country FixedString(2),
                path String,
                duration_ms UInt32
            )
            ENGINE = MergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (site, ts)""",
        f"""CREATE TABLE {db}.daily
            (
                day Date,
                site LowCardinality(String),
                views AggregateFunction(count),
                visitors AggregateFunction(uniq, UInt64)
            )
            ENGINE = AggregatingMergeTree
            ORDER BY (site, day)""",
        f"""CREATE MATERIALIZED VIEW {db}.daily_mv TO {db}.daily AS
            SELECT toDate(ts) AS day, site, countState() AS views, uniqState(id) AS visitors
            FROM {db}.events GROUP BY day, site""",
        f"""CREATE MATERIALIZED VIEW {db}.by_country_mv
            ENGINE = SummingMergeTree ORDER BY (country, site)
            AS SELECT country, site, count() AS views, sum(duration_ms) AS total_ms
            FROM {db}.events GROUP BY country, site""",
        f"""CREATE VIEW {db}.recent AS
            SELECT e.id, e.ts, e.site, dictGet('{db}.sites_dict', 'owner', tuple(e.site)) AS owner
            FROM {db}.events AS e WHERE e.ts > now() - INTERVAL 1 DAY""",
    ]


def create(client: Client, db: str, rows: int = 20_000) -> None:
    """Build the schema in ``db`` and insert ``rows`` events (ids 1..rows) over two months."""
    for statement in create_statements(db, rows):
        client.command(statement)


def create_statements(db: str, rows: int = 20_000) -> list[str]:
    """What :func:`create` sends, for a process of its own (an embedded path the test does not hold)."""
    return [
        *schema(db),
        f"INSERT INTO {db}.sites VALUES " + ", ".join(f"('{s}', 'team-{i}')" for i, s in enumerate(SITES)),
        f"""INSERT INTO {db}.events
            SELECT number + 1, toDateTime('2026-10-01 00:00:00') + number * 300,
                   ['{"','".join(SITES)}'][number % {len(SITES)} + 1],
                   ['{"','".join(COUNTRIES)}'][number % {len(COUNTRIES)} + 1],
                   concat('/p/', toString(number % 97)), toUInt32(number % 5000)
            FROM numbers({rows})""",
    ]


def ids(client: Client, db: str, table: str = "events") -> list[int]:
    """Every id in ``db.table``, duplicates included (sorted)."""
    return sorted(int(r[0]) for r in client.query(f"SELECT id FROM {db}.{table} ORDER BY id").result_rows)


def views_agree(client: Client, db: str) -> dict[str, tuple[int, int]]:
    """Each view target's total against the same total over ``events``: {what: (target, source)}."""

    def one(sql: str) -> int:
        return int(client.query(sql).result_rows[0][0])

    return {
        "daily.views": (
            one(f"SELECT countMerge(views) FROM {db}.daily"),
            one(f"SELECT count() FROM {db}.events"),
        ),
        "by_country_mv.views": (
            one(f"SELECT sum(views) FROM {db}.by_country_mv"),
            one(f"SELECT count() FROM {db}.events"),
        ),
    }


@dataclass
class LiveWriter:
    """Insert a batch of new ids into ``db.events`` every ``interval_s``, from a thread of this process.

    Ids start above ``first_id``; a batch counts as written only when its INSERT returned (the engine
    confirmed it). A batch that failed (the table mid-swap, say) is remembered as failed, never as
    written: the oracle asks that every confirmed id is in the table exactly once, and that the failed
    ones are at most once (an INSERT that errored may or may not have landed).
    """

    client: Client
    db: str
    first_id: int
    batch: int = 20
    interval_s: float = 0.05
    table: str = "events"
    confirmed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Seconds between the starts of consecutive confirmed inserts: the longest is the stall a writer felt.
    gaps: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> LiveWriter:
        self._thread = threading.Thread(target=self._run, name="live-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> LiveWriter:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self

    def __enter__(self) -> LiveWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def longest_gap_s(self) -> float:
        return max(self.gaps, default=0.0)

    def _run(self) -> None:
        next_id = self.first_id + 1
        last_ok: float | None = None
        while not self._stop.is_set():
            batch = list(range(next_id, next_id + self.batch))
            next_id += self.batch
            values = ", ".join(
                f"({i}, now(), '{SITES[i % len(SITES)]}', '{COUNTRIES[i % len(COUNTRIES)]}', '/live', {i % 900})"
                for i in batch
            )
            began = time.monotonic()
            try:
                self.client.command(
                    f"INSERT INTO {self.db}.{self.table} (id, ts, site, country, path, duration_ms) VALUES {values}"
                )
            except Exception as exc:  # the oracle, not the writer, judges what a failure means
                self.failed.extend(batch)
                self.errors.append(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            else:
                self.confirmed.extend(batch)
                if last_ok is not None:
                    self.gaps.append(began - last_ok)
                last_ok = began
            self._stop.wait(self.interval_s)


def exactly_once(
    found: Sequence[int], confirmed: Sequence[int], failed: Sequence[int], baseline: int
) -> list[str]:
    """What is wrong with ``found`` (ids in the table): [] when every baseline id (1..baseline) and every
    confirmed id is there exactly once, and a failed one at most once, with nothing else."""
    from collections import Counter

    counts = Counter(found)
    problems: list[str] = []
    expected = set(range(1, baseline + 1)) | set(confirmed)
    missing = sorted(i for i in expected if counts[i] == 0)
    doubled = sorted(i for i, n in counts.items() if n > 1)
    unknown = sorted(set(counts) - expected - set(failed))
    if missing:
        problems.append(f"{len(missing)} confirmed id(s) missing, e.g. {missing[:5]}")
    if doubled:
        problems.append(f"{len(doubled)} id(s) more than once, e.g. {doubled[:5]}")
    if unknown:
        problems.append(f"{len(unknown)} id(s) never written, e.g. {unknown[:5]}")
    return problems


def k2_migrate_in_process(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``k2-migrate ARGS`` in this process (the one holding the engine), returning (exit code, output).

    CliRunner sets ``env`` for the call and restores it after; the writer thread keeps running meanwhile.
    """
    from click.testing import CliRunner

    from k2_migrations.cli import main

    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr
