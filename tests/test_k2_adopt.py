"""The baseline adopts a production database built by plain SQL outside the tool, and refuses drift
that would make the later revisions unsafe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from k2_migrations.k2 import baseline_schema as schema
from tests.conftest import ROOT, Project, scalar, table_names, unique
from tests.test_k2_revisions import k2_project

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

FIXTURE = ROOT / "tests" / "fixtures" / "k2_production.sql"


def build_by_hand(ch: Client, database: str) -> None:
    """Run the hand-written production SQL, in ``database`` instead of ``default``."""
    text = FIXTURE.read_text().replace("USE default;", f"USE {database};").replace("default.", f"{database}.")
    text = text.replace("`default`.", f"`{database}`.")
    ch.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    statements = [s.strip() for s in text.split(";\n") if s.strip() and not _only_comments(s)]
    try:
        for statement in statements:
            ch.command(statement)
    finally:
        ch.command("USE default")


def _only_comments(chunk: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in chunk.splitlines())


def test_a_database_built_by_plain_sql_is_adopted_and_migrated(
    tmp_path: Path, target_url: str, ch: Client
) -> None:
    source, target = unique("prod"), unique("k2")
    build_by_hand(ch, source)
    assert table_names(ch, source) == set(schema.all_objects())
    ch.command(
        f"INSERT INTO {source}.bronze_trades_binance (exchange_timestamp, symbol, trade_id, price, quantity,"
        " is_buyer_maker, event_timestamp, kafka_partition, kafka_offset)"
        " VALUES ('2026-02-11 14:29:10', 'BTCUSDT', 1, 97000, 0.1, 0, '2026-02-11 14:29:10', 0, 0)"
    )
    project = k2_project(tmp_path, target_url, source, target)
    result = project.run("upgrade", "head", "--json")
    assert result.exit_code == 0, result.output
    adopt = json.loads(result.stdout)["revisions"][0]["steps"][1]
    assert adopt["operation"] == f"adopt or create 20 object(s) in {source}"
    assert adopt["note"].startswith("20 adopted, 0 created")
    assert table_names(ch, target) == set(schema.all_objects()) and table_names(ch, source) == set()
    assert scalar(ch, f"SELECT window_end FROM {target}.ohlcv_1m").isoformat() == "2026-02-11T14:30:00"  # type: ignore[attr-defined]
    project.run("downgrade", "base")


def test_unsafe_drift_is_refused_with_a_clear_diff(tmp_path: Path, target_url: str, ch: Client) -> None:
    source, target = unique("prod"), unique("k2")
    build_by_hand(ch, source)
    ch.command(f"ALTER TABLE {source}.ohlcv_5m ADD COLUMN venue String AFTER window_start")
    ch.command(
        f"CREATE MATERIALIZED VIEW {source}.audit_mv TO {source}.bronze_trades_dlq AS SELECT * FROM {source}.bronze_trades_dlq"
    )
    project = k2_project(tmp_path, target_url, source, target)
    result = project.run("upgrade", "head")
    assert result.exit_code == 8, result.output
    message = result.stderr
    assert f"the existing schema in {source} differs where later revisions depend on it" in message
    assert (
        f"{source}.ohlcv_5m columns" in message
        and "window_start DateTime64(3, 'UTC'), venue String" in message
    )
    assert f"{source}.audit_mv reads" in message
    assert target not in {str(r[0]) for r in ch.query("SELECT name FROM system.databases").result_rows}
    assert json.loads(project.run("current", "--json").stdout)["current"] == []
    ch.command(f"DROP TABLE {source}.audit_mv")


def test_harmless_differences_are_reported_not_refused(tmp_path: Path, target_url: str, ch: Client) -> None:
    source, target = unique("prod"), unique("k2")
    build_by_hand(ch, source)
    ch.command(
        f"ALTER TABLE {source}.bronze_trades_dlq MODIFY COLUMN ingested_at DateTime64(3, 'UTC') DEFAULT now64(6)"
    )
    project: Project = k2_project(tmp_path, target_url, source, target)
    result = project.run("upgrade", "k2_001", "--json")
    assert result.exit_code == 0, result.output
    note = json.loads(result.stdout)["revisions"][0]["steps"][1]["note"]
    # The default changed by hand, and the broker list (production's, where this test expects its own).
    assert note == "20 adopted, 0 created, 3 harmless difference(s)"
    assert (
        f"difference: {source}.bronze_trades_dlq column defaults: expected (ingested_at DEFAULT now64(3)),"
        " found (ingested_at DEFAULT now64(6))" in result.stderr
    )
    assert f"difference: {source}.bronze_trades_binance_queue setting kafka_broker_list" in result.stderr
