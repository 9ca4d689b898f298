"""The K2 revisions at the handoff's volumes, on the real engine.

A source database gets the K2 baseline through ``upgrade k2_001``, then the synthetic market data
(1.28M Binance and ~6K Kraken trades inserted into bronze; silver and the candles derived by the real
views), then ``upgrade head``. Everything is read back from system tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from k2_migrations.k2 import baseline_schema as schema
from k2_migrations.k2 import demo_data
from tests.conftest import ROOT, Project, engines_in, scalar, table_names, unique

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

WINDOW_SECONDS = {"ohlcv_1m": 60, "ohlcv_5m": 300, "ohlcv_1h": 3600, "ohlcv_1d": 86400}
COLLAPSING = {"silver_trades", *WINDOW_SECONDS}


def k2_project(tmp_path: Path, target_url: str, source: str, target: str) -> Project:
    ini = (ROOT / "alembic.ini").read_text().replace("%(here)s/versions", str(ROOT / "versions"))
    (tmp_path / "alembic.ini").write_text(ini)
    return Project(
        tmp_path,
        {
            "K2_MIGRATE_URL": target_url,
            "K2_MIGRATE_DATABASE": unique("k2m"),
            "K2_SOURCE_DATABASE": source,
            "K2_TARGET_DATABASE": target,
            "K2_KAFKA_BROKERS": "127.0.0.1:9",
            "K2_MIGRATE_PASSWORD": "",
            "K2_MIGRATE_PASSWORD_FILE": "",
        },
    )


def definitions(ch: Client, database: str) -> dict[str, str]:
    rows = ch.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = {d:String}",
        parameters={"d": database},
    ).result_rows
    return {str(name): str(query) for name, query in rows}


def logical_counts(ch: Client, database: str) -> dict[str, int]:
    """Rows as a reader sees them: FINAL where merges collapse rows, so merges cannot change them."""
    return {
        t: int(scalar(ch, f"SELECT count() FROM {database}.{t}{' FINAL' if t in COLLAPSING else ''}"))  # type: ignore[call-overload]
        for t in schema.DATA_TABLES
    }


@dataclass
class Migrated:
    project: Project
    source: str
    target: str
    before_definitions: dict[str, str]
    before_counts: dict[str, int]
    upgrade: dict[str, object]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory, target_url: str, ch: Client) -> Iterator[Migrated]:
    source, target = unique("prod"), unique("k2")
    project = k2_project(tmp_path_factory.mktemp("k2"), target_url, source, target)
    baseline = project.run("upgrade", "k2_001")
    assert baseline.exit_code == 0, baseline.output
    demo_data.load(ch, source, scale=1.0)
    before_definitions = definitions(ch, source)
    before_counts = logical_counts(ch, source)
    upgrade = project.run("upgrade", "head", "--json")
    assert upgrade.exit_code == 0, upgrade.output
    yield Migrated(project, source, target, before_definitions, before_counts, json.loads(upgrade.stdout))


def test_handoff_volumes_were_loaded(migrated: Migrated) -> None:
    counts = migrated.before_counts
    assert 1_250_000 <= counts["bronze_trades_binance"] <= 1_320_000
    assert 5_000 <= counts["bronze_trades_kraken"] <= 7_000
    assert 1_000_000 <= counts["silver_trades"] <= 1_200_000
    assert counts["bronze_trades_dlq"] > 0 and counts["ohlcv_1m"] > 100


def test_every_object_is_in_k2_and_none_left_in_the_source(migrated: Migrated, ch: Client) -> None:
    assert table_names(ch, migrated.source) == set()
    engines = engines_in(ch, migrated.target)
    assert set(engines) == set(schema.all_objects())
    for table in schema.DATA_TABLES:
        expected = {"silver_trades": "ReplacingMergeTree"}.get(
            table, "AggregatingMergeTree" if "ohlcv" in table else "MergeTree"
        )
        assert engines[table] == expected
    assert {engines[k] for k in schema.KAFKA_TABLES} == {"Kafka"}
    assert {engines[v] for v in schema.VIEWS} == {"MaterializedView"}


def test_views_read_and_write_k2_only(migrated: Migrated, ch: Client) -> None:
    after = definitions(ch, migrated.target)
    for view, (source, target) in schema.VIEW_ROUTES.items():
        query = after[view]
        assert f"TO {migrated.target}.{target}" in query
        assert f"FROM {migrated.target}.{source}" in query
        assert f"{migrated.source}." not in query


def test_moved_objects_keep_their_definitions_except_the_database(migrated: Migrated, ch: Client) -> None:
    after = definitions(ch, migrated.target)
    rewritten = {
        name: query.replace(f"{migrated.source}.", f"{migrated.target}.")
        for name, query in migrated.before_definitions.items()
    }
    for name in schema.KAFKA_TABLES + schema.VIEWS:  # the OHLCV views too: window_end left them as they are
        assert after[name] == rewritten[name], name
    for table in schema.DATA_TABLES:
        if table in WINDOW_SECONDS:
            continue
        assert after[table] == rewritten[table], table


def test_kafka_tables_keep_topics_groups_and_settings(migrated: Migrated, ch: Client) -> None:
    for kafka in schema.KAFKA_TABLES:
        engine_full = str(
            scalar(
                ch,
                f"SELECT engine_full FROM system.tables WHERE database = '{migrated.target}' AND name = '{kafka}'",
            )
        )
        exchange = kafka.split("_")[2]
        assert f"kafka_topic_list = 'market.crypto.trades.{exchange}'" in engine_full
        assert f"kafka_group_name = 'k2_bronze_trades_{exchange}'" in engine_full
        assert "kafka_format = 'JSONEachRow'" in engine_full
        assert (
            "kafka_num_consumers = 1" in engine_full and "kafka_handle_error_mode = 'stream'" in engine_full
        )


def test_no_row_lost_in_any_table(migrated: Migrated, ch: Client) -> None:
    assert logical_counts(ch, migrated.target) == migrated.before_counts
    guards = {(g["label"], g["moved_to"]): (g["before"], g["after"]) for g in migrated.upgrade["guards"]}  # type: ignore[attr-defined]
    for table in schema.DATA_TABLES:
        before, after = guards[("move", f"{migrated.target}.{table}")]
        assert before == after


def test_ingestion_pause_is_reported(migrated: Migrated) -> None:
    pauses = {(i["revision"], i["name"]): i["seconds"] for i in migrated.upgrade["intervals"]}  # type: ignore[attr-defined]
    assert 0 < pauses[("k2_003", "ingestion_pause")] < 30
    assert ("k2_004", "ingestion_pause") not in pauses  # window_end needs no view swap, so no pause


def test_window_end_follows_window_start_and_every_candle_has_its_duration(
    migrated: Migrated, ch: Client
) -> None:
    for table, seconds in WINDOW_SECONDS.items():
        columns = [
            (str(n), str(t))
            for n, t in ch.query(
                f"SELECT name, type FROM system.columns WHERE database = '{migrated.target}' AND table = '{table}'"
                " ORDER BY position"
            ).result_rows
        ]
        names = [n for n, _ in columns]
        assert names[names.index("window_start") + 1] == "window_end"
        assert dict(columns)["window_end"] == "SimpleAggregateFunction(any, DateTime64(3, 'UTC'))"
        assert (
            scalar(
                ch,
                f"SELECT countIf(dateDiff('second', window_start, window_end) != {seconds}) FROM {migrated.target}.{table}",
            )
            == 0
        )
        # An AggregatingMergeTree may merge rows away at any time: its logical count is the one with FINAL
        # (one row per window); and the candles still count every bronze delivery the views were sent.
        assert (
            scalar(ch, f"SELECT count() FROM {migrated.target}.{table} FINAL")
            == migrated.before_counts[table]
        )
        assert scalar(ch, f"SELECT sum(trade_count) FROM {migrated.target}.{table}") == (
            migrated.before_counts["bronze_trades_binance"] + migrated.before_counts["bronze_trades_kraken"]
        )
        parts_without = scalar(
            ch,
            f"SELECT count() FROM system.parts p WHERE database = '{migrated.target}' AND table = '{table}' AND active"
            f" AND name NOT IN (SELECT name FROM system.parts_columns WHERE database = '{migrated.target}'"
            f" AND table = '{table}' AND active AND column = 'window_end')",
        )
        assert parts_without == 0  # filled in place, not only computed on read
    checks = {c["name"]: c["violations"] for c in migrated.upgrade["checks"]}  # type: ignore[attr-defined]
    assert checks == {f"every {t} candle lasts {s} s": 0 for t, s in WINDOW_SECONDS.items()}


def test_a_new_trade_reaches_silver_and_every_candle_with_window_end(migrated: Migrated, ch: Client) -> None:
    db = migrated.target
    ch.command(
        f"INSERT INTO {db}.bronze_trades_binance (exchange_timestamp, symbol, trade_id, price, quantity, is_buyer_maker,"
        " event_timestamp, kafka_partition, kafka_offset)"
        " VALUES ('2031-03-04 05:06:07.089', 'ETHUSDC', 777000001, 3000, 2, 1, '2031-03-04 05:06:07.089', 0, 1)"
    )
    ch.command(
        f"INSERT INTO {db}.bronze_trades_kraken (exchange_timestamp, pair, side, order_type, trade_id, price, volume,"
        " kafka_partition, kafka_offset) VALUES ('2031-03-04 05:06:07.123456', 'XDG/USD', 'b', 'm', 777000002, 0.1, 10, 0, 1)"
    )
    for exchange, symbol, side in (("binance", "ETH/USDC", "sell"), ("kraken", "DOGE/USD", "buy")):
        assert (
            scalar(
                ch,
                f"SELECT side FROM {db}.silver_trades WHERE exchange='{exchange}' AND canonical_symbol='{symbol}'",
            )
            == side
        )
        for table, seconds in WINDOW_SECONDS.items():
            start, end = ch.query(
                f"SELECT window_start, window_end FROM {db}.{table} WHERE exchange='{exchange}' AND canonical_symbol='{symbol}'"
            ).result_rows[0]
            assert (end - start).total_seconds() == seconds


def test_upgrade_head_twice_changes_nothing(migrated: Migrated, ch: Client) -> None:
    before = definitions(ch, migrated.target)
    again = migrated.project.run("upgrade", "head")
    assert again.exit_code == 0 and "Nothing to do" in again.stdout
    assert definitions(ch, migrated.target) == before


def test_downgrade_base_restores_the_original_layout_exactly(migrated: Migrated, ch: Client) -> None:
    ch.command(f"DELETE FROM {migrated.target}.bronze_trades_binance WHERE trade_id = 777000001")
    ch.command(f"DELETE FROM {migrated.target}.bronze_trades_kraken WHERE trade_id = 777000002")
    down = migrated.project.run("downgrade", "base", "--json")
    assert down.exit_code == 0, down.output
    assert table_names(ch, migrated.target) == set()
    assert migrated.target not in {
        str(r[0]) for r in ch.query("SELECT name FROM system.databases").result_rows
    }
    assert definitions(ch, migrated.source) == migrated.before_definitions
    counts = logical_counts(ch, migrated.source)
    # The test trades of the previous test reached silver and the candles; everything else is as it was.
    assert counts["bronze_trades_binance"] == migrated.before_counts["bronze_trades_binance"]
    assert counts["silver_trades"] == migrated.before_counts["silver_trades"] + 2
    again = migrated.project.run("upgrade", "head")
    assert again.exit_code == 0, again.output
    assert logical_counts(ch, migrated.target) == counts
    # Up, down and up again: k2-migrate's own state (version record, journal, snapshots, lock) was
    # only ever appended to, never changed by a mutation.
    state = migrated.project.migrations_database
    assert scalar(ch, f"SELECT count() FROM system.mutations WHERE database = '{state}'") == 0


def test_round_trip_through_chdbs_overlay_default(tmp_path: Path, target_url: str, ch: Client) -> None:
    """Into ``default`` a RENAME is refused on chDB (Overlay): the downgrade moves partitions instead."""
    if scalar(ch, "SELECT engine FROM system.databases WHERE name = 'default'") != "Overlay":
        pytest.skip("default is not an Overlay database here")
    target = unique("k2")
    project = k2_project(tmp_path, target_url, "default", target)
    assert project.run("upgrade", "k2_001").exit_code == 0
    try:
        demo_data.load(ch, "default", scale=0.02)
        before_definitions = {
            n: q for n, q in definitions(ch, "default").items() if n in schema.all_objects()
        }
        before_counts = logical_counts(ch, "default")
        assert project.run("upgrade", "head").exit_code == 0
        down = project.run("downgrade", "base", "--json")
        assert down.exit_code == 0, down.output
        notes = [
            s["note"]
            for s in json.loads(down.stdout)["revisions"][1]["steps"]
            if s["operation"].startswith("move")
        ]
        assert len(notes) == 8 and all(note.endswith("by partitions") for note in notes)
        after = {n: q for n, q in definitions(ch, "default").items() if n in schema.all_objects()}
        assert after == before_definitions
        assert logical_counts(ch, "default") == before_counts
    finally:
        for name in reversed(schema.all_objects()):
            ch.command(f"DROP TABLE IF EXISTS default.{name}")
