"""``op.rebuild_table``'s copy against a plain ``INSERT INTO new SELECT * FROM old``, and what a writer feels.

For each volume (1x = 1M narrow rows over 12 monthly partitions, 10x = 10M) on a fresh table each
time, side by side in one process on one embedded engine, the two arms alternated:

- plain: ``CREATE TABLE new`` with the new ORDER BY, then ``INSERT INTO new SELECT * FROM old``, timed,
  on a connection of its own, with the same writer inserting into ``old`` meanwhile on another;
- rebuild: a revision calling ``op.rebuild_table`` to the same definition, run by the ``k2-migrate``
  entry point in this process (as a server's clients would see it) while a thread inserts 20 rows
  every 50 ms into the table. Two rates: the copy's (its rounds: stage INSERTs, counts, ATTACHes;
  ``copy_s`` in the step's journaled payload, read back from the journal table) and the whole
  step's (``upgrade --json``: creating the copy, the rounds, the swap, landing late rows, the
  journal). The writer's longest gap between confirmed inserts is the stall it felt (the swap
  included).

    .venv/bin/python -m bench.rebuild [--scales 1 10] [--runs 5]

The goal (issue 20): the copy's rows per second at least 0.8 of the plain copy's; the whole step's
ratio is printed beside it. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2_migrations.decisions.rebuild import UNIT_ROWS
from tests.support.analytics import LiveWriter, k2_migrate_in_process

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

ROOT = Path(__file__).resolve().parent.parent
BASE_ROWS = 1_000_000
COLUMNS = "(id UInt64, ts DateTime, site LowCardinality(String), country FixedString(2), path String, duration_ms UInt32)"


def table_ddl(db: str, name: str, order_by: str) -> str:
    return (
        f"CREATE TABLE {db}.{name} {COLUMNS} ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY {order_by}"
    )


def fill(client: Client, db: str, rows: int) -> None:
    client.command(f"CREATE DATABASE {db}")
    client.command(table_ddl(db, "events", "(site, ts)"))
    client.command(
        f"""INSERT INTO {db}.events SELECT number + 1,
               toDateTime('2025-01-01 00:00:00') + intDiv(number * 31536000, {rows}),
               ['alpha', 'beta', 'gamma'][number % 3 + 1], ['DE', 'FR', 'JP', 'US'][number % 4 + 1],
               concat('/p/', toString(number % 97)), toUInt32(number % 5000)
           FROM numbers({rows})"""
    )


def plain(client: Client, copier: Client, rows: int) -> float:
    """The plain copy's seconds: on ``copier``, a connection of its own as the rebuild's run has, while
    the writer inserts on ``client``. (One connection runs one query at a time: a writer sharing the
    copy's would wait out the whole INSERT and leave it alone with the engine.)"""
    db = f"plain_{uuid.uuid4().hex[:8]}"
    fill(client, db, rows)
    client.command(table_ddl(db, "new", "(site, id)"))
    with LiveWriter(client, db, first_id=rows):  # the same load as the rebuild arm's
        time.sleep(0.5)
        began = time.perf_counter()
        copier.command(f"INSERT INTO {db}.new SELECT * FROM {db}.events")
        elapsed = time.perf_counter() - began
    client.command(f"DROP DATABASE {db}")
    return elapsed


def rebuild(
    client: Client, url: str, work: Path, rows: int, unit_rows: int
) -> tuple[float, float, float, float]:
    """(the copy's seconds, the step's seconds, the writer's longest gap, its median gap)."""
    db = f"rebuild_{uuid.uuid4().hex[:8]}"
    fill(client, db, rows)
    project = work / db
    (project / "versions").mkdir(parents=True)
    (project / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    (project / "versions" / "rb1.py").write_text(
        '"""rebuild"""\nfrom alembic import op\n\nrevision = "rb1"\ndown_revision = None\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        f'def upgrade() -> None:\n    op.rebuild_table("{db}", "events", """{table_ddl(db, "events", "(site, id)")}""",'
        f" unit_rows={unit_rows})\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )
    env = {
        "K2_MIGRATE_CONFIG": str(project / "alembic.ini"),
        "K2_MIGRATE_URL": url,
        "K2_MIGRATE_DATABASE": f"k2m_{db}",
        "K2_MIGRATE_QUIET": "1",
    }
    with LiveWriter(client, db, first_id=rows) as writer:
        time.sleep(0.5)
        code, output = k2_migrate_in_process("upgrade", "head", "--json", env=env)
        time.sleep(0.5)
    if code != 0:
        raise SystemExit(f"bench.rebuild: the rebuild failed ({code}): {output[-2000:]}")
    document: dict[str, Any] = json.loads(output[output.index("{") :])
    step_ms = float(document["revisions"][0]["steps"][0]["elapsed_ms"])
    (payload,) = client.query(
        f"SELECT payload FROM k2m_{db}.k2_migrations_journal WHERE status = 'done' AND JSONHas(payload, 'copy_s')"
    ).result_rows[0]
    copy_s = float(json.loads(str(payload))["copy_s"])
    client.command(f"DROP DATABASE {db}")
    client.command(f"DROP DATABASE k2m_{db}")
    return copy_s, step_ms / 1000, writer.longest_gap_s, statistics.median(writer.gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--unit-rows", type=int, default=UNIT_ROWS, help="rebuild_table's unit_rows")
    args = parser.parse_args()
    from k2_migrations.backends import open_backend, open_client
    from k2_migrations.config import parse_url

    work = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    url = f"chdb://{work / 'engine'}"
    backend = open_backend(parse_url(url))
    copier = open_client(parse_url(url))
    try:
        print(
            "bench.rebuild: rebuild_table's copy vs a plain INSERT SELECT (ORDER BY (site, ts) -> (site, id)),"
            f" unit_rows={args.unit_rows:,}"
        )
        print(
            f"{'volume':>8} {'rows':>10} {'plain rows/s':>13} {'copy rows/s':>12} {'ratio':>6} "
            f"{'step rows/s':>12} {'ratio':>6} {'writer: longest gap':>20} {'median gap':>11}"
        )
        for scale in args.scales:
            rows = int(BASE_ROWS * scale)
            plains: list[float] = []
            rebuilds: list[tuple[float, float, float, float]] = []
            for _ in range(args.runs):  # alternated, so a drift of the machine weighs on both arms alike
                plains.append(plain(backend.client, copier.client, rows))
                rebuilds.append(rebuild(backend.client, url, work, rows, args.unit_rows))
            plain_rate = rows / statistics.median(plains)
            copy_rate = rows / statistics.median(r[0] for r in rebuilds)
            step_rate = rows / statistics.median(r[1] for r in rebuilds)
            longest = max(r[2] for r in rebuilds)
            median_gap = statistics.median(r[3] for r in rebuilds)
            print(
                f"{scale:>7g}x {rows:>10} {plain_rate:>13,.0f} {copy_rate:>12,.0f} {copy_rate / plain_rate:>6.2f} "
                f"{step_rate:>12,.0f} {step_rate / plain_rate:>6.2f} {longest * 1000:>17.0f} ms"
                f" {median_gap * 1000:>8.0f} ms",
                flush=True,
            )
        print(
            f"medians of {args.runs} runs each; the longest gap is the worst over the rebuild runs (swap included)"
        )
    finally:
        copier.close()
        backend.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
