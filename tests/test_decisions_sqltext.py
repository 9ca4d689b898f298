"""Property tests of where statements split and which tokens a database rewrite changes.

Scripts are built from statements holding ``;`` in string literals, comments and quoted names, beside
the database arguments a rewrite must find (``Distributed(cluster, 'db', ...)``, ``dictGet('db.d', ...)``,
``remote``, ``Merge``, a dictionary's ``SOURCE(CLICKHOUSE(DB ...))``): splitting gives back each
statement, and rewriting changes the database references and not one other byte.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k2_migrations.errors import UsageError
from k2_migrations.sqltext.references import read_statement
from k2_migrations.sqltext.rewrite import rewrite_databases
from k2_migrations.sqltext.tokens import (
    Comment,
    Kind,
    comments,
    split_list,
    split_statements,
    statement_spans,
    tokenize,
)

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
    # Two-part names that are table.column, alias.column or a tuple element are left alone.
    "SELECT src.c, {db}.t.c FROM {db}.t AS src WHERE src.c IN (SELECT c FROM {db}.u) AND src.s != {x}",
    "SELECT * FROM {db}.a JOIN {db}.b USING (id) LEFT ARRAY JOIN src.arr AS x WHERE x.1 = {x}",
    "WITH src AS (SELECT {x} AS c) SELECT src.c FROM src, {db}.t",
    "with src as (select {x} as c) select src.c from src, {db}.t",
    "RENAME TABLE {db}.a TO {db}.b, {db}.c TO {db}.d",
    "EXCHANGE TABLES {db}.a AND {db}.b",
    "DROP TABLE IF EXISTS {db}.a, {db}.b",
    "CREATE VIEW {db}.v AS SELECT * FROM {db}.t WHERE c IN {db}.s AND d != {x}",
    "SELECT * FROM remote('h', {db}.t) WHERE c = {x}",
    "SELECT * FROM cluster('c', {db}, t) WHERE c = {x}",
    "SELECT * FROM (SELECT * FROM {db}.t WHERE c = {x}) AS src, {db}.u",
    "ALTER TABLE {db}.t UPDATE c = {x} WHERE id IN (SELECT id FROM {db}.u)",
    "INSERT INTO {db}.t (c) SELECT src.c FROM {db}.u AS src WHERE src.c != {x}",
    "CREATE TABLE {db}.t (d Date, s String DEFAULT {x}) ENGINE = MergeTree ORDER BY d"
    " TTL d + INTERVAL 1 DAY TO DISK 'src'",
    # No database here: a literal holding a name is data, merge() with one argument reads this database.
    "SELECT concat('src.x', {x}), dictGet('src.y' || '', 'v', 1) FROM merge('^t')",
    "CREATE TABLE {db}.d AS {db}.t ENGINE = Distributed(c, 'src' || {x}, t)",
    "CREATE DICTIONARY {db}.d (id UInt64, s String DEFAULT {x}) PRIMARY KEY id"
    " SOURCE(MYSQL(DB 'src' TABLE 't')) LAYOUT(FLAT()) LIFETIME(0)",
    "SELECT src.c FROM {db}.t AS src JOIN {db}.u ON src.id = u.id WHERE src.s = {x}",
    "CREATE MATERIALIZED VIEW {db}.mv TO {db}.t AS SELECT * FROM {db}.s WHERE c != {x}",
    "SELECT {db}.t.*, {x} FROM {db}.t",
    "SELECT * FROM (WITH a AS (SELECT {x}) SELECT * FROM {db}.t)",
    "SELECT dictGet('{db}.d') FROM `{db}`.`t` JOIN \"{db}\".u USING (id) WHERE c = {x}",
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
    assert [ref.database for ref in statement.databases] == ["src"] * template.count("{db}")


def test_a_with_name_is_no_table_in_any_case() -> None:
    assert read_statement("WITH src AS (SELECT 1) SELECT * FROM src").ctes == {"src"}
    assert read_statement("with src as (with x as (select 1) select * from x) select * from src").ctes == {
        "src",
        "x",
    }
    assert read_statement("SELECT * FROM src AS s").ctes == set()
    assert read_statement("WITH a AS (SELECT 1), b AS (SELECT 2) SELECT * FROM b").ctes == {"a", "b"}


#: Database names to rewrite to, quotes included. (Not a backslash: the tokenizer keeps a string's or a
#: name's escaped backslash doubled in its value, so such a name would not read back as itself.)
NAMES = st.text(alphabet=st.sampled_from(list("ab_1'`\" ;-é")), min_size=1, max_size=10)


@settings(deadline=None)
@given(NAMES)
def test_any_new_name_reads_back_as_itself_in_every_quoting(name: str) -> None:
    sql = (
        "SELECT dictGet('src.d', 'v', 1) FROM src.t JOIN `src`.u USING (id) JOIN \"src\".w USING (id)"
        " WHERE id IN (SELECT id FROM remote('h', 'src', 't'))"
    )
    rewritten = rewrite_databases(sql, {"src": name})
    assert [ref.database for ref in read_statement(rewritten).databases] == [name] * 5


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


def test_keyword_pairs_are_one_word_each_at_their_places() -> None:
    for sql in (
        "SELECT 1 ORDER BY 1",
        "SELECT 1 ORDER\nBY 1",
        "SELECT 1 ORDER\tBY 1",
        "SELECT 1 ORDER  BY 1",
    ):
        tokens = tokenize(sql)
        assert [(t.kind, sql[t.start : t.end], t.value) for t in tokens] == [
            (Kind.WORD, "SELECT", "SELECT"),
            (Kind.NUMBER, "1", "1"),
            (Kind.WORD, "ORDER", "ORDER"),
            (Kind.WORD, "BY", "BY"),
            (Kind.NUMBER, "1", "1"),
        ]
    assert [(t.start, t.end) for t in tokenize("f(a, b);")] == [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 4),
        (5, 6),
        (6, 7),
        (7, 8),
    ]


def test_only_a_bare_word_can_be_a_keyword() -> None:
    word, string, quoted = tokenize("select 'select' `select`")
    assert (word.upper(), string.upper(), quoted.upper()) == ("SELECT", "", "")


def test_unreadable_sql_is_named_in_one_squashed_line() -> None:
    with pytest.raises(UsageError) as short:
        tokenize("SELECT\n  'open")
    assert short.value.message.endswith(": SELECT 'open")
    long = "SELECT " + "x, " * 40 + "'open"
    with pytest.raises(UsageError) as cut:
        tokenize(long)
    shown = cut.value.message.rpartition(": ")[2]
    assert shown == " ".join(long.split())[:77] + "..." and len(shown) == 80
    exact = "SELECT '" + "y" * 72  # 80 characters: shown whole
    assert len(exact) == 80
    with pytest.raises(UsageError) as whole:
        tokenize(exact)
    assert whole.value.message.endswith(": " + exact)


def test_blank_and_comment_only_parts_are_no_statements() -> None:
    assert split_statements("") == []
    assert split_statements(" ;; -- x\n; /* y */") == []
    assert split_statements("SELECT 1") == ["SELECT 1"]
    assert split_statements("  SELECT 1  ;  SELECT 2") == ["SELECT 1", "SELECT 2"]


def test_a_new_name_is_escaped_in_the_quoting_it_goes_into() -> None:
    slash = {"src": "a\\b"}
    assert rewrite_databases("SELECT dictGet('src.d', 'v', 1)", slash) == "SELECT dictGet('a\\\\b.d', 'v', 1)"
    assert (
        rewrite_databases("SELECT dictGet('src.d', 'v', 1)", {"src": "a'b"})
        == "SELECT dictGet('a\\'b.d', 'v', 1)"
    )
    assert rewrite_databases("SELECT * FROM `src`.t", slash) == "SELECT * FROM `a\\\\b`.t"
    assert rewrite_databases("SELECT * FROM `src`.t", {"src": "a`b"}) == "SELECT * FROM `a\\`b`.t"
    assert rewrite_databases('SELECT * FROM "src".t', {"src": 'a"b'}) == 'SELECT * FROM "a\\"b".t'
    assert rewrite_databases("SELECT * FROM src.t", {"src": "a b"}) == "SELECT * FROM `a b`.t"
    assert rewrite_databases("SELECT * FROM src.t", {"src": "ab_1"}) == "SELECT * FROM ab_1.t"


def test_words_are_the_tokens_at_one_depth() -> None:
    statement = read_statement("SELECT f(a, (b)) FROM t")
    assert [t.value for _, t in statement.words()] == ["SELECT", "f", "(", ")", "FROM", "t"]
    assert [t.value for _, t in statement.words(1)] == ["a", ",", "(", ")"]
    assert [t.value for _, t in statement.words(2)] == ["b"]


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("src.t", [("src.t", "NAME", 0, "src")]),
        ("`src`.t", [("src.t", "NAME", 0, "src")]),
        (
            "SELECT * FROM src.a JOIN b USING (id) LEFT ARRAY JOIN arr AS x",
            [("src.a", "FROM", 0, "src"), ("b", "JOIN", 0, None)],
        ),
        (
            "WITH w AS (SELECT 1) SELECT * FROM w, src.t, (SELECT * FROM src.u) AS q WHERE id IN src.s",
            [
                ("w", "FROM", 0, None),
                ("src.t", "FROM", 0, "src"),
                ("src.u", "FROM", 1, "src"),
                ("src.s", "IN", 0, "src"),
            ],
        ),
        (
            "RENAME TABLE src.a TO src.b, c TO d",
            [
                ("src.a", "TABLE", 0, "src"),
                ("src.b", "TO", 0, "src"),
                ("c", "LIST", 0, None),
                ("d", "TO", 0, None),
            ],
        ),
        ("EXCHANGE TABLES src.a AND b", [("src.a", "TABLES", 0, "src"), ("b", "LIST", 0, None)]),
        (
            "CREATE TABLE src.t (d Date) ENGINE = MergeTree ORDER BY d TTL d TO DISK 'x'",
            [("src.t", "TABLE", 0, "src")],
        ),
        ("SELECT * FROM remote('h', src.t), numbers(3)", [("src.t", "ARGUMENT", 1, "src")]),
        (
            "CREATE TABLE src.d AS src.t ENGINE = Memory",
            [("src.d", "TABLE", 0, "src"), ("src.t", "AS", 0, "src")],
        ),
        (
            "CREATE MATERIALIZED VIEW src.mv TO src.t AS SELECT s.* FROM src.s",
            [("src.mv", "VIEW", 0, "src"), ("src.t", "TO", 0, "src"), ("src.s", "FROM", 0, "src")],
        ),
        (
            "ALTER TABLE src.t MOVE PARTITION 1 TO TABLE src.u",
            [("src.t", "TABLE", 0, "src"), ("src.u", "TABLE", 0, "src")],
        ),
        (
            "INSERT INTO src.t SELECT * FROM src.u WHERE (a, b) IN (SELECT a, b FROM src.v)",
            [("src.t", "INTO", 0, "src"), ("src.u", "FROM", 0, "src"), ("src.v", "FROM", 1, "src")],
        ),
    ],
)
def test_the_tables_a_statement_names_with_the_keyword_that_put_each_there(
    sql: str, tables: list[tuple[str, str, int, str | None]]
) -> None:
    statement = read_statement(sql)
    found = [
        (str(t.table), t.role, t.depth, t.database_token.value if t.database_token else None)
        for t in statement.tables
    ]
    assert found == tables


# -- comments, spans and lists -----------------------------------------------------------------------

#: Tokens, some holding what would start a comment outside them.
WORDS = ["SELECT", "1", "x", "(", ")", ",", "'a -- b'", "'# c'", "`/* n */`", "$$-- h$$", "'/*'"]
NOTES = [
    "-- note",
    "--",
    "# note",
    "#",
    "/* note */",
    "/* a /* nested */ b */",
    "/**/",
    "/* -- # */",
    "/*x*/",
    "/* /**/ */",
]


@settings(deadline=None)  # the first example pays for importing sqlglot
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 10), st.sampled_from([" ", "\n", "\t\n  "])), max_size=12
    )
)
def test_every_comment_is_found_whole_and_only_outside_tokens(items: list[tuple[bool, int, str]]) -> None:
    """Comments placed between tokens come back at their offsets, a line comment marked as on a line
    of its own when only blanks stand before it on its line; ``--`` inside a literal is no comment."""
    text, expected, line_blank = "", [], True
    for is_note, pick, blank in items:
        piece = NOTES[pick % len(NOTES)] if is_note else WORDS[pick]
        line_comment = is_note and not piece.startswith("/*")
        if is_note:
            expected.append(Comment(len(text), len(text) + len(piece), line_comment and line_blank))
        text += piece + ("\n" if line_comment else "")
        line_blank = line_comment
        text += blank
        line_blank = line_blank or "\n" in blank
    assert comments(text) == expected
    # A line comment at the very end needs no newline.
    assert comments(text + "x -- end") == [*expected, Comment(len(text) + 2, len(text) + 8, False)]


ITEMS = [
    "id",
    "toDate(ts)",
    "(a, b)",
    "'x, y'",
    "[1, 2]",
    "`a,b`",
    "f(g(1, 2), [3, (4, 5)])",
    "-1",
    "tuple()",
]


@settings(deadline=None)  # the first example pays for importing sqlglot
@given(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=6), st.sampled_from([",", ", ", " ,\n  "]))
def test_a_list_splits_at_its_top_level_commas_only(items: list[str], comma: str) -> None:
    assert split_list(f" {comma.join(items)}\n") == items


def test_an_empty_list_has_no_items() -> None:
    assert split_list("") == [] and split_list(" \n") == []
    assert split_list("a, b") == ["a", "b"]


def test_the_text_above_a_statement_begins_after_the_one_before() -> None:
    text = "SELECT 1; /* c */ SELECT 2;; SELECT 3"
    assert [(s.start, s.end, s.gap) for s in statement_spans(text)] == [(0, 8, 0), (18, 26, 8), (29, 37, 26)]
