"""A production schema another team wrote by hand from the spec, in its own style, migrated and back.

tests/fixtures/k2_production_handmade.sql is independent of baseline_schema.py and of the other
fixture: SQL-standard type names, double-quoted names, views without CASTs (their output columns are
String where the tables hold LowCardinality and Enum8), expressions spelled otherwise, Kafka settings
in another order with an extra one (one table in the engine's positional form), a local edit in the
1-minute candle view (``countIf(quantity > 0)``) and string literals holding ``default.``. Adoption
must accept all that, carry every view and Kafka table over by its live definition, keep production's
edit through k2_004, and ``downgrade base`` must give every definition back byte for byte; a
difference a later revision depends on must stop k2_001 before anything moves.

The upgrade and downgrade run as real ``k2-migrate`` processes on their own embedded engine with the
schema in ``default`` itself (where a literal naming ``default.`` is at risk); the refusals run on the
session engine in a database of their own.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from k2_migrations.k2 import baseline_schema as schema
from k2_migrations.k2 import demo_data
from k2_migrations.sqltext import rewrite_databases, split_statements
from tests.conftest import ROOT, SERVER_URL, table_names, unique
from tests.support.engine_query import query
from tests.support.kill_harness import Forker, environment, inspect
from tests.test_k2_revisions import k2_project
from tests.test_kill_resume import ENV, SCALE

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

FIXTURE = ROOT / "tests" / "fixtures" / "k2_production_handmade.sql"
CARRIED = schema.KAFKA_TABLES + schema.VIEWS
WINDOW_SECONDS = {"ohlcv_1m": 60, "ohlcv_5m": 300, "ohlcv_1h": 3600, "ohlcv_1d": 86400}
#: The string literals of the fixture that name ``default.``: data, never a database reference.
LITERALS = ("'default.heartbeat'", "'default.probe'")

embedded_only = pytest.mark.skipif(bool(SERVER_URL), reason="runs k2-migrate on its own embedded engine")


def build_handmade(client: Client, database: str, edit: tuple[str, str] | None = None) -> None:
    """Run the fixture in ``database``; ``edit`` replaces one piece of its text first.

    Its database references are rewritten by tokens, so the string literals stay as written.
    """
    text = FIXTURE.read_text()
    if edit is not None:
        assert text.count(edit[0]) == 1, edit[0]
        text = text.replace(*edit)
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    for statement in split_statements(text):
        client.command(rewrite_databases(statement, {"default": database}))


def prepared(directory: Path, scale: str = SCALE) -> Path:
    """An embedded engine at ``directory`` with the fixture in ``default`` and the demo data in it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "db"
    load = (
        "import clickhouse_connect; from k2_migrations.k2 import demo_data;"
        " from tests.test_k2_foreign import build_handmade;"
        f" client = clickhouse_connect.get_client(dsn='chdb://{path}');"
        f" build_handmade(client, 'default'); demo_data.load(client, 'default', {scale})"
    )
    subprocess.run(
        [sys.executable, "-c", load], check=True, capture_output=True, cwd=ROOT, env=environment({})
    )
    return path


def in_k2(definition: str) -> str:
    """What a carried definition must read in k2: every ``default.`` now ``k2.``, the literals as they were."""
    moved = definition.replace("default.", "k2.")
    for literal in LITERALS:
        moved = moved.replace(literal.replace("default.", "k2."), literal)
    return moved


def definitions(state: dict[str, Any], database: str) -> dict[str, str]:
    found: dict[str, str] = state[database]["definitions"]
    return found


@dataclass
class Foreign:
    path: Path
    before: dict[str, Any]
    after: dict[str, Any]
    upgrade: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory, forker: Forker) -> Foreign:
    path = prepared(tmp_path_factory.mktemp("foreign"))
    before = inspect(path, "default", "k2")
    up = forker.run(path, "upgrade", "head", "--json", env=ENV)
    assert up.returncode == 0, up.stderr[-3000:]
    return Foreign(path, before, inspect(path, "default", "k2"), json.loads(up.stdout), up.stderr)


@embedded_only
def test_adoption_accepts_the_handmade_schema_and_reports_each_harmless_difference(foreign: Foreign) -> None:
    adopt = foreign.upgrade["revisions"][0]["steps"][1]
    assert adopt["operation"] == "adopt or create 20 object(s) in default"
    assert adopt["note"].startswith("20 adopted, 0 created, ")
    reported = [line.strip() for line in foreign.stderr.splitlines() if "difference: " in line]
    assert reported and not [line for line in reported if line.startswith("UNSAFE")]
    assert any(line.startswith("difference: default.ohlcv_1m_mv view query") for line in reported)
    assert any(line.startswith("difference: default.silver_trades_kraken_mv columns") for line in reported)
    assert (
        "difference: default.bronze_trades_binance_queue setting kafka_poll_timeout_ms: expected '-', found '250'"
        in reported
    )
    assert any(
        line.startswith("difference: default.bronze_trades_binance_queue settings order") for line in reported
    )
    assert (
        "difference: default.bronze_trades_dlq column defaults: expected (ingested_at DEFAULT now64(3)),"
        " found (ingested_at DEFAULT now64())" in reported
    )


@embedded_only
def test_every_object_is_in_k2_and_none_left_in_default(foreign: Foreign) -> None:
    assert set(definitions(foreign.before, "default")) == set(schema.all_objects())
    assert definitions(foreign.after, "default") == {}
    assert set(definitions(foreign.after, "k2")) == set(schema.all_objects())


@embedded_only
def test_views_and_kafka_tables_keep_their_live_definitions_literals_and_local_edit(foreign: Foreign) -> None:
    before, after = definitions(foreign.before, "default"), definitions(foreign.after, "k2")
    for name in CARRIED:
        assert after[name] == in_k2(before[name]), name
    assert "countIf(quantity > 0) AS trade_count" in after["ohlcv_1m_mv"]
    assert "TO k2.ohlcv_1m " in after["ohlcv_1m_mv"] and "FROM k2.silver_trades " in after["ohlcv_1m_mv"]
    assert "WHERE symbol != 'default.heartbeat'" in after["silver_trades_binance_mv"]
    assert "AND (_topic != 'default.probe')" in after["bronze_trades_binance_dlq_mv"]
    # No CAST was added on the way: the views' output columns are still production's own.
    assert (
        "`side` String" in after["silver_trades_kraken_mv"] and "CAST" not in after["silver_trades_kraken_mv"]
    )


@embedded_only
def test_kafka_settings_are_kept_in_the_order_the_engine_reports(foreign: Foreign) -> None:
    binance = definitions(foreign.after, "k2")["bronze_trades_binance_queue"]
    assert re.findall(r"(kafka_\w+) = ", binance.partition(" SETTINGS ")[2]) == [
        "kafka_group_name",
        "kafka_topic_list",
        "kafka_format",
        "kafka_handle_error_mode",
        "kafka_poll_timeout_ms",
        "kafka_num_consumers",
        "kafka_broker_list",
    ]
    assert "kafka_poll_timeout_ms = 250" in binance and "kafka_broker_list = 'redpanda:9092'" in binance
    kraken = definitions(foreign.after, "k2")["bronze_trades_kraken_queue"]
    assert kraken.endswith(
        "ENGINE = Kafka('redpanda:9092', 'market.crypto.trades.kraken', 'k2_bronze_trades_kraken', 'JSONEachRow')"
        " SETTINGS kafka_handle_error_mode = 'stream', kafka_max_block_size = 65536, kafka_num_consumers = 1"
    )


@embedded_only
def test_data_tables_keep_every_row_and_the_candles_get_window_end(foreign: Foreign) -> None:
    counts = foreign.before["default"]["counts"]
    assert counts["bronze_trades_binance"] > 10_000 and counts["ohlcv_1m"] > 100
    assert foreign.after["k2"]["counts"] == counts
    guards = {(g["label"], g["moved_to"]): (g["before"], g["after"]) for g in foreign.upgrade["guards"]}
    assert {guards[("move", f"k2.{t}")][0] for t in schema.DATA_TABLES} and all(
        guards[("move", f"k2.{t}")][0] == guards[("move", f"k2.{t}")][1] for t in schema.DATA_TABLES
    )
    before, after = definitions(foreign.before, "default"), definitions(foreign.after, "k2")
    for table in schema.DATA_TABLES:
        if table in WINDOW_SECONDS:
            assert (
                "`window_start` DateTime64(3, 'UTC'), `window_end` SimpleAggregateFunction(any, DateTime64(3, 'UTC'))"
                in after[table]
            )
        else:
            assert after[table] == before[table].replace("default.", "k2."), table
    checks = {c["name"]: c["violations"] for c in foreign.upgrade["checks"]}
    assert checks == {f"every {t} candle lasts {s} s": 0 for t, s in WINDOW_SECONDS.items()}


@embedded_only
def test_downgrade_base_gives_back_every_definition_and_row(foreign: Foreign, forker: Forker) -> None:
    down = forker.run(foreign.path, "downgrade", "base", env=ENV)
    assert down.returncode == 0, down.stderr[-3000:]
    state = inspect(foreign.path, "default", "k2")
    assert state["default"] == foreign.before["default"]  # create_table_query and logical counts
    assert state["k2"] == {"definitions": {}, "counts": {}}


@embedded_only
def test_upgraded_again_new_trades_go_through_productions_edit_and_get_window_end(
    foreign: Foreign, forker: Forker
) -> None:
    up = forker.run(foreign.path, "upgrade", "head", env=ENV)
    assert up.returncode == 0, up.stderr[-3000:]
    trade = (
        "INSERT INTO k2.bronze_trades_binance (exchange_timestamp, symbol, trade_id, price, quantity,"
        " is_buyer_maker, event_timestamp, kafka_partition, kafka_offset) VALUES"
    )
    rows = query(
        foreign.path,
        f"{trade} ('2031-03-04 05:06:07.089', 'ETHFDUSD', 900000001, 3000, 2, 1, '2031-03-04 05:06:07.089', 0, 1)",
        f"{trade} ('2031-03-04 05:06:08.000', 'ETHFDUSD', 900000002, 3001, 0, 0, '2031-03-04 05:06:08.000', 0, 2)",
        " UNION ALL ".join(
            f"SELECT '{table}', sum(trade_count), min(dateDiff('second', window_start, window_end)),"
            f" max(dateDiff('second', window_start, window_end)) FROM k2.{table} WHERE canonical_symbol = 'ETH/FDUSD'"
            for table in WINDOW_SECONDS
        ),
    )
    found = {str(table): (int(trades), int(low), int(high)) for table, trades, low, high in rows}
    # The 1-minute view counts trades with a positive quantity only (production's edit, kept); the others all.
    assert found == {
        "ohlcv_1m": (1, 60, 60),
        "ohlcv_5m": (2, 300, 300),
        "ohlcv_1h": (2, 3600, 3600),
        "ohlcv_1d": (2, 86400, 86400),
    }


@embedded_only
def test_the_downgrade_of_k2_004_refuses_while_a_view_writes_window_end(
    foreign: Foreign, forker: Forker
) -> None:
    """A view from an earlier release of k2_004 wrote window_end itself: dropping the column under it
    would break every insert, so the downgrade stops first and drops nothing. (Runs after the tests
    above: the fixture's database is at head again.)"""
    path = foreign.path
    query(
        path,
        "DROP VIEW k2.ohlcv_1m_mv",
        "CREATE MATERIALIZED VIEW k2.ohlcv_1m_mv TO k2.ohlcv_1m AS SELECT canonical_symbol,"
        " toStartOfMinute(timestamp) AS window_start,"
        " toStartOfMinute(timestamp) + INTERVAL 1 MINUTE AS window_end FROM k2.silver_trades WHERE 0",
        "SELECT 1",
    )
    down = forker.run(path, "downgrade", "k2_003", env=ENV)
    assert down.returncode == 5, down.stderr[-2000:]
    assert "no OHLCV view writes window_end" in down.stderr.strip().splitlines()[-1]
    columns = query(
        path,
        "SELECT table FROM system.columns WHERE database = 'k2' AND name = 'window_end'"
        " AND table LIKE 'ohlcv%' AND table NOT LIKE '%_mv' ORDER BY table",
    )
    assert columns == [["ohlcv_1d"], ["ohlcv_1h"], ["ohlcv_1m"], ["ohlcv_5m"]]


def test_the_handmade_views_mean_what_the_spec_says(ch: Client) -> None:
    """Same bronze rows in, same silver trades and candles out: only the spelling differs (a check of
    the fixture itself, so the migration tests above migrate a real equivalent of production)."""
    handmade, canonical = unique("hand"), unique("spec")
    build_handmade(ch, handmade)
    ch.command(f"CREATE DATABASE {canonical}")
    try:
        for statement in schema.baseline_statements(canonical, "127.0.0.1:9"):
            ch.command(statement)
        for database in (handmade, canonical):
            demo_data.load(ch, database, scale=0.01)

        def content(database: str, table: str, columns: str) -> object:
            return ch.query(
                f"SELECT count(), cityHash64(groupArray(tuple({columns}))) FROM"
                f" (SELECT {columns} FROM {database}.{table} FINAL ORDER BY {columns})"
            ).result_rows[0]

        silver = "exchange, canonical_symbol, trade_id, timestamp, price, quantity, side, ingested_at"
        assert content(handmade, "silver_trades", silver) == content(canonical, "silver_trades", silver)
        candle = "exchange, canonical_symbol, window_start, open_price, high_price, low_price, close_price, volume, trade_count"
        for table in WINDOW_SECONDS:
            assert content(handmade, table, candle) == content(canonical, table, candle), table
    finally:
        for database in (handmade, canonical):
            ch.command(f"DROP DATABASE IF EXISTS {database}")


REFUSED = [
    pytest.param(
        ('To "default"."ohlcv_5m" As', 'To "default"."ohlcv_1h" As'),
        "ohlcv_5m_mv view target: expected '{source}.ohlcv_5m', found '{source}.ohlcv_1h'",
        id="view-writes-another-target",
    ),
    pytest.param(
        ("kafka_group_name = 'k2_bronze_trades_binance'", "kafka_group_name = 'k2_binance_v2'"),
        "bronze_trades_binance_queue setting kafka_group_name: expected 'k2_bronze_trades_binance',"
        " found 'k2_binance_v2' (re-created with this setting",
        id="kafka-table-in-another-group",
    ),
    pytest.param(
        ("'k2_bronze_trades_kraken', 'JSONEachRow')", "'k2_kraken_v2', 'JSONEachRow')"),
        "bronze_trades_kraken_queue setting kafka_group_name: expected 'k2_bronze_trades_kraken', found 'k2_kraken_v2'",
        id="positional-kafka-group",
    ),
    pytest.param(
        (
            'Order By ("pair", "exchange_timestamp", "trade_id")',
            'Order By ("pair", "trade_id", "exchange_timestamp")',
        ),
        "bronze_trades_kraken ORDER BY: expected 'pair, exchange_timestamp, trade_id',"
        " found 'pair, trade_id, exchange_timestamp' (moved and altered as it is",
        id="data-table-ordered-otherwise",
    ),
]


@pytest.mark.parametrize(("edit", "difference"), REFUSED)
def test_a_difference_a_later_revision_depends_on_stops_k2_001_before_anything_moves(
    tmp_path: Path, target_url: str, ch: Client, edit: tuple[str, str], difference: str
) -> None:
    source, target = unique("prod"), unique("k2")
    build_handmade(ch, source, edit)
    try:
        project = k2_project(tmp_path, target_url, source, target)
        result = project.run("upgrade", "head")
        assert result.exit_code == 8, result.output
        assert (
            f"k2-migrate: error: the existing schema in {source} differs where later revisions depend on it: "
            f"{source}.{difference.replace('{source}', source)}" in result.stderr
        )
        assert table_names(ch, source) == set(schema.all_objects())
        assert target not in {str(r[0]) for r in ch.query("SELECT name FROM system.databases").result_rows}
        assert json.loads(project.run("current", "--json").stdout)["current"] == []
    finally:
        ch.command(f"DROP DATABASE IF EXISTS {source}")


def _points(forker: Forker, path: Path, target: str, wanted: list[tuple[str, str]]) -> list[tuple[str, int]]:
    """The (revision, step) of each wanted (revision, start of the step's operation), from the plan."""
    plan = forker.run(path, "plan", target, "--json", env=ENV)
    assert plan.returncode == 0, plan.stderr
    steps = [
        (r["revision"], s["index"], s["operation"])
        for r in json.loads(plan.stdout)["revisions"]
        for s in r["steps"]
    ]
    return [
        next(
            (revision, index)
            for revision, index, operation in steps
            if (revision, operation[: len(start)]) == (rev, start)
        )
        for rev, start in wanted
    ]


def _killed_at(forker: Forker, path: Path, command: tuple[str, str], points: list[tuple[str, int]]) -> None:
    for point in points:
        outcome = forker.run(path, *command, env=ENV, kill_at=point)
        assert outcome.killed and outcome.returncode == -signal.SIGKILL, (point, outcome.stderr[-2000:])
    final = forker.run(path, *command, env=ENV)
    assert final.returncode == 0, final.stderr[-3000:]


@embedded_only
def test_killed_at_a_few_points_up_and_down_converges(forker: Forker, tmp_path: Path) -> None:
    """SIGKILL inside the adoption, a move and a mutation, then inside the way back: each chain ends
    where an uninterrupted run ends (every definition, every count)."""
    path, twin = prepared(tmp_path / "chain"), prepared(tmp_path / "twin")
    original = inspect(path, "default", "k2")
    assert forker.run(twin, "upgrade", "head", env=ENV).returncode == 0
    upgraded = inspect(twin, "default", "k2")
    up = _points(
        forker,
        path,
        "head",
        [
            ("k2_001", "adopt or create"),
            ("k2_003", "move default.silver_trades"),
            ("k2_004", "mutation on k2.ohlcv_5m"),
        ],
    )
    _killed_at(forker, path, ("upgrade", "head"), up)
    assert inspect(path, "default", "k2") == upgraded
    # The way back, killed in the capture of k2's live definitions and in a move.
    down = [("k2_003", 1), ("k2_003", 10)]
    _killed_at(forker, path, ("downgrade", "base"), down)
    state = inspect(path, "default", "k2")
    assert state["default"] == original["default"] and state["k2"] == original["k2"]


@pytest.mark.slow
@embedded_only
def test_at_the_handoffs_volumes_killed_up_and_down_nothing_is_lost(forker: Forker, tmp_path: Path) -> None:
    """The hand-made schema with the handoff's 1.28M trades: killed inside a move and inside the
    window_end mutation on the way up, inside a move on the way down; every count equal, every
    definition back."""
    path = prepared(tmp_path / "big", scale="1.0")
    original = inspect(path, "default", "k2")
    up = _points(
        forker,
        path,
        "head",
        [("k2_003", "move default.bronze_trades_binance"), ("k2_004", "mutation on k2.ohlcv_1m")],
    )
    _killed_at(forker, path, ("upgrade", "head"), up)
    upgraded = inspect(path, "default", "k2")
    moved: dict[str, int] = upgraded["k2"]["counts"]  # type: ignore[index]
    assert moved == original["default"]["counts"]  # type: ignore[index]
    assert sum(moved.values()) > 1_000_000
    _killed_at(forker, path, ("downgrade", "base"), [("k2_003", 10)])
    assert inspect(path, "default", "k2") == original
