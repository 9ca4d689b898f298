"""Where a run's DDL must go: one server, every host of a cluster, a Replicated database, or ClickHouse Cloud.

A statement runs once on the server k2-migrate is connected to. On a cluster of ordinary (Atomic)
databases, a schema change must reach every host: ``ON CLUSTER name``, which ClickHouse's distributed
DDL queue runs on each host and reports host by host. Inside a ``Replicated`` database the database
replicates its own DDL, and ClickHouse refuses (or ignores) ``ON CLUSTER`` on its tables; creating or
dropping such a database still goes to every host. ClickHouse Cloud replicates everything by itself
(Shared engines) and has no ``ON CLUSTER`` to give. :class:`ClusterMode` is read from the engine —
``system.clusters``, ``system.databases``, the ``cloud_mode`` setting — never from a declaration, and
decides each statement's form; :mod:`k2_migrations.sqltext.cluster` writes it.

Before a run, :func:`check_cluster_health` stops it when a replica on this host is read-only or has
replicas inactive (``system.replicas``), or when a host still has ON CLUSTER tasks unfinished
(``system.distributed_ddl_queue``): a migration started then would be behind from its first step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from k2_migrations.config import DEFAULT_DDL_TIMEOUT_S
from k2_migrations.decisions.hosts import HostResult, behind, host_results, queued_hosts
from k2_migrations.errors import ConnectionFailed, SqlFailed, UsageError
from k2_migrations.sqltext.cluster import cluster_form, statement_subjects, takes_on_cluster
from k2_migrations.sqltext.objects import engine_of
from k2_migrations.sqltext.quoting import literal, qualified

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

#: What a revision writes in raw SQL where the cluster's name goes (``ON CLUSTER '{cluster}'``).
CLUSTER_MACRO = "{cluster}"
#: Where the migrations tables of a cluster keep their replication log in Keeper: one path per table
#: for the whole cluster (no ``{shard}``), so every host of every shard holds the same version state.
STATE_KEEPER_PATH = "/clickhouse/k2_migrations/{cluster}/{{database}}/{{table}}"
#: Each host's replica name within that path: unique across shards as well as within one.
STATE_REPLICA = "{shard}-{replica}"


@dataclass
class ClusterMode:
    """A cluster's name and what the engine says about it, for deciding each statement's form."""

    name: str
    #: ClickHouse Cloud: DDL replicates by itself; nothing takes ON CLUSTER.
    cloud: bool = False
    #: host:port of each replica of the cluster, as ``system.clusters`` lists them.
    hosts: tuple[str, ...] = ()
    #: Databases whose engine is Replicated (their tables' DDL replicates without ON CLUSTER).
    replicated: set[str] = field(default_factory=set)
    #: Read from a live engine (False: an offline ``--sql`` script, which cannot see the databases).
    live: bool = True
    #: ``distributed_ddl_task_timeout`` of each ON CLUSTER statement.
    ddl_timeout_s: float = DEFAULT_DDL_TIMEOUT_S

    def form(self, sql: str) -> str:
        """``sql`` as it runs in this mode: with ON CLUSTER where it applies, the macro resolved.

        A Replicated database this statement creates counts from here on, so that ``plan`` shows its
        tables as the run sends them (a run also reads the databases again after running it).
        """
        database_level, databases = statement_subjects(sql)
        if database_level and engine_of(sql) == "Replicated":
            self.replicated |= set(databases)
        return cluster_form(sql, self.cluster_for(sql))

    def cluster_for(self, sql: str) -> str | None:
        """The cluster ``sql`` goes to (None: this server only, or the database replicates it)."""
        if self.cloud or not takes_on_cluster(sql):
            return None
        database_level, databases = statement_subjects(sql)
        if database_level:
            return self.name
        inside = {db for db in databases if db in self.replicated}
        if inside and inside != set(databases):
            raise UsageError(
                f"a statement spans a Replicated database ({', '.join(sorted(inside))}) and an ordinary one "
                f"on cluster {self.name}: {_squash(sql)}; move objects between such databases in two steps"
            )
        return None if inside else self.name

    def run(self, client: Client, sql: str) -> list[HostResult]:
        """Run ``sql`` in this mode; for ON CLUSTER, every host's outcome (raises unless all finished).

        The statement waits at most ``ddl_timeout_s`` for the hosts and reports each one
        (``distributed_ddl_output_mode = 'never_throw'``: a failed or late host is a row, not an
        exception that names only the first): a host that failed or had not finished raises
        :class:`HostsBehind`, which names them and carries every host's outcome for the journal.
        """
        cluster = self.cluster_for(sql)
        sent = cluster_form(sql, cluster)
        if cluster is None:
            client.command(sent)
            self.note_statement(client, sql)
            return []
        result = client.query(
            sent,
            settings={
                "distributed_ddl_task_timeout": max(1, round(self.ddl_timeout_s)),
                "distributed_ddl_output_mode": "never_throw",
            },
        )
        hosts = host_results(result.column_names, result.result_rows)
        self.note_statement(client, sql)
        if behind(hosts):
            raise HostsBehind(self.name, sent, hosts, self.ddl_timeout_s)
        return hosts

    def state_ready(
        self, client: Client, database: str, tables: Sequence[str], views: Sequence[str] = ()
    ) -> bool:
        """Whether the migrations ``tables`` (replicated) and ``views`` exist on every host already.

        Then their ON CLUSTER CREATEs are not sent again: each would wait on every host on every
        run, and fail every run while one host is down. A table created by an earlier run without
        ``--cluster`` lives on one host only; cluster mode refuses it rather than read a part of the
        truth. Whatever cannot be asked (a host unreachable) counts as not ready: the CREATEs then
        go out and report each host.
        """
        from clickhouse_connect.driver.exceptions import DatabaseError

        names = [*tables, *views]
        rows = client.query(
            "SELECT name, engine FROM system.tables WHERE database = {d:String} AND name IN {n:Array(String)}",
            parameters={"d": database, "n": names},
        ).result_rows
        engines = {str(name): str(engine) for name, engine in rows}
        local = sorted(
            n for n in tables if n in engines and not engines[n].startswith(("Replicated", "Shared"))
        )
        if local and not self.cloud:
            raise UsageError(
                f"{qualified(database, local[0])} is a {engines[local[0]]} table on this host only (created "
                f"without --cluster); give cluster mode a new migrations database (--migrations-database), "
                "see docs/clusters.md"
            )
        if len(engines) < len(names) or self.cloud:
            return len(engines) == len(names)
        try:
            present = client.query(
                f"SELECT count() FROM clusterAllReplicas({literal(self.name)}, system.tables)"
                " WHERE database = {d:String} AND name IN {n:Array(String)}",
                parameters={"d": database, "n": names},
            ).result_rows[0][0]
        except DatabaseError:
            return False
        return int(present) >= len(names) * max(1, len(self.hosts))

    def note_statement(self, client: Client, sql: str) -> None:
        """Refresh what the mode knows after a statement that created or dropped a database."""
        if self.live and statement_subjects(sql)[0]:
            self.replicated = _replicated_databases(client)

    def state_engine(self, database: str, order_by: str) -> str:
        """The engine clause of a migrations table in ``database``: replicated to every host."""
        if self.cloud:
            return f"MergeTree ORDER BY {order_by}"
        if database in self.replicated:
            return f"ReplicatedMergeTree ORDER BY {order_by}"
        path = STATE_KEEPER_PATH.format(cluster=self.name)
        return f"ReplicatedMergeTree({literal(path)}, {literal(STATE_REPLICA)}) ORDER BY {order_by}"


class HostsBehind(SqlFailed):
    """An ON CLUSTER statement that did not finish on every host."""

    def __init__(self, cluster: str, sql: str, hosts: list[HostResult], timeout_s: float) -> None:
        self.hosts = hosts
        failed = [h for h in hosts if h.failed]
        late = [h for h in hosts if h.late]
        done = [h.host for h in hosts if h.done]
        parts = []
        if failed:
            parts.append("failed on " + "; ".join(f"{h.host} ({h.reason})" for h in failed))
        if late:
            parts.append(f"not finished within {timeout_s:g}s on {', '.join(h.host for h in late)}")
        super().__init__(
            f"ON CLUSTER {cluster}: {_squash(sql, 80)} {' and '.join(parts)}"
            f" (done on {', '.join(done) or 'no host'}); fix or wait for those hosts, then run the same "
            "command again: the step resumes"
        )

    def journal(self) -> dict[str, str]:
        return {h.host: h.describe() for h in self.hosts}


def without_cluster(sql: str) -> str:
    """``sql`` on one server: a revision's ``ON CLUSTER '{cluster}'`` clause removed, nothing else changed."""
    return cluster_form(sql, None) if CLUSTER_MACRO in sql else sql


def read_cluster_mode(client: Client, name: str) -> ClusterMode:
    """Cluster mode ``name`` as the engine describes it; an unknown cluster is a one-line error."""
    cloud = is_cloud(client)
    rows = client.query(
        "SELECT host_name, port FROM system.clusters WHERE cluster = {c:String} ORDER BY shard_num, replica_num",
        parameters={"c": name},
    ).result_rows
    if not rows and not cloud:
        known = [str(r[0]) for r in client.query("SELECT DISTINCT cluster FROM system.clusters").result_rows]
        raise UsageError(
            f"cluster {name!r} is not defined on this server (system.clusters lists "
            f"{', '.join(sorted(known)) or 'none'}); give --cluster one of them, or define it in remote_servers"
        )
    return ClusterMode(
        name,
        cloud=cloud,
        hosts=tuple(f"{host}:{port}" for host, port in rows),
        replicated=_replicated_databases(client),
    )


def is_cloud(client: Client) -> bool:
    """ClickHouse Cloud, by its ``cloud_mode`` setting: Shared engines replicate everything by
    themselves, there is no ON CLUSTER to give, and the Log engine (the journal's) is not offered."""
    rows = client.query("SELECT value FROM system.settings WHERE name = 'cloud_mode'").result_rows
    return bool(rows) and str(rows[0][0]) not in {"0", "false", ""}


def cloud_mode() -> ClusterMode:
    """ClickHouse Cloud without ``--cluster``: no ON CLUSTER anywhere, the migrations tables MergeTree."""
    return ClusterMode("", cloud=True)


def offline_cluster_mode(name: str) -> ClusterMode:
    """Cluster mode for a ``--sql`` script: no engine to ask, so every database counts as ordinary."""
    return ClusterMode(name, live=False)


def check_replicas(client: Client, mode: ClusterMode) -> None:
    """Stop a run that would start behind: a replica on this host read-only or missing peers (any
    replicated table: the run may touch it, or be unable to replicate its own state)."""
    if mode.cloud:
        return
    rows = client.query(
        "SELECT database, table, is_readonly, is_session_expired, total_replicas, active_replicas,"
        " arrayFilter(r -> NOT replica_is_active[r], mapKeys(replica_is_active))"
        " FROM system.replicas WHERE is_readonly OR is_session_expired OR active_replicas < total_replicas"
        " ORDER BY database, table"
    ).result_rows
    if rows:
        database, table, readonly, expired, total, active, inactive = rows[0]
        why = (
            "is read-only on this host" if readonly or expired else f"has {active} of {total} replicas active"
        )
        who = f" (inactive: {', '.join(sorted(inactive))})" if inactive else ""
        more = f" and {len(rows) - 1} more" if len(rows) > 1 else ""
        raise ConnectionFailed(
            f"replica {qualified(str(database), str(table))} {why}{who}{more}; bring the replicas back "
            "(system.replicas shows them) before migrating the cluster"
        )


def check_ddl_queue(client: Client, mode: ClusterMode) -> None:
    """Stop a run while a host still has ON CLUSTER tasks unfinished: it is behind the others.

    Checked under the migration lock: before it, a concurrent run's own tasks would be in flight.
    """
    if mode.cloud:
        return
    behind = _hosts_with_queued_ddl(client, mode.name)
    if behind:
        raise ConnectionFailed(
            f"host(s) {', '.join(behind)} of cluster {mode.name} still have ON CLUSTER tasks unfinished "
            "(system.distributed_ddl_queue); wait for them or repair those hosts, then run again"
        )


def _hosts_with_queued_ddl(client: Client, cluster: str) -> list[str]:
    """Hosts with distributed DDL not finished; none where the server has no distributed DDL at all."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    try:
        rows = client.query(
            "SELECT host, port, toString(status) FROM system.distributed_ddl_queue WHERE cluster = {c:String}",
            parameters={"c": cluster},
        ).result_rows
    except DatabaseError as exc:
        # Code 139: this server has no <distributed_ddl> section, so nothing can be queued on it
        # (the embedded engine); its ON CLUSTER statements fail on their own, with the engine's reason.
        if "NO_ELEMENTS_IN_CONFIG" in str(exc) or "Code: 139" in str(exc):
            return []
        raise
    return queued_hosts((str(host), int(port), str(status)) for host, port, status in rows)


def _replicated_databases(client: Client) -> set[str]:
    rows = client.query("SELECT name FROM system.databases WHERE engine = 'Replicated'").result_rows
    return {str(r[0]) for r in rows}


def _squash(text: str, limit: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
