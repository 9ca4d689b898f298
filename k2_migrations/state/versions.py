"""The version state: which revisions are applied, written so that it can never be half-changed.

ClickHouse has no UPDATE and no transactions; a mutation (``ALTER ... DELETE``) is asynchronous
on a server, and on the embedded engine the parts it emptied can come back after a reopen until a
background mutation runs again. So nothing here is ever deleted or updated. The state is an
append-only record of version changes, :data:`VERSION_LOG`: one row per revision a change touches
(``applied`` 1 or 0), all rows of one change carrying the same ``seq`` — one above every ``seq``
before it — and written by **one INSERT**, which ClickHouse applies atomically (one block, one part).
A revision is applied when its newest row says so; a change of heads (an upgrade step, a downgrade
step, a merge, a stamp) is therefore either entirely there or not there at all, and a crash cannot
leave a revision and its parent both recorded.

Alembic keeps reading its own ``alembic_version`` by name: in the migrations database that name is a
view over the record (``latest row per revision, where applied``), so ``alembic current``, k2-migrate
and every read of the heads see one truth. Alembic's own INSERT/UPDATE/DELETE on that table are
turned into nothing by :class:`K2ClickHouseImpl`; after each step Alembic calls
:func:`record_step` (registered as ``on_version_apply`` by env.py), which writes the difference
between the heads the engine reports and the heads Alembic arrived at, as that one INSERT.

A database written by the previous release has a plain ``alembic_version`` MergeTree table whose
rows were changed by mutations. :func:`ensure_version_state` adopts it on the first run that takes
the lock: its heads (with the journal's interrupted attempt deciding between a revision and its
ancestor when a crash left both) become the record's first change, then the old table is renamed
to ``alembic_version_legacy`` — kept, never dropped — and the view takes its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from clickhouse_connect.cc_sqlalchemy.alembic.impl import ClickHouseImpl
from sqlalchemy import Delete, Insert, Update, text
from sqlalchemy.schema import CreateTable

from k2_migrations import failpoints
from k2_migrations.decisions.heads import VersionRow, applied_heads, heads_change
from k2_migrations.errors import InProgress
from k2_migrations.sqltext.quoting import ident, literal, qualified
from k2_migrations.state.digests import revision_digest
from k2_migrations.state.rows import run_state_ddl, sync_replica, table_engine

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext, MigrationInfo
    from alembic.script import ScriptDirectory
    from clickhouse_connect.driver.client import Client

    from k2_migrations.decisions.attempts import Attempt
    from k2_migrations.introspection.topology import ClusterMode
    from k2_migrations.state.journal import Identity

#: Alembic's name, kept so that Alembic reads the heads where it always does: a view here.
VERSION_TABLE = "alembic_version"
#: The append-only record of version changes behind it.
VERSION_LOG = "k2_migrations_versions"
#: Where a previous release's mutated version table is kept after adoption.
LEGACY_TABLE = "alembic_version_legacy"


def version_ddl(database: str, cluster: ClusterMode | None = None) -> list[str]:
    """The statements that create the version state, each idempotent (also the head of a --sql script).

    In cluster mode the record is replicated to every host (each statement is then sent through
    :meth:`ClusterMode.run` or, in a script, :meth:`ClusterMode.form`: ON CLUSTER where it applies),
    so any host reads the same heads.
    """
    log = qualified(database, VERSION_LOG)
    engine = (
        cluster.state_engine(database, "(revision, seq)")
        if cluster
        else "MergeTree\nORDER BY (revision, seq)"
    )
    return [
        f"CREATE DATABASE IF NOT EXISTS {ident(database)}",
        f"""CREATE TABLE IF NOT EXISTS {log}
(
    seq UInt64,
    revision String,
    applied UInt8,
    attempt_id String,
    os_user String,
    db_user String,
    host String,
    pid UInt32,
    command String,
    at DateTime64(6, 'UTC'),
    digest String DEFAULT ''
)
ENGINE = {engine}""",
        f"CREATE VIEW IF NOT EXISTS {qualified(database, VERSION_TABLE)} AS SELECT revision AS version_num"
        f" FROM {log} GROUP BY revision HAVING argMax(applied, seq) = 1",
        # A record created before digests were recorded gains the column (metadata only); its rows read ''.
        f"ALTER TABLE {log} ADD COLUMN IF NOT EXISTS digest String DEFAULT ''",
    ]


def change_sql(
    database: str,
    changes: dict[str, bool],
    identity: Identity | None,
    attempt_id: str = "",
    digests: dict[str, str] | None = None,
) -> str:
    """One INSERT that records a change of heads: ``{revision: applied}`` for every revision it touches,
    each row with the revision's source digest from ``digests`` (``''``: nothing new about its files).

    ``seq`` is computed by the engine as one above the newest, in the same statement; the migration
    lock makes the writer the only one, and every row of the change gets the same ``seq``.
    """
    log = qualified(database, VERSION_LOG)
    known = digests or {}
    pairs = ", ".join(
        f"({literal(rev)}, {int(applied)}, {literal(known.get(rev, ''))})"
        for rev, applied in sorted(changes.items())
    )
    who = (
        [literal(identity.os_user), literal(identity.host), str(int(identity.pid)), literal(identity.command)]
        if identity is not None
        else ["''", "hostName()", "0", literal("offline script")]
    )
    return (
        f"INSERT INTO {log} (seq, revision, applied, attempt_id, os_user, db_user, host, pid, command, at, digest)"
        f" SELECT (SELECT max(seq) FROM {log}) + 1, change.1, change.2, {literal(attempt_id)},"
        f" {who[0]}, currentUser(), {who[1]}, {who[2]}, {who[3]}, now64(6), change.3"
        f" FROM (SELECT arrayJoin([{pairs}]) AS change)"
    )


# -- reading ------------------------------------------------------------------------------------


def read_heads(client: Client, database: str) -> tuple[str, ...]:
    """The applied heads (empty: base): the record's rows, decided by their ``seq``, never their time.

    Before the first run of this release adopted a previous release's table, its rows are what is
    stored, read as they are.
    """
    rows = client.query(
        "SELECT name, engine FROM system.tables WHERE database = {d:String} AND name IN {n:Array(String)}",
        parameters={"d": database, "n": [VERSION_TABLE, VERSION_LOG]},
    ).result_rows
    engines = {str(name): str(engine) for name, engine in rows}
    if VERSION_TABLE not in engines:
        return ()
    if engines[VERSION_TABLE] != "View":
        legacy = client.query(f"SELECT DISTINCT version_num FROM {qualified(database, VERSION_TABLE)}")
        return tuple(sorted(str(r[0]) for r in legacy.result_rows))
    sync_replica(client, database, VERSION_LOG, engines.get(VERSION_LOG, ""))
    record = client.query(f"SELECT seq, revision, applied, at FROM {qualified(database, VERSION_LOG)}")
    return applied_heads(version_rows(record.result_rows))


def read_digests(client: Client, database: str) -> dict[str, str]:
    """Each revision's newest non-empty recorded source digest (none: unknown); empty before the
    record exists or has its ``digest`` column (the next run that takes the lock adds it)."""
    if not _has_digest_column(client, database):
        return {}
    rows = client.query(
        f"SELECT revision, argMaxIf(digest, seq, digest != '') AS d FROM {qualified(database, VERSION_LOG)}"
        " GROUP BY revision HAVING d != ''"
    ).result_rows
    return {str(revision): str(digest) for revision, digest in rows}


def version_rows(rows: Iterable[Sequence[Any]]) -> list[VersionRow]:
    """The record's ``(seq, revision, applied, at)`` rows, for :func:`applied_heads` to decide on."""
    return [VersionRow(int(seq), str(revision), bool(applied), at) for seq, revision, applied, at in rows]


# -- creating and adopting -------------------------------------------------------------------------


def ensure_version_state(
    client: Client,
    database: str,
    script: ScriptDirectory,
    attempt: Attempt | None,
    identity: Identity,
    cluster: ClusterMode | None = None,
) -> tuple[str, ...]:
    """Create the record and its view, adopting a previous release's table; return the heads.

    Each step can be cut by a crash and run again: the record is created if missing, the old rows
    are adopted only while the record is empty (one INSERT), the old table is renamed only while it
    still holds the name, and the view is created only once the name is free.
    """
    statements = version_ddl(database, cluster)
    ready = cluster is not None and cluster.state_ready(client, database, [VERSION_LOG], [VERSION_TABLE])
    if not ready:
        run_state_ddl(client, statements[1], cluster)
    if not _has_digest_column(client, database):
        run_state_ddl(client, statements[3], cluster)
    if table_engine(client, database, VERSION_TABLE) not in {None, "View"}:
        ready = False  # the view takes the name once the old table gives it up
        legacy = qualified(database, VERSION_TABLE)
        recorded = client.query(f"SELECT count() FROM {qualified(database, VERSION_LOG)}").result_rows
        if not recorded[0][0]:
            rows = client.query(f"SELECT DISTINCT version_num FROM {legacy}").result_rows
            heads = _resolve_legacy(script, tuple(sorted(str(r[0]) for r in rows)), attempt)
            if heads:
                adopted = replace(identity, command="adopted from alembic_version (previous release)")
                client.command(change_sql(database, dict.fromkeys(heads, True), adopted))
        run_state_ddl(client, f"RENAME TABLE {legacy} TO {_free_legacy_name(client, database)}", cluster)
    if not ready:
        run_state_ddl(client, statements[2], cluster)
    return read_heads(client, database)


def _has_digest_column(client: Client, database: str) -> bool:
    rows = client.query(
        "SELECT count() FROM system.columns WHERE database = {d:String} AND table = {t:String}"
        " AND name = 'digest'",
        parameters={"d": database, "t": VERSION_LOG},
    ).result_rows
    return bool(rows[0][0])


def _free_legacy_name(client: Client, database: str) -> str:
    name, n = LEGACY_TABLE, 1
    while table_engine(client, database, name) is not None:
        n += 1
        name = f"{LEGACY_TABLE}_{n}"
    return qualified(database, name)


def _resolve_legacy(
    script: ScriptDirectory, heads: tuple[str, ...], attempt: Attempt | None
) -> tuple[str, ...]:
    """The previous release changed heads with INSERT then DELETE: a crash between them left a
    revision and its ancestor both listed. The journal's interrupted attempt says which is true."""
    stale: set[str] = set()
    for head in heads:
        for other in heads:
            if head == other or not _is_ancestor(script, ancestor=other, descendant=head):
                continue
            if attempt is None or attempt.revision != head:
                raise InProgress(
                    f"the previous release's version table lists both {other} and its descendant {head}, "
                    "and the journal has no interrupted run to tell which is true; check the schema, then "
                    "k2-migrate stamp the right one"
                )
            stale.add(other if attempt.direction == "up" else head)
    return tuple(h for h in heads if h not in stale)


def _is_ancestor(script: ScriptDirectory, *, ancestor: str, descendant: str) -> bool:
    try:
        lineage = script.iterate_revisions(descendant, "base")
        return any(r.revision == ancestor for r in lineage if r.revision != descendant)
    except Exception:  # a revision this project does not know: no lineage to compare
        return False


# -- writing ---------------------------------------------------------------------------------------


def replace_heads(
    client: Client, database: str, heads: Iterable[str], identity: Identity, digests: dict[str, str]
) -> None:
    """``stamp --purge``: make ``heads`` the only applied revisions, in one INSERT.

    Alembic's purge deletes every row of its version table, then stamps. Here every revision the
    record has as applied — known to the project or not — gets a row with ``applied`` 0 and each
    of ``heads`` one with 1, all in the same change: nothing is deleted, and a crash leaves either
    the old heads or the new ones. Heads that stay are not written again. ``digests`` are the new
    heads' source digests (those the project has).
    """
    changes = heads_change(read_heads(client, database), heads)
    if changes:
        client.command(change_sql(database, changes, identity, digests=digests))


def accept_edits(
    client: Client, database: str, digests: dict[str, str], heads: Iterable[str], identity: Identity
) -> None:
    """``accept``: record ``digests`` (``{revision: its digest now}``) for applied revisions whose files
    were edited, as one change that leaves the heads as they are (a head's row says applied, an
    ancestor's says not: the record holds heads) — nothing deleted."""
    if digests:
        current = set(heads)
        changes = {revision: revision in current for revision in digests}
        client.command(change_sql(database, changes, identity, digests=digests))


# -- writing, from inside Alembic -------------------------------------------------------------------


class K2ClickHouseImpl(ClickHouseImpl):
    """clickhouse-connect's Alembic impl, with the version table left to :func:`record_step`.

    Registered for the ``clickhousedb`` dialect in place of the impl it extends (Alembic keeps the
    last impl registered for a dialect). Alembic's writes to ``alembic_version`` are INSERT, UPDATE
    and DELETE statements issued one by one — a merge is two of them — so they are not run: the
    step's whole change is written at once after the step. The CREATE TABLE Alembic issues for it
    becomes the creation of the record and its view (in an offline script too, which then starts by
    creating the migrations database).
    """

    __dialect__ = "clickhousedb"

    def _exec(
        self,
        construct: Any,
        execution_options: Any = None,
        multiparams: Any = None,
        params: Any = None,
    ) -> Any:
        if isinstance(construct, CreateTable) and construct.element.name == VERSION_TABLE:
            cluster: ClusterMode | None = self.context_opts.get("k2_cluster")
            for statement in version_ddl(self._version_database, cluster):
                super()._exec(text(cluster.form(statement) if cluster else statement))
            return None
        if isinstance(construct, Insert | Update | Delete) and self._is_version_table_construct(construct):
            return None
        return super()._exec(
            construct, execution_options=execution_options, multiparams=multiparams, params=params
        )

    @property
    def _version_database(self) -> str:
        return str(self.context_opts.get("version_table_schema") or "default")

    def _heads_now(self) -> tuple[str, ...]:
        connection = self.connection
        assert connection is not None
        record = connection.execute(
            text(f"SELECT seq, revision, applied, at FROM {qualified(self._version_database, VERSION_LOG)}")
        )
        return applied_heads(version_rows(record))

    def _record(self, changes: dict[str, bool], digests: dict[str, str]) -> None:
        if not changes:
            return
        runtime = self.context_opts.get("k2_runtime")
        journal = getattr(runtime, "journal", None)
        identity = journal.identity if journal is not None else None
        attempt_id = str(getattr(runtime, "attempt_id", "") or "")
        failpoints.reached("version-before")
        super()._exec(text(change_sql(self._version_database, changes, identity, attempt_id, digests)))
        failpoints.reached("version-written")


def record_step(ctx: MigrationContext, step: MigrationInfo, heads: set[str], **_kw: Any) -> None:
    """Alembic's ``on_version_apply`` hook: write the step's change of heads as one INSERT.

    Online, the heads before are read from the engine (what it reports, not what this process
    believes); offline, the script's heads are followed in memory from its starting revision.
    An upgrade or a stamp records the source digest of each revision it makes applied; a downgrade's
    rows record none (the revision that becomes a head again did not run: its digest stays the one
    recorded when it did).
    """
    impl = ctx.impl
    assert isinstance(impl, K2ClickHouseImpl)
    if ctx.as_sql:
        before = ctx.opts.setdefault("k2_offline_heads", set(ctx.get_current_heads()))
        changes = heads_change(before, heads)
        ctx.opts["k2_offline_heads"] = set(heads)
    else:
        changes = heads_change(impl._heads_now(), heads)
    digests: dict[str, str] = {}
    if step.is_upgrade or step.is_stamp:
        script = ctx.script
        assert script is not None
        for revision, applied in changes.items():
            found = script.get_revision(revision) if applied else None
            if found is not None and found.path:
                digests[revision] = revision_digest(found.path)
    impl._record(changes, digests)
