"""op.replace_view on a schema that is not K2 (tests/support/analytics.py), and create_object's drift.

A view's query used to change by a drop and a re-create, which lost the rows inserted in between.
Here every change runs while a writer inserts every 50 ms from a thread of the process that holds the
engine, the CLI called in the same process: every confirmed batch must be in ``events`` exactly once
and each view's target must agree with it. Definitions are read back from ``system.tables``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tests.conftest import Project, unique
from tests.support import analytics

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

VIEWS = ("daily_mv", "by_country_mv", "recent")


def new_ddl(db: str) -> dict[str, str]:
    """The changed views: daily_mv computes one more column (added to its target first), by_country_mv
    (inner engine) filters, recent shows one more column. Written unlike the engine would write them."""
    return {
        "daily_mv": f"""create materialized view {db}.daily_mv to {db}.daily as
            select toDate(ts) as day, site, countState() as views, uniqState(id) as visitors,
                   sum(toUInt64(duration_ms)) as total_ms
            from {db}.events group by day, site""",
        "by_country_mv": f"""CREATE MATERIALIZED VIEW {db}.by_country_mv
            ENGINE = SummingMergeTree ORDER BY (country, site)
            AS SELECT country, site, count() AS views, sum(duration_ms) AS total_ms
            FROM {db}.events WHERE duration_ms < 1000000 GROUP BY country, site""",
        "recent": f"""CREATE VIEW {db}.recent AS
            SELECT e.id, e.ts, e.site, e.country, dictGet('{db}.sites_dict', 'owner', tuple(e.site)) AS owner
            FROM {db}.events AS e WHERE e.ts > now() - INTERVAL 1 DAY""",
    }


def old_ddl(db: str) -> dict[str, str]:
    statements = analytics.schema(db)
    return {"daily_mv": statements[5], "by_country_mv": statements[6], "recent": statements[7]}


def upgrade_code(db: str) -> str:
    lines = [f'op.add_column_if_missing("{db}", "daily", "total_ms", "SimpleAggregateFunction(sum, UInt64)")']
    lines += [f'op.replace_view("{db}", "{name}", {ddl!r})' for name, ddl in new_ddl(db).items()]
    return "\n".join(lines)


def downgrade_code(db: str) -> str:
    lines = [f'op.replace_view("{db}", "{name}", {ddl!r})' for name, ddl in reversed(old_ddl(db).items())]
    lines.append(f'op.drop_column_if_exists("{db}", "daily", "total_ms")')
    return "\n".join(lines)


def definitions(ch: Client, db: str) -> dict[str, str]:
    rows = ch.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = {d:String} AND name IN {n:Array(String)}",
        parameters={"d": db, "n": list(VIEWS)},
    ).result_rows
    return {str(name): str(ctq) for name, ctq in rows}


def in_process(project: Project, *args: str) -> tuple[int, str]:
    return analytics.k2_migrate_in_process(
        *args, env=project.env | {"K2_MIGRATE_CONFIG": str(project.root / "alembic.ini")}
    )


def assert_consistent(ch: Client, db: str, writer: analytics.LiveWriter, baseline: int) -> None:
    assert analytics.exactly_once(analytics.ids(ch, db), writer.confirmed, writer.failed, baseline) == []
    for what, (target, source) in analytics.views_agree(ch, db).items():
        assert target == source, f"{what}: {target} in the target, {source} in events"


def test_replace_view_under_a_live_writer_loses_and_doubles_no_row_and_the_downgrade_restores_each_byte(
    ch: Client, project: Project
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=2_000)
    before = definitions(ch, db)
    project.write_revision("v1", None, upgrade_code(db), downgrade_code(db))
    with analytics.LiveWriter(ch, db, first_id=2_000) as writer:
        time.sleep(0.3)
        code, output = in_process(project, "upgrade", "head")
        time.sleep(0.3)
        changed = definitions(ch, db)
        down, down_output = in_process(project, "downgrade", "base")
        time.sleep(0.3)
        restored = definitions(ch, db)
        again, again_output = in_process(project, "upgrade", "head")
        time.sleep(0.3)
    assert (code, down, again) == (0, 0, 0), output + down_output + again_output
    assert len(writer.confirmed) >= 40 and writer.failed == [], writer.errors
    assert_consistent(ch, db, writer, 2_000)
    # The engine's own rendering of the new queries, and the old ones back byte for byte.
    assert "sum(toUInt64(duration_ms)) AS total_ms" in changed["daily_mv"]
    assert "WHERE duration_ms < 1000000" in changed["by_country_mv"]
    assert "e.country" in changed["recent"]
    assert restored == before
    assert definitions(ch, db) == changed
    # The new column is computed for every row inserted since the view changed, by the view itself.
    late = ch.query(
        f"SELECT sum(total_ms), (SELECT sum(duration_ms) FROM {db}.events WHERE ts >= now() - INTERVAL 1 DAY)"
        f" FROM {db}.daily WHERE day >= today() - 1"
    ).result_rows[0]
    assert 0 < late[0] <= late[1]
