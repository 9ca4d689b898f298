"""A table's own SETTINGS, its comment, and a sorting key extended by the columns added with it.

Each is compared with what the engine renders in system.tables (``engine_full``'s SETTINGS clause,
``comment``, ``sorting_key``) before anything runs, so a re-run does nothing. All are metadata only:
no part is rewritten. ``modify_setting``/``reset_setting`` and ``modify_comment`` capture what they
replace, once per attempt, for ``restore_settings``/``restore_comment`` in the same revision's
downgrade (as ``modify_column``/``restore_column`` do).

ClickHouse extends a sorting key only with columns added in the same ALTER, without a default
(``ADD COLUMN c T, MODIFY ORDER BY (id, c)``), and shortens it by expressions at its end (measured on
chDB 26.1: ``MODIFY ORDER BY id`` on ``(id, c)`` is accepted, down to the primary key's length;
``(id, x)`` with an existing ``x`` or a new one with a DEFAULT is refused, Code 36). The primary key stays what it was, so
``extend_order_by`` is for a table declared ``PRIMARY KEY id ORDER BY (id, c)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alembic.operations import Operations

from k2_migrations.decisions.columns import same_text
from k2_migrations.engine.context import Payload
from k2_migrations.errors import DriftDetected, UsageError
from k2_migrations.introspection.shape import setting_value, table_settings
from k2_migrations.operations.base import ClickHouseOperation, _register
from k2_migrations.operations.columns import DropColumn, capture, captured
from k2_migrations.operations.structure import _formatted
from k2_migrations.sqltext.quoting import ident, literal, qualified
from k2_migrations.sqltext.tokens import split_list, tokenize

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext
    from k2_migrations.introspection.catalog import TableInfo

#: A setting's value as a revision writes it: a string is quoted, a number is not.
Value = str | int | float


def _sql(value: Value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    return literal(value) if isinstance(value, str) else str(value)


def _text(value: Value) -> str:
    """The value as ``engine_full`` shows it once read by the tokenizer (a string unquoted)."""
    return str(int(value)) if isinstance(value, bool) else str(value)


def _table(rt: StepContext, database: str, table: str, what: str) -> TableInfo:
    info = rt.catalog.table(database, table)
    if info is None:
        raise DriftDetected(
            f"{what}: {database}.{table} does not exist; the schema is not what this revision expects"
        )
    return info


def _live_settings(rt: StepContext, database: str, table: str, what: str) -> dict[str, str]:
    return table_settings(_table(rt, database, table, what).engine_full)


def _settings_key(database: str, table: str, names: list[str]) -> str:
    return f"{database}.{table} SETTINGS {','.join(sorted(names))}"


# -- SETTINGS --------------------------------------------------------------------------------------


@_register("modify_setting")
@dataclass(eq=False)
class ModifySetting(ClickHouseOperation):
    """Set table settings (``ALTER TABLE ... MODIFY SETTING``), those not so already."""

    database: str
    table: str
    settings: dict[str, Value]
    captures: bool = True

    @classmethod
    def modify_setting(
        cls, operations: Operations, database: str, table: str, settings: dict[str, Value]
    ) -> None:
        if not settings:
            raise UsageError(f"modify_setting({database}.{table}): name at least one setting")
        operations.invoke(cls(database, table, dict(settings)))

    def describe(self) -> str:
        shown = ", ".join(f"{k} = {_sql(v)}" for k, v in self.settings.items())
        return f"set {shown} on {self.database}.{self.table}"

    def _statement(self, settings: dict[str, Value]) -> str:
        shown = ", ".join(f"{ident(k)} = {_sql(v)}" for k, v in settings.items())
        return f"ALTER TABLE {qualified(self.database, self.table)} MODIFY SETTING {shown}"

    def render(self) -> list[str]:
        return [self._statement(self.settings)]

    def apply(self, rt: StepContext) -> Payload:
        live = _live_settings(rt, self.database, self.table, "modify_setting")
        missing = {k: v for k, v in self.settings.items() if live.get(k) != _text(v)}
        if not missing:
            return {"note": "already as wanted"}
        previous = {k: live.get(k) for k in self.settings}
        if self.captures:
            capture(rt, _settings_key(self.database, self.table, list(self.settings)), json.dumps(previous))
        rt.execute(self._statement(missing))
        return {"previous": previous}

    def reverse(self) -> ClickHouseOperation:
        return RestoreSettings(self.database, self.table, list(self.settings))


@_register("reset_setting")
@dataclass(eq=False)
class ResetSetting(ClickHouseOperation):
    """Reset table settings to the engine's defaults (``ALTER TABLE ... RESET SETTING``), those the table sets."""

    database: str
    table: str
    names: list[str]
    captures: bool = True

    @classmethod
    def reset_setting(cls, operations: Operations, database: str, table: str, names: list[str]) -> None:
        if not names:
            raise UsageError(f"reset_setting({database}.{table}): name at least one setting")
        operations.invoke(cls(database, table, list(names)))

    def describe(self) -> str:
        return f"reset {', '.join(self.names)} on {self.database}.{self.table}"

    def _statement(self, names: list[str]) -> str:
        return (
            f"ALTER TABLE {qualified(self.database, self.table)} RESET SETTING {', '.join(map(ident, names))}"
        )

    def render(self) -> list[str]:
        return [self._statement(self.names)]

    def apply(self, rt: StepContext) -> Payload:
        live = _live_settings(rt, self.database, self.table, "reset_setting")
        present = [n for n in self.names if n in live]
        if not present:
            return {"note": "none is set"}
        previous = {n: live.get(n) for n in self.names}
        if self.captures:
            capture(rt, _settings_key(self.database, self.table, self.names), json.dumps(previous))
        rt.execute(self._statement(present))
        return {"previous": previous}

    def reverse(self) -> ClickHouseOperation:
        return RestoreSettings(self.database, self.table, list(self.names))


@_register("restore_settings")
@dataclass(eq=False)
class RestoreSettings(ClickHouseOperation):
    """Put the named settings back as ``modify_setting``/``reset_setting`` found them in this revision."""

    database: str
    table: str
    names: list[str]

    @classmethod
    def restore_settings(cls, operations: Operations, database: str, table: str, names: list[str]) -> None:
        operations.invoke(cls(database, table, list(names)))

    def describe(self) -> str:
        return f"restore {', '.join(self.names)} on {self.database}.{self.table} as this revision found them"

    def render(self) -> list[str]:
        return [
            f"-- ALTER TABLE {qualified(self.database, self.table)} MODIFY SETTING <the values captured>"
            " / RESET SETTING <those it had not>"
        ]

    def apply(self, rt: StepContext) -> Payload:
        previous = captured(rt, _settings_key(self.database, self.table, self.names))
        if previous is None:
            raise UsageError(
                f"restore_settings({self.database}.{self.table}): no settings were captured by revision "
                f"{rt.revision}; use modify_setting or reset_setting with the old values"
            )
        values: dict[str, str | None] = json.loads(previous)
        kept: dict[str, Value] = {k: setting_value(v) for k, v in values.items() if v is not None}
        gone = [k for k, v in values.items() if v is None]
        notes = []
        if kept:
            notes.append(ModifySetting(self.database, self.table, kept, captures=False).apply(rt))
        if gone:
            notes.append(ResetSetting(self.database, self.table, gone, captures=False).apply(rt))
        return {"note": "; ".join(str(n.get("note", "restored")) for n in notes)}


# -- COMMENT ---------------------------------------------------------------------------------------


@_register("modify_comment")
@dataclass(eq=False)
class ModifyComment(ClickHouseOperation):
    """Set the table's comment (``ALTER TABLE ... MODIFY COMMENT``; ``""`` removes it), unless it is so."""

    database: str
    table: str
    comment: str
    captures: bool = True

    @classmethod
    def modify_comment(cls, operations: Operations, database: str, table: str, comment: str) -> None:
        operations.invoke(cls(database, table, comment))

    def describe(self) -> str:
        return f"set the comment of {self.database}.{self.table} to {literal(self.comment)}"

    def render(self) -> list[str]:
        return [f"ALTER TABLE {qualified(self.database, self.table)} MODIFY COMMENT {literal(self.comment)}"]

    def apply(self, rt: StepContext) -> Payload:
        live = _table(rt, self.database, self.table, "modify_comment").comment
        if live == self.comment:
            return {"note": "already as wanted"}
        if self.captures:
            capture(rt, f"{self.database}.{self.table} COMMENT", live)
        rt.execute(self.render()[0])
        return {"previous": live}

    def reverse(self) -> ClickHouseOperation:
        return RestoreComment(self.database, self.table)


@_register("restore_comment")
@dataclass(eq=False)
class RestoreComment(ClickHouseOperation):
    """Put back the comment ``modify_comment`` replaced in this revision."""

    database: str
    table: str

    @classmethod
    def restore_comment(cls, operations: Operations, database: str, table: str) -> None:
        operations.invoke(cls(database, table))

    def describe(self) -> str:
        return f"restore the comment of {self.database}.{self.table} as this revision found it"

    def render(self) -> list[str]:
        return [
            f"-- ALTER TABLE {qualified(self.database, self.table)} MODIFY COMMENT <the comment captured>"
        ]

    def apply(self, rt: StepContext) -> Payload:
        previous = captured(rt, f"{self.database}.{self.table} COMMENT")
        if previous is None:
            raise UsageError(
                f"restore_comment({self.database}.{self.table}): no comment was captured by revision "
                f"{rt.revision}; use modify_comment with the old one"
            )
        return ModifyComment(self.database, self.table, previous, captures=False).apply(rt)


# -- ORDER BY --------------------------------------------------------------------------------------


def _same_key(rt: StepContext, live: str, wanted: str) -> bool:
    """Two sorting keys compared as the engine's formatter writes them."""

    def shown(key: str) -> str:
        return _formatted(
            rt, f"ALTER TABLE t MODIFY ORDER BY ({key})" if key else "ALTER TABLE t MODIFY ORDER BY tuple()"
        )

    return same_text(shown(live), shown(wanted))


@_register("extend_order_by")
@dataclass(eq=False)
class ExtendOrderBy(ClickHouseOperation):
    """Add columns and append them to the sorting key in one ALTER (metadata only), unless it is so.

    ``order_by`` is the whole new key (``"id, c"``); ``columns`` the (name, type) pairs added with it,
    in order, without defaults (the engine refuses a defaulted one in a sorting key).
    """

    database: str
    table: str
    order_by: str
    columns: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def extend_order_by(
        cls,
        operations: Operations,
        database: str,
        table: str,
        order_by: str,
        columns: list[tuple[str, str]],
    ) -> None:
        if not columns:
            raise UsageError(
                f"extend_order_by({database}.{table}): name the columns added with the key; ClickHouse "
                "extends a sorting key only with new columns (rebuild_table for any other change)"
            )
        operations.invoke(cls(database, table, order_by, [(str(n), str(t)) for n, t in columns]))

    def describe(self) -> str:
        added = ", ".join(f"{n} {t}" for n, t in self.columns)
        return f"add {added} to {self.database}.{self.table} and order it by ({self.order_by})"

    def render(self) -> list[str]:
        adds = [f"ADD COLUMN {ident(n)} {t}" for n, t in self.columns]
        return [
            f"ALTER TABLE {qualified(self.database, self.table)} {', '.join(adds)}, MODIFY ORDER BY ({self.order_by})"
        ]

    def apply(self, rt: StepContext) -> Payload:
        info = _table(rt, self.database, self.table, "extend_order_by")
        names = {c.name for c in rt.catalog.columns(self.database, self.table)}
        if _same_key(rt, info.sorting_key, self.order_by) and all(n in names for n, _ in self.columns):
            return {"note": "already as wanted"}
        existing = [n for n, _ in self.columns if n in names]
        if existing:
            raise DriftDetected(
                f"extend_order_by({self.database}.{self.table}): column {existing[0]} exists already and the "
                f"sorting key is {info.sorting_key!r}; ClickHouse extends a key only with columns added by the "
                "same ALTER: drop the column first, or rebuild_table"
            )
        rt.execute(self.render()[0])
        return {"previous": info.sorting_key}

    def reverse(self) -> ClickHouseOperation:
        added = {n for n, _ in self.columns}
        kept: list[str] = []
        for entry in split_list(self.order_by):
            if any(t.is_name and t.value in added for t in tokenize(entry)):
                break
            kept.append(entry)
        return ShrinkOrderBy(self.database, self.table, ", ".join(kept), [n for n, _ in self.columns])


@_register("shrink_order_by")
@dataclass(eq=False)
class ShrinkOrderBy(ClickHouseOperation):
    """Shorten the sorting key to ``order_by`` (expressions removed from its end), then drop the columns
    only it used (``extend_order_by``'s reverse); each part unless it is so."""

    database: str
    table: str
    order_by: str
    drop_columns: list[str] = field(default_factory=list)

    @classmethod
    def shrink_order_by(
        cls, operations: Operations, database: str, table: str, order_by: str, drop_columns: list[str]
    ) -> None:
        operations.invoke(cls(database, table, order_by, list(drop_columns)))

    def describe(self) -> str:
        dropped = f", drop {', '.join(self.drop_columns)}" if self.drop_columns else ""
        return f"order {self.database}.{self.table} by ({self.order_by}){dropped}"

    def render(self) -> list[str]:
        key = f"({self.order_by})" if self.order_by else "tuple()"
        table = qualified(self.database, self.table)
        return [f"ALTER TABLE {table} MODIFY ORDER BY {key}"] + [
            s for c in self.drop_columns for s in DropColumn(self.database, self.table, c).render()
        ]

    def apply(self, rt: StepContext) -> Payload:
        info = _table(rt, self.database, self.table, "shrink_order_by")
        statements = self.render()
        note = "key already as wanted"
        if not _same_key(rt, info.sorting_key, self.order_by):
            rt.execute(statements[0])
            note = f"key was {info.sorting_key}"
        for column in self.drop_columns:
            DropColumn(self.database, self.table, column).apply(rt)
        return {"note": note}
