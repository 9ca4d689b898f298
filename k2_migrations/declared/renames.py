"""Renames a declared schema asks for: never guessed, only where a comment line of its ``.sql`` says so.

Two sides differing by a name are otherwise a drop and an add (the drop withheld without
``--allow-drops``): a rename is a statement of intent that no comparison can make. It is written as
a line comment of its own in any ``.sql`` file of the declared schema::

    -- k2: rename column db.table.old -> new
    -- k2: rename table db.old -> new

Names are written as in SQL (backquotes where needed) and read through the tokenizer. The
annotation may stay once applied: a rename whose old name is gone and whose new name is there is
done and writes nothing. One naming nothing on the current side, or contradicting the declared
schema (the old name still declared, the new one not), is refused, naming its ``file:line``.

:func:`apply_renames` is pure: given both sides (shapes and DDL), it returns the current side as if
renamed, for the rest of the plan to compare, and the ``op`` calls of the renames:

- a column: ``rename_column`` / ``rename_column`` back. A view on the current side that may read or
  write the column (it names it or selects ``*``, as :mod:`..introspection.dependencies` judges) is
  replaced as declared right after (``replace_view``; ``dependents="handled"`` on the rename): an
  insert into the table in the moment between fails, loudly, rather than a view losing rows. A view
  whose kind, source or target also changes is refused: rename first, in a revision of its own.
- a table: ``rename_table`` / ``rename_table`` back. A view reading or writing it is refused: views
  do not follow a RENAME; drop and re-create them around the rename in a revision written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from k2_migrations.declared.plan_kafka import Call, Schema
from k2_migrations.errors import UsageError
from k2_migrations.introspection.dependencies import View
from k2_migrations.introspection.shape import Shape
from k2_migrations.sqltext.objects import object_kind, view_query, view_source_and_target
from k2_migrations.sqltext.tokens import Token, comments, tokenize

MARK = "k2:"


@dataclass(frozen=True)
class Rename:
    """``database.table`` renamed to ``new`` (``column`` None), or its ``column`` renamed to ``new``."""

    database: str
    table: str
    column: str | None
    new: str
    #: Where it was declared: ``path:line``.
    origin: str

    def describe(self) -> str:
        old = f"{self.database}.{self.table}" + (f".{self.column}" if self.column else "")
        return f"rename {'column' if self.column else 'table'} {old} -> {self.new}"


@dataclass
class Renamed:
    """The current side as if renamed, and the calls of ``upgrade()`` and ``downgrade()``, in order."""

    schema: Schema
    ddl: dict[str, str]
    upgrade: list[Call] = field(default_factory=list)
    downgrade: list[Call] = field(default_factory=list)
    #: ``(database, name)`` of each view replaced here, for the rest of the plan to leave alone.
    handled: set[tuple[str, str]] = field(default_factory=set)


def read_renames(folders: list[Path]) -> list[Rename]:
    """The rename annotations of every ``*.sql`` file under ``folders`` (see the module's docstring)."""
    found: list[Rename] = []
    for folder in folders:
        for path in sorted(folder.rglob("*.sql")) if folder.is_dir() else []:
            text = path.read_text(encoding="utf-8")
            for comment in comments(text):
                body = text[comment.start : comment.end].removeprefix("--").strip()
                if comment.own_line and body.startswith(MARK):
                    origin = f"{path}:{text.count(chr(10), 0, comment.start) + 1}"
                    found.append(parse(body.removeprefix(MARK), origin))
    return found


def parse(annotation: str, origin: str) -> Rename:
    """``rename column db.table.old -> new`` or ``rename table db.old -> new``; a UsageError otherwise."""
    tokens = tokenize(annotation)
    words = [t.upper() for t in tokens[:2]]
    arrow = next((i for i, t in enumerate(tokens) if t.value == "->"), -1)
    names = _dotted(tokens[2:arrow]) if arrow > 2 else []
    new = [t.value for t in tokens[arrow + 1 :]] if arrow > 0 else []
    parts = 3 if words[1:] == ["COLUMN"] else 2
    if (
        words[:1] != ["RENAME"]
        or words[1:] not in (["COLUMN"], ["TABLE"])
        or len(names) != parts
        or len(new) != 1
    ):
        raise UsageError(
            f"{origin}: cannot read the annotation '{MARK} {annotation.strip()}': write "
            f"'-- {MARK} rename column db.table.old -> new' or '-- {MARK} rename table db.old -> new'"
        )
    return Rename(names[0], names[1], names[2] if parts == 3 else None, new[0], origin)


def _dotted(tokens: list[Token]) -> list[str]:
    """``a.b.c`` as its names; [] when the tokens are not names joined by dots."""
    if (
        len(tokens) % 2 == 0
        or any(t.value != "." for t in tokens[1::2])
        or not all(t.is_name for t in tokens[::2])
    ):
        return []
    return [t.value for t in tokens[::2]]


def apply_renames(
    schema: Schema, ddl: dict[str, str], declared: Schema, declared_ddl: dict[str, str], renames: list[Rename]
) -> Renamed:
    """The current side (``schema``, ``ddl``) as if renamed, and the calls (see the module's docstring).

    Raises UsageError naming the annotation that names nothing or contradicts the declared schema,
    and the one a view makes unplannable.
    """
    out = Renamed({d: None if s is None else dict(s) for d, s in schema.items()}, dict(ddl))
    for rename in renames:
        shapes = out.schema.get(rename.database) or {}
        wanted = declared.get(rename.database) or {}
        if rename.column is None:
            _table(out, rename, shapes, wanted)
        else:
            _column(out, rename, rename.column, shapes, wanted, declared_ddl)
    return out


def _table(out: Renamed, rename: Rename, shapes: dict[str, Shape], wanted: dict[str, Shape]) -> None:
    old, new = rename.table, rename.new
    if new in shapes and old not in shapes and new in wanted:
        return  # applied already
    _expect(rename, old in shapes, f"{rename.database}.{old} is not on the current side")
    _expect(rename, new in wanted and old not in wanted, f"the declared schema must hold {new} and not {old}")
    _expect(rename, new not in shapes, f"{rename.database}.{new} exists already")
    obj = f"{rename.database}.{old}"
    readers = [v.qualified for v in _views(out.ddl) if obj in v.sources or v.target == obj]
    _expect(
        rename,
        not readers,
        f"view(s) {', '.join(readers)} read or write {obj}, and views do not follow a RENAME: "
        "drop and re-create them around op.rename_table in a revision written by hand",
    )
    shapes[new] = shapes.pop(old)
    out.ddl[f"{rename.database}.{new}"] = out.ddl.pop(obj)
    out.upgrade.append(("rename_table", (rename.database, old, new), {}))
    out.downgrade.insert(0, ("rename_table", (rename.database, new, old), {}))


def _column(
    out: Renamed,
    rename: Rename,
    old: str,
    shapes: dict[str, Shape],
    wanted: dict[str, Shape],
    declared_ddl: dict[str, str],
) -> None:
    table, new = rename.table, rename.new
    have = shapes.get(table)
    _expect(rename, have is not None, f"{rename.database}.{table} is not on the current side")
    assert have is not None
    names = {c for c, _ in have.columns}
    declared = {c for c, _ in wanted[table].columns} if table in wanted else set()
    if new in names and old not in names and new in declared:
        return  # applied already
    _expect(rename, old in names, f"{rename.database}.{table} has no column {old}")
    _expect(
        rename, new in declared and old not in declared, f"the declared {table} must hold {new} and not {old}"
    )
    _expect(rename, new not in names, f"{rename.database}.{table} has a column {new} already")
    shapes[table] = replace(
        have,
        columns=tuple((new if c == old else c, t) for c, t in have.columns),
        defaults=tuple((new if c == old else c, k, e) for c, k, e in have.defaults),
    )
    obj = f"{rename.database}.{table}"
    readers = [v for v in _views(out.ddl) if (obj in v.sources or v.target == obj) and {old, "*"} & v.names()]
    kwargs: dict[str, object] = {"dependents": "handled"} if readers else {}
    up: list[Call] = [("rename_column", (rename.database, table, old, new), kwargs)]
    down: list[Call] = [("rename_column", (rename.database, table, new, old), kwargs)]
    for view in readers:
        after = declared_ddl.get(view.qualified)
        _expect(
            rename,
            after is not None
            and object_kind(after) == object_kind(view.create_query)
            and view_source_and_target(after) == view_source_and_target(view.create_query),
            f"view {view.qualified} reads {obj}.{old} and is no longer declared the same kind, reading and "
            "writing the same tables: rename in a revision of its own first",
        )
        assert after is not None
        up.append(("replace_view", (view.database, view.name, after), {}))
        down.append(("replace_view", (view.database, view.name, view.create_query), {}))
        out.handled.add((view.database, view.name))
    out.upgrade.extend(up)
    out.downgrade[:0] = down


def _views(ddl: dict[str, str]) -> list[View]:
    """The views of one side, read from their DDL as :mod:`..introspection.dependencies` reads live ones."""
    out: list[View] = []
    for key, sql in sorted(ddl.items()):
        if "view" not in (object_kind(sql) or ""):
            continue
        database, _, name = key.partition(".")
        read, written = view_source_and_target(sql)
        out.append(
            View(
                database,
                name,
                sql,
                view_query(sql) or "",
                frozenset(f"{t.database or database}.{t.name}" for t in read),
                f"{written.database or database}.{written.name}" if written else "",
            )
        )
    return out


def _expect(rename: Rename, holds: bool, reason: str) -> None:
    if not holds:
        raise UsageError(f"{rename.origin}: {rename.describe()}: {reason}")
