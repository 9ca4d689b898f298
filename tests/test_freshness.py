"""The freshness gap a timed interval reports: the gap readers of the tables fed by streaming tables
see, beside the gap between batches before it.

The pure part is property-tested; the rest runs ``k2-migrate`` processes on engines of their own,
with a Kafka table (its broker unreachable: it consumes nothing) whose view feeds a table that a
revision fills in batches, and reads the summary and the ``--json`` document.
"""

from __future__ import annotations

import json
import re
import time
from itertools import pairwise
from typing import TYPE_CHECKING

from hypothesis import given
from hypothesis import strategies as st

from k2_migrations.decisions.freshness import WINDOW_S, Freshness, freshness
from tests.conftest import Project
from tests.test_fast_path import process

if TYPE_CHECKING:
    pass


@given(st.lists(st.integers(0, 90)), st.integers(0, 90), st.integers(0, 30))
def test_the_gap_is_read_from_the_batches_before_the_interval(
    times: list[int], began: int, length: int
) -> None:
    ended = began + length
    seen = freshness(times, began, ended)
    before = sorted({t for t in times if t <= began})
    assert seen == freshness(list(reversed(times)) + times, began, ended)  # order and repeats do not count
    assert seen.batches == len(before)
    if not before:
        assert seen == Freshness(0, None, None) and seen.describe() == "no batches seen"
        return
    assert seen.since_last_s == ended - before[-1]
    recent = [t for t in before if began - t <= WINDOW_S]
    assert seen.flush_every_s == max((b - a for a, b in pairwise(recent)), default=None)
    # A part written during the interval is a moved or re-created table, not a batch readers saw.
    assert freshness([*times, began + 1], began, ended) == seen


def test_the_summary_line_says_both_figures() -> None:
    assert Freshness(4, 8, 3).describe() == "no new batch for 3s at its end (batches every 8s before)"
    assert Freshness(1, None, 3).describe() == "no new batch for 3s at its end"


def fed_by_kafka() -> str:
    """A revision's body: ``d.target``, fed by a view from a Kafka table whose broker is not there,
    then three batches into it 2 s apart (each in a second of its own), the last one just before
    the revision ends."""
    return "\n".join(
        [
            "op.execute_sql('CREATE DATABASE d')",
            "op.execute_sql('CREATE TABLE d.target (x UInt64) ENGINE = MergeTree ORDER BY x')",
            'op.execute_sql("CREATE TABLE d.queue (x UInt64) ENGINE = Kafka SETTINGS kafka_broker_list ='
            " '127.0.0.1:9', kafka_topic_list = 't', kafka_group_name = 'g', kafka_format = 'JSONEachRow'\")",
            "op.execute_sql('CREATE MATERIALIZED VIEW d.ingest TO d.target AS SELECT x FROM d.queue')",
            "op.execute_sql('SYSTEM STOP MERGES d.target')",  # every batch stays a part of its own
            "op.execute_sql('INSERT INTO d.target VALUES (0)')",
            "op.execute_sql('SELECT sleep(2)')",
            "op.execute_sql('INSERT INTO d.target VALUES (1)')",
            "op.execute_sql('SELECT sleep(2)')",
            "op.execute_sql('INSERT INTO d.target VALUES (2)')",
        ]
    )


def test_an_interval_reports_the_gap_readers_of_the_fed_tables_see(project: Project) -> None:
    # An engine of its own, in a process of its own: on the shared test engine, other tests' Kafka
    # tables feed tables too, and their parts were counted as batches (6 instead of 3, once).
    project.env["K2_MIGRATE_URL"] = f"chdb://{project.root / 'chdb'}"
    project.write_revision("p0", None, fed_by_kafka(), "pass")
    project.write_revision(
        "p1",
        "p0",
        "op.begin_interval('ingestion_pause')\nop.execute_sql('SELECT sleep(2)')\nop.end_interval('ingestion_pause')",
        "pass",
    )
    done = process(project, "upgrade", "head")
    assert done.returncode == 0, done.stderr
    line = re.search(r"^Ingestion pause \(p1\): (\S+)s; freshness: (.*)$", done.stdout, re.MULTILINE)
    assert line is not None, done.stdout
    found = re.fullmatch(r"no new batch for (\d+)s at its end \(batches every (\d+)s before\)", line[2])
    assert found is not None and float(line[1]) >= 2, line[0]
    assert 2 <= int(found[1]) <= 4 and int(found[2]) in {1, 2, 3}, line[0]
    # The same in the document, the batches now further back.
    assert process(project, "downgrade", "p0").returncode == 0
    again = process(project, "upgrade", "head", "--json")
    assert again.returncode == 0, again.stderr
    (interval,) = json.loads(again.stdout)["intervals"]
    assert interval["freshness"]["batches"] == 3, interval
    assert interval["freshness"]["since_last_s"] >= int(found[1]) + 2, interval


def test_without_tables_fed_by_streams_an_interval_reports_its_length_only(project: Project) -> None:
    # An engine of its own, in a process of its own: the shared test engine holds other tests' Kafka
    # tables and their views, and a process opens one embedded path.
    project.env["K2_MIGRATE_URL"] = f"chdb://{project.root / 'chdb'}"
    project.write_revision("p1", None, "op.begin_interval('window')\nop.end_interval('window')", "pass")
    done = process(project, "upgrade", "head")
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("Window (p1): ")]
    assert "freshness" not in line


def test_a_resumed_interval_reports_the_gap_from_the_batches_read_before_the_crash(project: Project) -> None:
    """Killed inside the interval (a table moved, not yet counted), the run resumed later: the batches
    read when the interval began come back from the journal, and the gap covers the time it was down."""
    project.env["K2_MIGRATE_URL"] = f"chdb://{project.root / 'chdb'}"
    project.write_revision(
        "p0",
        None,
        "\n".join(
            [
                "op.execute_sql('CREATE DATABASE d')",
                "op.execute_sql('CREATE DATABASE d2')",
                "op.execute_sql('CREATE TABLE d.target (x UInt64) ENGINE = MergeTree ORDER BY x')",
                "op.execute_sql('CREATE TABLE d.moved (x UInt64) ENGINE = MergeTree ORDER BY x')",
                'op.execute_sql("CREATE TABLE d.queue (x UInt64) ENGINE = Kafka SETTINGS kafka_broker_list ='
                " '127.0.0.1:9', kafka_topic_list = 't', kafka_group_name = 'g', kafka_format = 'JSONEachRow'\")",
                "op.execute_sql('CREATE MATERIALIZED VIEW d.ingest TO d.target AS SELECT x FROM d.queue')",
                "op.execute_sql('INSERT INTO d.target VALUES (1)')",
            ]
        ),
        "pass",
    )
    project.write_revision(
        "p1",
        "p0",
        "op.begin_interval('ingestion_pause')\nop.move_table('d', 'moved', 'd2')\nop.end_interval('ingestion_pause')",
        "pass",
    )
    killed = process(project, "upgrade", "head", env={"K2_MIGRATE_FAILPOINT": "move-moved"})
    assert killed.returncode == -9, killed.stderr
    time.sleep(2)
    resumed = process(project, "upgrade", "head")
    assert resumed.returncode == 0 and "p1 up (resumed)" in resumed.stdout, resumed.stderr
    line = re.search(
        r"^Ingestion pause \(p1\): \S+s; freshness: no new batch for (\d+)s at its end", resumed.stdout, re.M
    )
    assert line is not None and int(line[1]) >= 2, resumed.stdout
