"""Property tests of where statements split and which tokens a database rewrite changes.

Scripts are built from statements holding ``;`` in string literals, comments and quoted names, beside
the database arguments a rewrite must find (``Distributed(cluster, 'db', ...)``, ``dictGet('db.d', ...)``,
``remote``, ``Merge``, a dictionary's ``SOURCE(CLICKHOUSE(DB ...))``): splitting gives back each
statement, and rewriting changes the database references and not one other byte.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from k2_migrations.sqltext.references import read_statement
from k2_migrations.sqltext.rewrite import rewrite_databases
from k2_migrations.sqltext.tokens import Kind, split_statements, tokenize

#: Statements with a database where ``{db}`` stands and a literal, comment or quoted name at ``{x}``.
TEMPLATES = [
    "CREATE TABLE {db}.d AS {db}.t ENGINE = Distributed('c', '{db}', 't', cityHash64({x}))",
    "CREATE TABLE {db}.d (s String DEFAULT {x}) ENGINE = Distributed(c, {db}, t)",
    "SELECT dictGet('{db}.dict', 'v', {x}) FROM {db}.t WHERE s != {x}",
    "SELECT dictGetOrDefault('{db}.dict', {x}, id, {x}), joinGet('{db}.j', 'v', 1)",
    "SELECT * FROM remote('h:9000', '{db}', 't') WHERE s = {x}",
    "CREATE TABLE {db}.m (s String) ENGINE = Merge('{db}', {x})",
    "CREATE DICTIONARY {db}.dict (id UInt64, v String DEFAULT {x}) PRIMARY KEY id"
    " SOURCE(CLICKHOUSE(DB '{db}' TABLE 't')) LIFETIME(0) LAYOUT(FLAT())",
    "CREATE MATERIALIZED VIEW {db}.mv TO {db}.t AS SELECT {x} AS s, v FROM {db}.src",
    "INSERT INTO {db}.t SELECT {x}, dictGet('{db}.dict', 'v', toUInt64(1))",
]
#: What stands at ``{x}``: literals and names holding ``;`` (a string is data, never a statement end).
FILLERS = ["';'", "'a;b'", "';;'", "'\\';'", "'db;'", "`;`", '";"', "$$;$$", "1 /* ; */", "2 -- ;\n"]
SEPARATORS = [";", ";\n", " ;\n\n", ";;", "; -- ; after\n", ";\n/* ; */\n"]


@st.composite
def scripts(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Statements naming database ``src``, and the same with ``dst``."""
    chosen = draw(st.lists(st.sampled_from(TEMPLATES), min_size=1, max_size=4))
    fills = [draw(st.sampled_from(FILLERS)) for _ in chosen]
    before = [t.format(db="src", x=f) for t, f in zip(chosen, fills, strict=True)]
    after = [t.format(db="dst", x=f) for t, f in zip(chosen, fills, strict=True)]
    return before, after


def join(statements: list[str], separators: list[str]) -> str:
    out = statements[0]
    for statement, separator in zip(statements[1:], separators, strict=False):
        out += separator + statement
    return out + separators[-1]


@settings(deadline=None)  # the first example pays for importing sqlglot
@given(scripts(), st.lists(st.sampled_from(SEPARATORS), min_size=4, max_size=4))
def test_a_script_splits_into_its_statements_whatever_literals_hold(
    script: tuple[list[str], list[str]], separators: list[str]
) -> None:
    statements, _ = script
    assert split_statements(join(statements, separators)) == [
        s.removesuffix(" -- ;\n").removesuffix(" /* ; */") for s in statements
    ]


@settings(deadline=None)  # the first example pays for importing sqlglot
@given(scripts(), st.lists(st.sampled_from(SEPARATORS), min_size=4, max_size=4))
def test_a_rewrite_changes_every_database_reference_and_nothing_else(
    script: tuple[list[str], list[str]], separators: list[str]
) -> None:
    before, after = script
    assert rewrite_databases(join(before, separators), {"src": "dst"}) == join(after, separators)
    assert rewrite_databases(join(before, separators), {"other": "dst"}) == join(before, separators)


@settings(deadline=None)
@given(st.sampled_from(TEMPLATES), st.sampled_from(FILLERS))
def test_each_statement_names_only_its_databases(template: str, filler: str) -> None:
    statement = read_statement(template.format(db="src", x=filler))
    assert {ref.database for ref in statement.databases} == {"src"}
    assert len(statement.databases) == template.count("{db}")


def test_a_literal_semicolon_is_one_string_token() -> None:
    tokens = tokenize("SELECT ';', 'a;b' -- ; c\n; SELECT 1")
    assert [(t.kind, t.value) for t in tokens] == [
        (Kind.WORD, "SELECT"),
        (Kind.STRING, ";"),
        (Kind.PUNCT, ","),
        (Kind.STRING, "a;b"),
        (Kind.PUNCT, ";"),
        (Kind.WORD, "SELECT"),
        (Kind.NUMBER, "1"),
    ]


def test_blank_and_comment_only_parts_are_no_statements() -> None:
    assert split_statements("") == []
    assert split_statements(" ;; -- x\n; /* y */") == []
    assert split_statements("SELECT 1") == ["SELECT 1"]
    assert split_statements("  SELECT 1  ;  SELECT 2") == ["SELECT 1", "SELECT 2"]
