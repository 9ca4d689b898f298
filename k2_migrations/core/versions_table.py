"""The version table: which revisions are applied, kept correct on ClickHouse.

Alembic's version table lives in the migrations database, through clickhouse-connect's Alembic impl:
``MergeTree ORDER BY version_num`` (one row per head: merges never collapse two heads into one, as a
ReplacingMergeTree ``ORDER BY tuple()`` would), and a change of head is an INSERT of the new row
followed by ``ALTER TABLE ... DELETE ... SETTINGS mutations_sync = 2`` of the old one — never a plain
UPDATE, which ClickHouse does not have.

That change is two statements, so a crash between them leaves both rows: the revision and its
parent. The INSERT is the commit point (it happens after the revision's operations finished), and
the journal says which way the interrupted attempt was going; :func:`reconcile` uses both to delete
the stale row before anything else runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from k2_migrations.core.sql import literal, qualified
from k2_migrations.errors import InProgress

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory
    from clickhouse_connect.driver.client import Client

    from k2_migrations.core.journal import Attempt

VERSION_TABLE = "alembic_version"


def read_heads(client: Client, database: str) -> tuple[str, ...]:
    """The applied heads as stored, without Alembic's interpretation (empty: base)."""
    exists = client.command(
        "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {n:String}",
        parameters={"d": database, "n": VERSION_TABLE},
    )
    if not exists:
        return ()
    rows = client.query(f"SELECT DISTINCT version_num FROM {qualified(database, VERSION_TABLE)}").result_rows
    return tuple(sorted(str(r[0]) for r in rows))


def reconcile(
    client: Client, database: str, script: ScriptDirectory, attempt: Attempt | None
) -> tuple[str, ...]:
    """Remove the row a crash left behind between the two halves of a version change."""
    heads = read_heads(client, database)
    stale: set[str] = set()
    for head in heads:
        for other in heads:
            if head != other and _is_ancestor(script, ancestor=other, descendant=head):
                # Both a revision and its ancestor are recorded: a version change was cut in two.
                if attempt is None:
                    raise InProgress(
                        f"the version table lists both {other} and its descendant {head}, and the journal "
                        "has no interrupted run to tell which is true; check the schema, then "
                        f"k2-migrate stamp the right one"
                    )
                if attempt.direction == "up" and attempt.revision == head:
                    stale.add(other)
                elif attempt.direction == "down" and attempt.revision == head:
                    stale.add(head)
    for revision in sorted(stale):
        client.command(
            f"ALTER TABLE {qualified(database, VERSION_TABLE)} DELETE WHERE version_num = {literal(revision)}"
            " SETTINGS mutations_sync = 2"
        )
    return tuple(h for h in heads if h not in stale)


def _is_ancestor(script: ScriptDirectory, *, ancestor: str, descendant: str) -> bool:
    return any(
        r.revision == ancestor
        for r in script.iterate_revisions(descendant, "base")
        if r.revision != descendant
    )
