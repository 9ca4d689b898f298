"""Cluster mode as far as the embedded engine goes: real k2-migrate processes, the engine's own answers.

The embedded engine takes a configuration naming a cluster (``remote_servers``), macros and a
ZooKeeper, but has no distributed DDL worker and no interserver port: it refuses ON CLUSTER (Code
392) and its replicated tables stay read-only. What runs here: the settings, the unknown-cluster
error, the offline script and ``plan`` in cluster form (every statement parsed by the engine), the
replicated state tables created with their Keeper paths and replica names (read back from
``system.replicas``), the pre-run stop on a read-only replica, ``op.get_cluster()`` and the ``'{cluster}'``
macro. The rest runs against a real cluster: tests/test_cluster_server.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from k2_migrations.decisions.hosts import host_results
from k2_migrations.errors import UsageError
from k2_migrations.introspection.topology import ClusterMode, HostsBehind
from k2_migrations.sqltext import split_statements
from k2_migrations.sqltext.cluster import takes_on_cluster
from k2_migrations.state.journal import journal_ddl
from k2_migrations.state.snapshots import snapshots_ddl
from k2_migrations.state.versions import version_ddl
from tests.support.kill_harness import ROOT, environment
from tests.support.zookeeper import ZooKeeper, chdb_config

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

CLUSTER = "k2c"
#: One shard, two replicas: this embedded engine is neither (remote_servers only names them).
REMOTE_SERVERS = f"""
    <remote_servers><{CLUSTER}><shard>
        <replica><host>127.0.0.1</host><port>9000</port></replica>
        <replica><host>127.0.0.2</host><port>9000</port></replica>
    </shard></{CLUSTER}></remote_servers>
    <macros><shard>s1</shard><replica>r1</replica></macros>
"""

MACRO_REVISION = '''"""Uses op.get_cluster() and the ON CLUSTER macro."""
from alembic import op

revision = "c1"
down_revision = None


def upgrade() -> None:
    where = op.get_cluster() or "one_server"
    op.create_database("{database}")
    op.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {database}.made_on_{{where}} ON CLUSTER '{{{{cluster}}}}'"
        " (a UInt8) ENGINE = MergeTree ORDER BY a"
    )


def downgrade() -> None:
    op.execute_sql("DROP TABLE IF EXISTS {database}.made_on_one_server ON CLUSTER '{{cluster}}'")
    op.drop_database("{database}")
'''


def _query_code() -> str:
    return (
        "import json, sys, clickhouse_connect\n"
        "client = clickhouse_connect.get_client(dsn=sys.argv[1], chdb_options={'config-file': sys.argv[2]})\n"
        "statements = json.loads(sys.argv[3])\n"
        "for statement in statements[:-1]:\n"
        "    client.command(statement, settings={'insert_keeper_max_retries': 0})\n"
        "print(json.dumps([list(r) for r in client.query(statements[-1]).result_rows], default=str))\n"
    )


class Host:
    """One embedded "host": a data path, the configuration naming the cluster, and a project."""

    def __init__(self, root: Path, config: Path) -> None:
        self.root = root
        self.config = config
        self.path = root / "db"
        self.database = f"kc_{uuid.uuid4().hex[:8]}"

    @property
    def url(self) -> str:
        return f"chdb://{self.path}?config-file={self.config}"

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        ini = str(self.root / "alembic.ini")
        return subprocess.run(
            [sys.executable, "-m", "k2_migrations", "-c", ini, "--url", self.url, *args],
            check=False,
            capture_output=True,
            text=True,
            env=environment(env),
            cwd=self.root,
            timeout=120,
        )

    def query(self, *statements: str) -> list[list[Any]]:
        """The rows of the last statement, from a process of its own (the engine's one path per process)."""
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _query_code(),
                f"chdb:///{self.path}",
                str(self.config),
                json.dumps(statements),
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=environment(),
            timeout=120,
        )
        rows: list[list[Any]] = json.loads(done.stdout)
        return rows


def _project(root: Path, revision: str | None = None, ini_extra: str = "") -> None:
    (root / "versions").mkdir()
    if revision is not None:
        (root / "versions" / "c1_cluster.py").write_text(revision)
    ini = (ROOT / "alembic.ini").read_text()
    ini = ini.replace("lock_expiry = 60", "lock_expiry = 60\n" + ini_extra)
    (root / "alembic.ini").write_text(ini)


def _config(path: Path, extra: str) -> Path:
    path.write_text(f"<clickhouse>\n{extra}\n</clickhouse>\n")
    return path


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """A host whose configuration names the cluster, without a ZooKeeper."""
    found = Host(tmp_path, _config(tmp_path / "chdb.xml", REMOTE_SERVERS))
    _project(tmp_path, MACRO_REVISION.format(database=found.database))
    return found


@pytest.fixture
def keeper_host(tmp_path: Path, zookeeper: ZooKeeper) -> Host:
    """A host whose configuration names the cluster, its macros and a running ZooKeeper."""
    config = chdb_config(zookeeper, tmp_path / "chdb.xml", prefix=f"/k2c_{uuid.uuid4().hex[:6]}")
    config.write_text(config.read_text().replace("</clickhouse>", REMOTE_SERVERS + "</clickhouse>"))
    found = Host(tmp_path, config)
    _project(tmp_path, MACRO_REVISION.format(database=found.database))
    return found


# -- settings and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["flag", "environment", "ini"])
def test_an_unknown_cluster_is_one_line_naming_the_clusters_the_server_has(
    tmp_path: Path, given: str
) -> None:
    host = Host(tmp_path, _config(tmp_path / "chdb.xml", REMOTE_SERVERS))
    _project(tmp_path, ini_extra="cluster = nope" if given == "ini" else "")
    args = ["--cluster", "nope"] if given == "flag" else []
    env = {"K2_MIGRATE_CLUSTER": "nope"} if given == "environment" else {}
    done = host.run(*args, "upgrade", "head", env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("k2-migrate: error: cluster 'nope' is not defined"), lines
    assert CLUSTER in lines[0]
    # Nothing was created: the error came before the migrations database.
    assert host.query("SELECT count() FROM system.databases WHERE name = 'k2_migrations'") == [[0]]


def test_on_cluster_refused_by_the_engine_is_one_line_and_exit_6(host: Host) -> None:
    done = host.run("--cluster", CLUSTER, "upgrade", "head")
    assert done.returncode == 6, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "k2-migrate: error:" in lines[0] and "Traceback" not in done.stderr
    assert "Replicated DDL queries are disabled" in lines[0] or "Code: 392" in lines[0], lines


def test_a_read_only_replica_stops_a_cluster_run_before_anything_is_created(keeper_host: Host) -> None:
    # The embedded engine's replicas are read-only (no interserver port): exactly what a replica
    # that lost Keeper looks like on a server.
    keeper_host.query(
        "CREATE DATABASE IF NOT EXISTS lagging",
        "CREATE TABLE lagging.trades (a UInt8) ENGINE = ReplicatedMergeTree"
        f"('/clickhouse/tables/{uuid.uuid4().hex[:8]}/trades', '{{replica}}') ORDER BY a",
        "SELECT is_readonly FROM system.replicas WHERE database = 'lagging'",
    )
    done = keeper_host.run("--cluster", CLUSTER, "upgrade", "head")
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "replica lagging.trades is read-only on this host" in lines[0], lines
    assert keeper_host.query(
        f"SELECT count() FROM system.databases WHERE name IN ('k2_migrations', {keeper_host.database!r})"
    ) == [[0]]


# -- the replicated state ------------------------------------------------------------------------


def test_the_migrations_tables_are_replicated_with_one_keeper_path_per_table_for_the_cluster(
    keeper_host: Host,
) -> None:
    """Created here without ON CLUSTER (the engine refuses it): the engine expands the macros."""
    mode = ClusterMode(CLUSTER)
    database = keeper_host.database
    statements = [
        *version_ddl(database, mode)[:2],
        journal_ddl(database, mode),
        snapshots_ddl(database, mode),
    ]
    rows = keeper_host.query(
        *statements,
        "SELECT table, engine, zookeeper_path, replica_name FROM system.replicas"
        f" WHERE database = '{database}' ORDER BY table",
    )
    assert rows == [
        [table, "ReplicatedMergeTree", f"/clickhouse/k2_migrations/{CLUSTER}/{database}/{table}", "s1-r1"]
        for table in ("k2_migrations_journal", "k2_migrations_snapshots", "k2_migrations_versions")
    ]


# -- what a run would send -----------------------------------------------------------------------


def test_the_offline_script_in_cluster_mode_is_parsed_by_the_engine_with_on_cluster_on_every_ddl(
    ch: Client, tmp_path: Path
) -> None:
    (tmp_path / "alembic.ini").write_text(
        (ROOT / "alembic.ini").read_text().replace("%(here)s/versions", str(ROOT / "versions"))
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "k2_migrations",
            "-c",
            str(tmp_path / "alembic.ini"),
            "--cluster",
            CLUSTER,
            "upgrade",
            "head",
            "--sql",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=environment({"K2_KAFKA_BROKERS": "127.0.0.1:9"}),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    statements = [s for s in split_statements(done.stdout) if s.strip()]
    ddl = [s for s in statements if takes_on_cluster(s)]
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(ddl) > 20 and inserts
    for statement in statements:
        formatted = str(
            ch.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0]
        )
        clauses = formatted.count(f"ON CLUSTER {CLUSTER}")
        assert clauses == (1 if statement in ddl else 0), statement
    assert (
        "ReplicatedMergeTree('/clickhouse/k2_migrations/k2c/{database}/{table}', '{shard}-{replica}')"
        in done.stdout
    )


def test_plan_in_cluster_mode_shows_the_statements_as_they_would_go_to_the_cluster(host: Host) -> None:
    done = host.run("--cluster", CLUSTER, "plan", "head")
    assert done.returncode == 0, done.stderr
    assert f"CREATE DATABASE IF NOT EXISTS {host.database} ON CLUSTER {CLUSTER}" in done.stdout
    assert f"made_on_{CLUSTER} ON CLUSTER {CLUSTER} (a UInt8)" in done.stdout
    sql_lines = [line for line in done.stdout.splitlines() if line.startswith("       ")]
    assert sql_lines and not [line for line in sql_lines if "{cluster}" in line]


def test_a_revision_asks_for_the_cluster_and_the_macro_clause_goes_on_one_server(host: Host) -> None:
    """``op.get_cluster()`` is None on one server and the ``ON CLUSTER '{cluster}'`` clause is removed."""
    done = host.run("upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert host.query(
        f"SELECT name, engine FROM system.tables WHERE database = '{host.database}' ORDER BY name"
    ) == [["made_on_one_server", "MergeTree"]]
    log = json.loads(host.run("log", "--json").stdout)["entries"]
    sent = [e["sql"] for e in log if "made_on_one_server" in e["sql"]]
    assert sent and all("ON CLUSTER" not in s and "{cluster}" not in s for s in sent), sent
    scripted = host.run("--cluster", CLUSTER, "upgrade", "head", "--sql")
    assert scripted.returncode == 0, scripted.stderr
    assert f"{host.database}.made_on_{CLUSTER} ON CLUSTER {CLUSTER}" in scripted.stdout
    assert host.run("downgrade", "base").returncode == 0
    assert host.query(f"SELECT count() FROM system.databases WHERE name = '{host.database}'") == [[0]]


# -- deciding a statement's form -----------------------------------------------------------------


def test_tables_of_a_replicated_database_take_no_on_cluster_but_the_database_itself_does() -> None:
    mode = ClusterMode(CLUSTER, replicated={"rep"})
    assert mode.form("CREATE TABLE rep.t (a UInt8) ENGINE = ReplicatedMergeTree ORDER BY a") == (
        "CREATE TABLE rep.t (a UInt8) ENGINE = ReplicatedMergeTree ORDER BY a"
    )
    assert mode.form("DROP DATABASE IF EXISTS rep") == f"DROP DATABASE IF EXISTS rep ON CLUSTER {CLUSTER}"
    assert (
        mode.form("ALTER TABLE plain.t ADD COLUMN b UInt8")
        == f"ALTER TABLE plain.t ON CLUSTER {CLUSTER} ADD COLUMN b UInt8"
    )
    assert mode.form("INSERT INTO plain.t SELECT 1") == "INSERT INTO plain.t SELECT 1"
    with pytest.raises(UsageError, match="spans a Replicated database"):
        mode.form("RENAME TABLE plain.t TO rep.t")
    assert mode.state_engine("rep", "(a)") == "ReplicatedMergeTree ORDER BY (a)"
    # A Replicated database created by the run (or the plan) counts from the statement on.
    created = "CREATE DATABASE IF NOT EXISTS fresh ENGINE = Replicated('/db/fresh', '{shard}', '{replica}')"
    assert mode.form(created) == created.replace(" ENGINE", f" ON CLUSTER {CLUSTER} ENGINE")
    assert (
        mode.form("CREATE TABLE fresh.t (a UInt8) ENGINE = ReplicatedMergeTree ORDER BY a").count(
            "ON CLUSTER"
        )
        == 0
    )


def test_on_cloud_nothing_takes_on_cluster_and_the_state_is_plain_merge_tree() -> None:
    mode = ClusterMode(CLUSTER, cloud=True)
    assert mode.form("CREATE DATABASE IF NOT EXISTS k2") == "CREATE DATABASE IF NOT EXISTS k2"
    assert (
        mode.form("ALTER TABLE k2.t ON CLUSTER '{cluster}' ADD COLUMN b UInt8")
        == "ALTER TABLE k2.t ADD COLUMN b UInt8"
    )
    assert mode.state_engine("k2", "(a)") == "MergeTree ORDER BY (a)"


def test_each_host_outcome_of_an_on_cluster_statement_is_named() -> None:
    """The rows ClickHouse returns for ON CLUSTER with distributed_ddl_output_mode = 'never_throw'."""
    columns = ["host", "port", "status", "error", "num_hosts_remaining", "num_hosts_active"]
    rows = [
        ["ch1", 9000, 0, "", 2, 1],
        ["ch2", 9000, 57, "Code: 57. Table k2.t already exists", 1, 1],
        ["ch3", 9000, None, None, 0, 0],
    ]
    hosts = host_results(columns, rows)
    assert [(h.host, h.done) for h in hosts] == [("ch1:9000", True), ("ch2:9000", False), ("ch3:9000", False)]
    error = HostsBehind(CLUSTER, "CREATE TABLE k2.t ON CLUSTER k2c (a UInt8)", hosts, 5)
    assert "failed on ch2:9000 (Code: 57. Table k2.t already exists)" in error.message
    assert "not finished within 5s on ch3:9000" in error.message and "done on ch1:9000" in error.message
    assert error.exit_code == 6 and "\n" not in error.message
    assert error.journal() == {
        "ch1:9000": "done",
        "ch2:9000": "failed: Code: 57. Table k2.t already exists",
        "ch3:9000": "behind (not finished in time; the task stays queued there)",
    }
    replicated = host_results(["shard", "replica", "status", "error"], [["s1", "r1", 0, ""]])
    assert replicated[0].host == "s1|r1" and replicated[0].done


def test_cluster_mode_refuses_migrations_tables_a_one_server_run_created(host: Host) -> None:
    """They live on one host: read in cluster mode, other hosts would see another truth."""
    assert host.run("upgrade", "head").returncode == 0
    done = host.run("--cluster", CLUSTER, "upgrade", "head")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "k2_migrations.k2_migrations_journal is a Log table on this host only" in lines[0], lines
    assert "--migrations-database" in lines[0]
