"""The parts of a table's change that ALTER makes in place, beside its columns: settings, comments,
codecs, indexes, projections, and a sorting key extended by new columns. Pure, as :mod:`.plan` is.

Written around :func:`.plan._columns`: :func:`before_columns` drops the indexes and projections that
go (one may read a column dropped next) and extends the sorting key (its new columns are added by
that ALTER), :func:`after_columns` sets codecs and comments (of new columns too) and adds the indexes
and projections that come (one may read a column just added). Each reverse names the old definition.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from k2_migrations.declared.steps import call
from k2_migrations.introspection.shape import HOME, Shape, setting_value
from k2_migrations.sqltext import rewrite_databases
from k2_migrations.sqltext.tokens import split_list, tokenize

if TYPE_CHECKING:
    from k2_migrations.declared.steps import Plan

#: Settings the engine refuses to ALTER (Code 472 READONLY_SETTING, measured on chDB 26.1): a table
#: declared with another value is rebuilt.
READONLY_SETTINGS = frozenset({"index_granularity", "index_granularity_bytes"})


def rebuilt_for_settings(have: Shape, want: Shape) -> bool:
    """Whether a setting no ALTER changes differs (then the table is rebuilt as declared)."""
    return any(have.table_settings.get(k) != want.table_settings.get(k) for k in READONLY_SETTINGS)


def order_by_extension(have: Shape, want: Shape) -> list[tuple[str, str]]:
    """The (column, type) pairs the declared sorting key appends, when ClickHouse can extend it in place.

    It can when the declared key is the current one followed by expressions of columns the table does
    not have yet, declared without a default and after every column it has (``ADD COLUMN`` appends
    them). ``[]`` when the keys are equal or differ in any other way (the table is then rebuilt).
    """
    old, new = split_list(have.sorting_key), split_list(want.sorting_key)
    if len(new) <= len(old) or new[: len(old)] != old:
        return []
    present = {c for c, _ in have.columns}
    declared = [c for c, _ in want.columns]
    used = {t.value for e in new[len(old) :] for t in tokenize(e) if t.is_name and t.value in declared}
    defaulted = {c for c, _, _ in want.defaults}
    last_kept = max((declared.index(c) for c in present if c in declared), default=-1)
    if not used or used & (present | defaulted) or min(declared.index(c) for c in used) < last_kept:
        return []
    return [(c, t) for c, t in want.columns if c in used]


def before_columns(plan: Plan, database: str, table: str, have: Shape, want: Shape) -> Shape:
    """Settings, comment, indexes and projections that go, and a sorting key extension; ``have`` with the
    extension's columns (they are not added again)."""
    for key, value in want.table_settings.items():
        if key in READONLY_SETTINGS or have.table_settings.get(key) == value:
            continue
        old = have.table_settings.get(key)
        plan.step(
            call("modify_setting", database, table, {key: setting_value(value)}),
            call("modify_setting", database, table, {key: setting_value(old)})
            if old is not None
            else call("reset_setting", database, table, [key]),
        )
    for key, old in have.table_settings.items():
        if key not in want.table_settings and key not in READONLY_SETTINGS:
            plan.step(
                call("reset_setting", database, table, [key]),
                call("modify_setting", database, table, {key: setting_value(old)}),
            )
    if have.comment != want.comment:
        plan.step(
            call("modify_comment", database, table, want.comment),
            call("modify_comment", database, table, have.comment),
        )
    indices, projections = dict(_by_name(want.indices)), dict(want.projections)
    for name, index in _by_name(have.indices):
        if indices.get(name) != index:
            plan.step(call("drop_index", database, table, name), _add_index(database, table, name, index))
    for name, query in have.projections:
        if projections.get(name) != query:
            plan.step(
                call("drop_projection", database, table, name), _add_projection(database, table, name, query)
            )
    added = order_by_extension(have, want)
    if not added:
        return have
    plan.step(
        call("extend_order_by", database, table, want.sorting_key, added),
        call("shrink_order_by", database, table, have.sorting_key, [c for c, _ in added]),
    )
    return replace(have, columns=have.columns + tuple(added), sorting_key=want.sorting_key)


def after_columns(plan: Plan, database: str, table: str, have: Shape, want: Shape) -> None:
    """Codecs and comments of the declared columns, then the indexes and projections that come."""
    old_codecs, new_codecs = dict(have.codecs), dict(want.codecs)
    old_comments, new_comments = dict(have.column_comments), dict(want.column_comments)
    for column, _ in want.columns:
        changes: dict[str, object] = {}
        undo: dict[str, object] = {}
        if old_codecs.get(column) != new_codecs.get(column):
            changes["codec"], undo["codec"] = (
                column_codec(new_codecs.get(column)),
                column_codec(old_codecs.get(column)),
            )
        if old_comments.get(column, "") != new_comments.get(column, ""):
            changes["comment"], undo["comment"] = new_comments.get(column, ""), old_comments.get(column, "")
        if changes:
            plan.step(
                call("modify_column", database, table, column, **changes),
                call("modify_column", database, table, column, **undo),
            )
    indices, projections = dict(_by_name(have.indices)), dict(have.projections)
    for name, index in _by_name(want.indices):
        if indices.get(name) != index:
            plan.step(_add_index(database, table, name, index), call("drop_index", database, table, name))
    for name, query in want.projections:
        if projections.get(name) != query:
            plan.step(
                _add_projection(database, table, name, query), call("drop_projection", database, table, name)
            )


def column_codec(codec: str | None) -> str | None:
    """``CODEC(Delta(8), ZSTD(1))`` as ``modify_column`` and ``add_column_if_missing`` take it (``Delta(8), ZSTD(1)``); None: none."""
    return None if codec is None else codec.removeprefix("CODEC(").removesuffix(")")


def _by_name(indices: tuple[tuple[str, str, str, int], ...]) -> list[tuple[str, tuple[str, str, int]]]:
    return [(name, (expr, type_, granularity)) for name, expr, type_, granularity in indices]


def _add_index(database: str, table: str, name: str, index: tuple[str, str, int]) -> str:
    expr, type_, granularity = index
    return call(
        "add_index", database, table, name, rewrite_databases(expr, {HOME: database}), type_, granularity
    )


def _add_projection(database: str, table: str, name: str, query: str) -> str:
    return call("add_projection", database, table, name, rewrite_databases(query, {HOME: database}))
