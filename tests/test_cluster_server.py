"""The cluster suite: k2-migrate against a real ClickHouse cluster, every run a real process.

It needs a cluster of one shard and two replicas coordinated by Keeper, such as the one
docker-compose.cluster.yml starts (docs/clusters.md): ``K2_TEST_CLUSTER_URL`` and
``K2_TEST_CLUSTER_URL_2`` name the two replicas, ``K2_TEST_CLUSTER_NAME`` the cluster (``k2c``).
Without them every test skips: the embedded engine refuses ON CLUSTER and cannot write replicated
tables, so what it can show is in tests/test_cluster_embedded.py. What each test asserts is read
back from each replica's own system tables; replication is asynchronous, so a replica that must
catch up is read until it has (:func:`assert_eventually`), while what k2-migrate promises to have waited
for is read at once. Every test works in databases of its own, so the suite can run again on the
same cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from k2_migrations.config import parse_url
from k2_migrations.errors import ExitCode
from k2_migrations.sqltext import split_statements
from tests.conftest import Project
from tests.support.gated import GATED_REVISION
from tests.support.kill_harness import ROOT, environment

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

URL_1 = os.environ.get("K2_TEST_CLUSTER_URL", "")
URL_2 = os.environ.get("K2_TEST_CLUSTER_URL_2", "")
CLUSTER = os.environ.get("K2_TEST_CLUSTER_NAME", "k2c")
#: The compose file the cluster runs from; the host-behind test pauses a replica through it.
COMPOSE = os.environ.get("K2_TEST_CLUSTER_COMPOSE", "")
#: docker-compose.cluster.yml's service of the replica ``K2_TEST_CLUSTER_URL_2`` names.
SECOND_SERVICE = "ch2"

pytestmark = pytest.mark.skipif(
    not (URL_1 and URL_2),
    reason="the cluster suite needs a real cluster: start docker-compose.cluster.yml and set "
    "K2_TEST_CLUSTER_URL and K2_TEST_CLUSTER_URL_2 to its two replicas (docs/clusters.md)",
)

#: How long a replica gets to take in what the other one did (replication, Replicated databases).
SETTLE_S = 60.0
T = TypeVar("T")

#: The mutation of the shop project: every ``v`` gets a prefix ``X``.
X = "x"
REWRITE = f"UPDATE v = concat({X!r}, v) WHERE 1"


# -- the replicas, read directly ------------------------------------------------------------------


def connect(url: str) -> Client:
    """A client on the replica ``url`` names (k2-migrate's URL syntax, password included)."""
    import clickhouse_connect

    target = parse_url(url)
    return clickhouse_connect.get_client(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        database=target.database,
        secure=target.secure,
        verify=target.verify,
    )


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[Client, Client]]:
    first, second = connect(URL_1), connect(URL_2)
    yield first, second
    first.close()
    second.close()


def rows(client: Client, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql, parameters=parameters).result_rows]


def tables(client: Client, *databases: str) -> dict[str, str]:
    """``db.name`` -> engine of each table of ``databases`` this replica has."""
    found = rows(
        client,
        "SELECT database, name, engine FROM system.tables WHERE database IN {d:Array(String)}",
        d=list(databases),
    )
    return {f"{d}.{n}": str(e) for d, n, e in found}


def columns(client: Client, database: str, table: str) -> list[tuple[str, str]]:
    found = rows(
        client,
        "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
        d=database,
        t=table,
    )
    return [(str(n), str(t)) for n, t in found]


def databases(client: Client, *names: str) -> set[str]:
    """Those of ``names`` this replica has."""
    found = rows(client, "SELECT name FROM system.databases WHERE name IN {n:Array(String)}", n=list(names))
    return {str(r[0]) for r in found}


def cluster_hosts(client: Client) -> set[str]:
    """``host:port`` of each replica of the cluster, as ON CLUSTER reports them."""
    found = rows(client, "SELECT host_name, port FROM system.clusters WHERE cluster = {c:String}", c=CLUSTER)
    return {f"{h}:{p}" for h, p in found}


def assert_eventually(replica: Client, read: Callable[[Client], T], expected: T) -> None:
    """``read(replica)`` gives ``expected`` within :data:`SETTLE_S`: for what a replica takes in
    asynchronously (parts, metadata, a Replicated database's DDL, the journal's rows)."""
    deadline = time.monotonic() + SETTLE_S
    value = read(replica)
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read(replica)
    assert value == expected


def replicated(table: str) -> str:
    """The DDL of a replicated table (its Keeper path and replica name: the server's defaults)."""
    return f"CREATE TABLE {table} (id UInt64, v String) ENGINE = ReplicatedMergeTree ORDER BY id"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# -- projects and k2-migrate processes -----------------------------------------------------------


def scratch(root: Path) -> Project:
    """A project of its own in ``root`` with its own migrations database (revisions added by the test)."""
    (root / "versions").mkdir()
    (root / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    return Project(root, {"K2_MIGRATE_DATABASE": unique("k2mc")})


def command(project: Project, url: str, *args: str) -> list[str]:
    ini = str(project.root / "alembic.ini")
    return [sys.executable, "-m", "k2_migrations", "-c", ini, "--url", url, *args]


def k2(project: Project, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``k2-migrate ARGS`` against ``url`` to its end."""
    return subprocess.run(
        command(project, url, *args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment(project.env),
        timeout=600,
        check=False,
    )


def document(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def current(project: Project, url: str) -> list[str]:
    heads: list[str] = document(k2(project, url, "current", "--json"))["current"]
    return heads


def one_line(stderr: str) -> str:
    (line,) = stderr.strip().splitlines()
    assert line.startswith("k2-migrate: error: "), line
    return line


def shop_project(root: Path, shop: str, archive: str) -> Project:
    """Four revisions: databases and a replicated table, a column, rows and a mutation, a guarded move."""
    project = scratch(root)
    events = f"{shop}.events"
    insert = f"INSERT INTO {events} (id, v) SELECT number, toString(number) FROM numbers(100)"
    project.write_revision(
        "c1",
        None,
        f"op.create_database({shop!r})\n"
        f"op.create_database({archive!r})\n"
        f"op.create_object({shop!r}, 'events', {replicated(events)!r})",
        f"op.drop_object({shop!r}, 'events', allow_rows=True)\n"
        f"op.drop_database({archive!r})\n"
        f"op.drop_database({shop!r})",
    )
    project.write_revision(
        "c2",
        "c1",
        f"op.add_column_if_missing({shop!r}, 'events', 'amount', 'Decimal(18, 2)', default='0')",
        f"op.drop_column_if_exists({shop!r}, 'events', 'amount')",
    )
    project.write_revision(
        "c3",
        "c2",
        f"op.execute_sql({insert!r}, done_when={f'SELECT count() = 100 FROM {events}'!r})\n"
        f"op.run_mutation({shop!r}, 'events', {REWRITE!r},"
        f" done_when={f'SELECT countIf(NOT startsWith(v, {X!r})) = 0 FROM {events}'!r})",
        '"""Nothing to undo here: c1\'s downgrade drops the table with its rows."""',
    )
    project.write_revision(
        "c4",
        "c3",
        f"op.take_guards('move', [{events!r}], relocate={{{shop!r}: {archive!r}}})\n"
        f"op.move_table({shop!r}, 'events', {archive!r})\n"
        "op.check_guards('move')",
        f"op.take_guards('back', [{f'{archive}.events'!r}], relocate={{{archive!r}: {shop!r}}})\n"
        f"op.move_table({archive!r}, 'events', {shop!r})\n"
        "op.check_guards('back')",
    )
    return project


# -- upgrade and downgrade reach both replicas ----------------------------------------------------


def test_upgrade_on_the_cluster_reaches_both_replicas_and_downgrade_undoes_it(
    tmp_path: Path, replicas: tuple[Client, Client]
) -> None:
    first, second = replicas
    shop, archive = unique("shop"), unique("archive")
    project = shop_project(tmp_path, shop, archive)
    state = project.migrations_database

    to_c3 = k2(project, URL_1, "--cluster", CLUSTER, "upgrade", "c3")
    assert to_c3.returncode == 0, to_c3.stderr
    # The mutation was waited for on every replica: the second reports it done the moment the run ends.
    assert rows(
        second,
        "SELECT count(), countIf(is_done) FROM system.mutations WHERE database = {d:String} AND table = 'events'",
        d=shop,
    ) == [(1, 1)]

    to_head = k2(project, URL_1, "--cluster", CLUSTER, "upgrade", "head")
    assert to_head.returncode == 0, to_head.stderr
    expected_columns = [("id", "UInt64"), ("v", "String"), ("amount", "Decimal(18, 2)")]
    rewritten = f"SELECT count(), countIf(startsWith(v, {X!r})) FROM {archive}.events"
    for replica in (first, second):
        assert_eventually(
            replica, lambda r: tables(r, shop, archive), {f"{archive}.events": "ReplicatedMergeTree"}
        )
        assert_eventually(replica, lambda r: columns(r, archive, "events"), expected_columns)
        assert_eventually(replica, lambda r: rows(r, rewritten), [(100, 100)])

    # The version state is replicated: the second replica, asked without --cluster, is at head too.
    assert current(project, URL_2) == ["c4"]
    state_replicas = [
        rows(
            replica,
            "SELECT table, zookeeper_path, replica_name FROM system.replicas WHERE database = {d:String} ORDER BY table",
            d=state,
        )
        for replica in (first, second)
    ]
    state_tables = ["k2_migrations_journal", "k2_migrations_snapshots", "k2_migrations_versions"]
    for found in state_replicas:
        assert [r[0] for r in found] == state_tables
        assert [r[1] for r in found] == [
            f"/clickhouse/k2_migrations/{CLUSTER}/{state}/{t}" for t in state_tables
        ]
    assert {r[2] for r in state_replicas[0]}.isdisjoint(r[2] for r in state_replicas[1])

    # Each ON CLUSTER step's journal row names every host's outcome; read on the other replica.
    hosts = cluster_hosts(first)
    journaled = f"SELECT step, payload FROM {state}.k2_migrations_journal WHERE kind = 'step' AND revision = 'c1' AND status = 'done' ORDER BY step"
    assert_eventually(second, lambda r: len(rows(r, journaled)), 3)
    for step, payload in rows(second, journaled):
        assert json.loads(payload)["hosts"] == dict.fromkeys(hosts, "done"), step

    down = k2(project, URL_1, "--cluster", CLUSTER, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    for replica in (first, second):
        assert_eventually(replica, lambda r: databases(r, shop, archive), set[str]())
    assert current(project, URL_2) == []


# -- one lock across hosts -----------------------------------------------------------------------


def test_two_runs_on_two_replicas_started_together_one_runs_and_the_other_names_it(
    tmp_path: Path, replicas: tuple[Client, Client]
) -> None:
    project = scratch(tmp_path)
    gate = tmp_path / "gate"
    (project.versions / "rk1_gated.py").write_text(GATED_REVISION.format(gate=str(gate)))
    # Cluster mode from the environment this time (the other tests give the flag).
    env = environment({**project.env, "K2_MIGRATE_CLUSTER": CLUSTER})
    runs = {
        url: subprocess.Popen(
            command(project, url, "upgrade", "head"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for url in (URL_1, URL_2)
    }
    try:
        # The first to take the lock holds it until the gate opens; the other must give up at once.
        refused = _first_to_end(runs)
    finally:
        gate.touch()
        outcomes = {url: _finish(process) for url, process in runs.items()}
    winner = URL_2 if refused == URL_1 else URL_1
    refused_err = outcomes[refused][1]
    assert runs[winner].returncode == 0, outcomes[winner]
    assert runs[refused].returncode == ExitCode.LOCK, refused_err
    line = one_line(refused_err)
    assert line.startswith(
        f"k2-migrate: error: another migration run holds the lock on {project.migrations_database} (in Keeper): "
    )
    assert f"pid {runs[winner].pid} " in line and "upgrade head" in line
    shown = document(k2(project, refused, "lock", "--json"))
    assert shown["kind"] == "keeper" and shown["held"] is False
    # One run applied k1 for the whole cluster: both replicas say so.
    assert current(project, URL_1) == ["k1"]
    assert current(project, URL_2) == ["k1"]


def _first_to_end(runs: dict[str, subprocess.Popen[str]]) -> str:
    """The URL whose run ends first (the winner holds the lock until the gate opens)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for url, process in runs.items():
            if process.poll() is not None:
                return url
        time.sleep(0.05)
    raise AssertionError("neither run ended within 120 s")


def _finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    """The run's remaining output once it has ended (killed if it outlives the test)."""
    try:
        return process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


# -- plan and --sql in cluster form ----------------------------------------------------------------


def test_plan_and_the_script_put_on_cluster_on_ddl_and_never_on_inserts(
    tmp_path: Path, replicas: tuple[Client, Client]
) -> None:
    first, _ = replicas
    shop = unique("plan")
    project = scratch(tmp_path)
    insert = f"INSERT INTO {shop}.t (id, v) VALUES (1, 'a')"
    project.write_revision(
        "p1",
        None,
        f"op.create_database({shop!r})\n"
        f"op.create_object({shop!r}, 't', {replicated(f'{shop}.t')!r})\n"
        f"op.execute_sql({insert!r}, done_when={f'SELECT count() = 1 FROM {shop}.t'!r})",
        f"op.drop_object({shop!r}, 't', allow_rows=True)\nop.drop_database({shop!r})",
    )
    on_cluster = f"ON CLUSTER {CLUSTER}"

    plan = document(k2(project, URL_1, "--cluster", CLUSTER, "plan", "--json"))
    planned = [
        s for r in plan["revisions"] for step in r["steps"] for s in step["sql"] if not s.startswith("--")
    ]
    assert [s.split()[0] for s in planned] == ["CREATE", "CREATE", "INSERT"]
    assert all(on_cluster in s for s in planned[:2]), planned
    assert "ON CLUSTER" not in planned[2], planned
    assert databases(first, shop, project.migrations_database) == set()  # plan ran nothing

    script = k2(project, URL_1, "--cluster", CLUSTER, "upgrade", "head", "--sql")
    assert script.returncode == 0, script.stderr
    statements = [_without_comments(s) for s in split_statements(script.stdout)]
    inserts = [s for s in statements if s.startswith("INSERT")]
    ddl = [s for s in statements if s.split()[0] in {"CREATE", "ALTER", "DROP", "RENAME"}]
    assert len(inserts) >= 2 and ddl, statements  # ours and the version record's
    assert all("ON CLUSTER" not in s for s in inserts), inserts
    assert all(on_cluster in s for s in ddl), ddl


def _without_comments(statement: str) -> str:
    return "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--")).strip()


# -- guards count what the other replica wrote -----------------------------------------------


def test_a_guard_on_the_second_replica_counts_rows_written_on_the_first(
    tmp_path: Path, replicas: tuple[Client, Client]
) -> None:
    first, second = replicas
    shop, archive = unique("guard"), unique("moved")
    project = scratch(tmp_path)
    project.write_revision(
        "g1",
        None,
        f"op.create_database({shop!r})\n"
        f"op.create_database({archive!r})\n"
        f"op.create_object({shop!r}, 'ticks', {replicated(f'{shop}.ticks')!r})",
        f"op.drop_object({shop!r}, 'ticks', allow_rows=True)\nop.drop_database({archive!r})\nop.drop_database({shop!r})",
    )
    project.write_revision(
        "g2",
        "g1",
        f"op.take_guards('move', ['{shop}.ticks'], relocate={{{shop!r}: {archive!r}}})\n"
        f"op.move_table({shop!r}, 'ticks', {archive!r})\n"
        "op.check_guards('move')",
        f"op.move_table({archive!r}, 'ticks', {shop!r})",
    )
    created = k2(project, URL_1, "--cluster", CLUSTER, "upgrade", "g1")
    assert created.returncode == 0, created.stderr
    ticks = {f"{shop}.ticks": "ReplicatedMergeTree"}
    assert_eventually(second, lambda r: tables(r, shop), ticks)

    # The second replica fetches nothing while 20 parts are written on the first; then it may, and
    # the run starts at once on it: only a replica synced before counting counts all 1,000 rows.
    second.command(f"SYSTEM STOP FETCHES {shop}.ticks")
    try:
        for block in range(20):
            first.command(
                f"INSERT INTO {shop}.ticks (id, v) SELECT number + {block * 50}, 'r' FROM numbers(50)"
            )
    finally:
        second.command(f"SYSTEM START FETCHES {shop}.ticks")
    moved = document(k2(project, URL_2, "--cluster", CLUSTER, "upgrade", "head", "--json"))
    assert [(g["table"], g["before"], g["after"], g["ok"]) for g in moved["guards"]] == [
        (f"{shop}.ticks", 1000, 1000, True)
    ]
    count = f"SELECT count() FROM {archive}.ticks"
    for replica in (first, second):
        assert_eventually(replica, lambda r: rows(r, count), [(1000,)])


# -- an unknown cluster ----------------------------------------------------------------------


def test_an_unknown_cluster_exits_2_naming_the_clusters_the_server_has(
    tmp_path: Path, replicas: tuple[Client, Client]
) -> None:
    first, _ = replicas
    project = scratch(tmp_path)
    refused = k2(project, URL_1, "--cluster", "no_such_cluster", "upgrade", "head")
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    line = one_line(refused.stderr)
    assert "cluster 'no_such_cluster' is not defined" in line
    known = {str(r[0]) for r in rows(first, "SELECT DISTINCT cluster FROM system.clusters")}
    assert CLUSTER in known
    assert all(name in line for name in known), (known, line)
    # Stopped before anything was created.
    assert databases(first, project.migrations_database) == set()


# -- a host behind ---------------------------------------------------------------------------


def _compose_reason() -> str | None:
    if not COMPOSE:
        return "needs K2_TEST_CLUSTER_COMPOSE naming the cluster's compose file (to pause a replica)"
    if shutil.which("docker") is None:
        return "needs the docker CLI to pause a replica"
    return None


def _compose(*args: str) -> None:
    subprocess.run(["docker", "compose", "-f", COMPOSE, *args], check=True, capture_output=True, timeout=120)


def test_a_replica_behind_stops_the_run_naming_it_and_the_same_command_finishes_later(
    tmp_path: Path, replicas: tuple[Client, Client]
) -> None:
    reason = _compose_reason()
    if reason is not None:
        pytest.skip(reason)
    first, second = replicas
    shop = unique("behind")
    project = scratch(tmp_path)
    project.write_revision(
        "h1",
        None,
        f"op.create_database({shop!r})\nop.create_object({shop!r}, 't', {replicated(f'{shop}.t')!r})",
        f"op.drop_object({shop!r}, 't')\nop.drop_database({shop!r})",
    )
    run = ("--ddl-timeout", "5", "--cluster", CLUSTER, "upgrade", "head")
    _compose("pause", SECOND_SERVICE)
    try:
        behind = k2(project, URL_1, *run)
    finally:
        _compose("unpause", SECOND_SERVICE)
    # 6: an ON CLUSTER statement did not finish on it within 5 s; 3: the pre-run check already saw
    # its replicas inactive (once its Keeper session expired). Either way it is named.
    assert behind.returncode in (ExitCode.SQL, ExitCode.CONNECTION), behind.stderr
    assert SECOND_SERVICE in one_line(behind.stderr)

    # Back, it works off its queue; meanwhile the pre-run check may stop the run (exit 3).
    deadline = time.monotonic() + 180
    again = k2(project, URL_1, *run)
    while again.returncode in (ExitCode.SQL, ExitCode.CONNECTION) and time.monotonic() < deadline:
        time.sleep(2)
        again = k2(project, URL_1, *run)
    assert again.returncode == 0, again.stderr
    for replica in (first, second):
        assert_eventually(replica, lambda r: tables(r, shop), {f"{shop}.t": "ReplicatedMergeTree"})
    assert current(project, URL_2) == ["h1"]


# -- Replicated databases --------------------------------------------------------------------------


def test_a_replicated_database_goes_on_cluster_and_its_tables_replicate_by_themselves(
    tmp_path: Path, replicas: tuple[Client, Client]
) -> None:
    first, second = replicas
    shop = unique("rdb")
    project = scratch(tmp_path)
    engine = f"Replicated('/clickhouse/k2_test_databases/{shop}', '{{shard}}', '{{replica}}')"
    project.write_revision(
        "d1",
        None,
        f"op.create_database({shop!r}, engine={engine!r})\n"
        f"op.create_object({shop!r}, 't', {replicated(f'{shop}.t')!r})\n"
        f"op.add_column_if_missing({shop!r}, 't', 'extra', 'String')",
        f"op.drop_object({shop!r}, 't')\nop.drop_database({shop!r})",
    )
    up = document(k2(project, URL_1, "--cluster", CLUSTER, "upgrade", "head", "--json"))
    sent = [s for r in up["revisions"] for step in r["steps"] for s in step["sql"]]
    assert [s.split()[0] for s in sent] == ["CREATE", "CREATE", "ALTER"]
    assert f"ON CLUSTER {CLUSTER}" in sent[0]
    assert all("ON CLUSTER" not in s for s in sent[1:]), sent  # ClickHouse refuses it there
    expected_columns = [("id", "UInt64"), ("v", "String"), ("extra", "String")]
    for replica in (first, second):
        engines = rows(replica, "SELECT engine FROM system.databases WHERE name = {n:String}", n=shop)
        assert engines == [("Replicated",)]
        assert_eventually(replica, lambda r: columns(r, shop, "t"), expected_columns)

    down = k2(project, URL_1, "--cluster", CLUSTER, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    for replica in (first, second):
        assert_eventually(replica, lambda r: databases(r, shop), set[str]())
