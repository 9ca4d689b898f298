<%
    # k2-migrate revision --sql: upgrade() and downgrade() run the .sql files written beside this one.
    sql_revision = context.get("config") is not None and context.get("config").attributes.get("k2_sql_revision")
%>\
# mypy: disable-error-code="attr-defined"
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Every operation on ``op`` is idempotent: it reads the live state from system tables before acting,
so k2-migrate can re-run this revision after a crash at any point and it does only what is missing.
Keep it that way: use the ClickHouse operations on ``op`` (see docs/operations.md), and give any raw
statement a ``done_when`` query so a re-run can tell it already happened (in a .sql file, a
``-- done_when: SELECT ...`` line above the statement).
"""

from __future__ import annotations

from alembic import op

revision: str = ${repr(up_revision)}
down_revision: str | tuple[str, ...] | None = ${repr(down_revision)}
branch_labels: str | tuple[str, ...] | None = ${repr(branch_labels)}
depends_on: str | tuple[str, ...] | None = ${repr(depends_on)}


def upgrade() -> None:
% if sql_revision:
    op.run_sql_file(${repr(up_revision + ".upgrade.sql")})
% elif upgrades:
    ${upgrades}
% elif isinstance(down_revision, tuple):
    pass  # a merge: it joins heads and changes nothing
% else:
    # An example (see docs/authoring.md for every operation):
    #
    #   op.take_guards("rows", ["shop.orders"])       # count now, compare at check_guards
    #   op.add_column_if_missing("shop", "orders", "discount", "UInt32", default="0")
    #   op.run_mutation(                              # waited for, never issued twice
    #       "shop", "orders", "UPDATE discount = 5 WHERE discount = 0",
    #       done_when="SELECT countIf(discount = 0) = 0 FROM shop.orders",
    #   )
    #   op.check_guards("rows")                       # stops the run if a row was lost
    pass
% endif


def downgrade() -> None:
% if sql_revision:
    op.run_sql_file(${repr(up_revision + ".downgrade.sql")})
% elif downgrades:
    ${downgrades}
% elif isinstance(down_revision, tuple):
    pass  # a merge: it joins heads and changes nothing
% else:
    # Undo upgrade() in reverse order, e.g.:
    #
    #   op.drop_column_if_exists("shop", "orders", "discount")
    pass
% endif
