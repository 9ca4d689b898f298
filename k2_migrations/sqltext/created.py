"""The table a CREATE TABLE statement creates, and the same statement creating another one."""

from __future__ import annotations

from k2_migrations.errors import UsageError
from k2_migrations.sqltext.quoting import qualified
from k2_migrations.sqltext.tokens import Kind, tokenize


def renamed_create(ddl: str, database: str, name: str, to: str) -> str:
    """``ddl`` (``CREATE TABLE database.name ...``) creating ``database.to`` instead, every other byte unchanged."""
    tokens = tokenize(ddl)
    words = [t.upper() for t in tokens]
    if "TABLE" not in words[:4] or words[0] != "CREATE":
        raise UsageError(
            f"rebuild_table of {database}.{name} needs a CREATE TABLE statement, got: {ddl.strip()[:80]}"
        )
    at = words.index("TABLE") + 1
    if words[at : at + 3] == ["IF", "NOT", "EXISTS"]:
        at += 3
    end = at + 2 if at + 2 < len(tokens) and tokens[at + 1].value == "." else at
    said = (tokens[at].value, tokens[end].value) if end != at else (None, tokens[at].value)
    if said != (database, name) or not all(
        t.kind in (Kind.WORD, Kind.QUOTED) for t in (tokens[at], tokens[end])
    ):
        raise UsageError(
            f"rebuild_table of {database}.{name} needs DDL creating {database}.{name} (fully qualified), "
            f"got one creating {'.'.join(s for s in said if s)}"
        )
    return ddl[: tokens[at].start] + qualified(database, to) + ddl[tokens[end].end :]
