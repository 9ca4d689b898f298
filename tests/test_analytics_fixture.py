"""The second schema and its live writer: the oracle the operations' tests rely on must itself be right."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import Project, scalar, unique
from tests.support import analytics

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def test_the_schema_builds_and_its_views_agree_with_their_source_under_a_live_writer(ch: Client) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=5_000)
    kinds = {
        str(n): str(e)
        for n, e in ch.query(f"SELECT name, engine FROM system.tables WHERE database = '{db}'").result_rows
    }
    assert kinds["events"] == "MergeTree" and kinds["daily_mv"] == "MaterializedView"
    assert kinds["recent"] == "View" and kinds["sites_dict"] == "Dictionary"
    with analytics.LiveWriter(ch, db, first_id=5_000) as writer:
        time.sleep(0.6)
    assert len(writer.confirmed) >= 40, writer.errors
    assert analytics.exactly_once(analytics.ids(ch, db), writer.confirmed, writer.failed, 5_000) == []
    for what, (target, source) in analytics.views_agree(ch, db).items():
        assert target == source, what
    assert scalar(ch, f"SELECT count() FROM {db}.recent") == len(writer.confirmed)


def test_the_oracle_names_a_lost_a_doubled_and_an_unknown_id() -> None:
    assert analytics.exactly_once([1, 2, 3, 11], [11], [], 3) == []
    problems = analytics.exactly_once([1, 3, 3, 12, 99], [11, 12], [13], 3)
    assert problems == [
        "2 confirmed id(s) missing, e.g. [2, 11]",
        "1 id(s) more than once, e.g. [3]",
        "1 id(s) never written, e.g. [99]",
    ]


def test_the_cli_runs_in_the_process_that_holds_the_engine_while_the_writer_writes(
    ch: Client, project: Project, tmp_path: Path
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=1_000)
    project.write_revision(
        "a1", None, f'op.add_column_if_missing("{db}", "events", "referrer", "String")', ""
    )
    with analytics.LiveWriter(ch, db, first_id=1_000) as writer:
        code, output = analytics.k2_migrate_in_process(
            "upgrade", "head", env=project.env | {"K2_MIGRATE_CONFIG": str(project.root / "alembic.ini")}
        )
        time.sleep(0.3)
    assert code == 0, output
    assert "referrer" in {
        str(r[0])
        for r in ch.query(
            f"SELECT name FROM system.columns WHERE database = '{db}' AND table = 'events'"
        ).result_rows
    }
    assert analytics.exactly_once(analytics.ids(ch, db), writer.confirmed, writer.failed, 1_000) == []
