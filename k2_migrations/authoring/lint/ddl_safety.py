"""DDL that is unsafe however it is run: ``POPULATE`` and ``DROP ... SYNC``.

Both are looked for in every string of the file (not only in ``op`` calls: a view's DDL is often a
module constant), but only as keywords where ClickHouse reads them: a column or table named
``populate`` or ``sync``, a comment or a string literal mentioning them, or prose in an error
message is not SQL saying so.
"""

from __future__ import annotations

from collections.abc import Iterator

from k2_migrations.authoring.lint.model import Rule, each_revision
from k2_migrations.authoring.lint.source import Hit, Revision
from k2_migrations.authoring.lint.sql import Statement

_OBJECTS = frozenset({"TABLE", "VIEW", "DICTIONARY", "DATABASE"})


def populates(statement: Statement) -> bool:
    """``CREATE MATERIALIZED VIEW ... POPULATE AS SELECT``: POPULATE before the view's query, outside
    parentheses, where no name is expected."""
    index = statement.after_words(1, frozenset({"OR", "REPLACE"}))
    if statement.first not in ("CREATE", "ATTACH") or not statement.words_at(index, "MATERIALIZED", "VIEW"):
        return False
    for position, token in enumerate(statement.tokens):
        if statement.depths[position] != 0:
            continue
        if token.upper() == "AS" and statement.word(position + 1) in ("SELECT", "WITH", ""):
            return False  # the query starts: a POPULATE after this is a name in it
        if token.upper() == "POPULATE" and not statement.is_name_position(position):
            return True
    return False


def drops_sync(statement: Statement) -> str | None:
    """``SYNC`` (or its old spelling ``NO DELAY``) ending a ``DROP TABLE/VIEW/DICTIONARY/DATABASE``."""
    index = statement.after_words(1, frozenset({"TEMPORARY"}))
    if statement.first != "DROP" or statement.word(index) not in _OBJECTS:
        return None
    end = next(
        (i for i, t in enumerate(statement.tokens) if statement.depths[i] == 0 and t.upper() == "SETTINGS"),
        len(statement.tokens),
    )
    if end >= 2 and statement.words_at(end - 2, "NO", "DELAY"):
        return "NO DELAY"
    if end >= 1 and statement.word(end - 1) == "SYNC" and not statement.is_name_position(end - 1):
        return "SYNC"
    return None


def _populate(revision: Revision) -> Iterator[Hit]:
    for node, text in revision.strings:
        if any(populates(s) for s in revision.sql(text) or []):
            yield revision.hit(
                "populate",
                node,
                "POPULATE fills a materialized view from its source, but rows inserted while it runs are "
                "lost (and a re-run fills it twice)",
            )


def _drop_sync(revision: Revision) -> Iterator[Hit]:
    for node, text in revision.strings:
        spelling = next((w for w in map(drops_sync, revision.sql(text) or []) if w is not None), None)
        if spelling is not None:
            same = "" if spelling == "SYNC" else " (NO DELAY is the old spelling of SYNC)"
            yield revision.hit(
                "drop-sync", node, f"DROP ... {spelling} hangs on the embedded engine (chDB){same}"
            )


RULES = (
    Rule(
        "populate",
        "ddl_safety",
        "a materialized view created with POPULATE (loses the rows inserted while it is created)",
        "create the view without POPULATE, then backfill with INSERT INTO target SELECT ... "
        "(op.execute_sql with done_when=)",
        each_revision(_populate),
    ),
    Rule(
        "drop-sync",
        "ddl_safety",
        "DROP ... SYNC (hangs on the embedded engine; a plain DROP frees the name at once)",
        "remove SYNC: a plain DROP frees the name at once on an Atomic database",
        each_revision(_drop_sync),
    ),
)
