"""ON CLUSTER: which statements take it, where ClickHouse's grammar puts it, and a statement's cluster form.

A revision is written once and runs in every cluster mode: on a single server or inside a Replicated
database (no clause), or as distributed DDL on a named cluster (the clause on every statement that
takes one). Authors either leave the clause out, or write the ``{cluster}`` macro (as ClickHouse's own
configs do), or name a cluster explicitly; only the first two are ours to fill in.

Everything is read from tokens, never from the raw text: an ``ON CLUSTER`` or ``{cluster}`` inside a
comment or a string literal is not a clause, and every byte outside the clause stays as written.
The places below were each checked against the engine's own parser (``formatQuery``), see
tests/test_sqltext_cluster.py; a form that is not listed takes no clause here and is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from k2_migrations.sqltext.quoting import ident
from k2_migrations.sqltext.tokens import Kind, Token, tokenize

MACRO = "{cluster}"

# The object words each statement can name, longest first. TEMPORARY objects are left out on purpose:
# they live in one session, and the engine refuses them ON CLUSTER (Code 80). LIVE VIEW is gone from
# ClickHouse 26 (a syntax error with or without the clause); USER, ROLE, GRANT, ... are access
# control, which a schema migration does not manage.
_OBJECTS = ("TABLE", "VIEW", "MATERIALIZED VIEW", "DICTIONARY", "DATABASE")
_KINDS: dict[str, tuple[str, ...]] = {
    "CREATE": (*_OBJECTS, "WINDOW VIEW", "FUNCTION", "NAMED COLLECTION", "INDEX"),
    "ATTACH": _OBJECTS,
    "REPLACE": ("TABLE", "DICTIONARY"),
    "DROP": (*_OBJECTS, "FUNCTION", "NAMED COLLECTION", "INDEX"),
    "DETACH": _OBJECTS,
    "UNDROP": ("TABLE",),
    "ALTER": ("TABLE", "DATABASE", "NAMED COLLECTION"),
    "RENAME": ("TABLE", "DATABASE", "DICTIONARY", ""),
    "EXCHANGE": ("TABLES", "DICTIONARIES"),
    "TRUNCATE": ("TABLE", "DATABASE", "ALL TABLES FROM", ""),
    "OPTIMIZE": ("TABLE",),
    "DELETE": ("FROM",),
}
# SYSTEM commands take the clause right after their command words, before the table they name; the
# ones a migration may use. Not SYSTEM STOP|START VIEW(S), REFRESH|CANCEL|WAIT VIEW: the engine reads
# `ON` there as a view's name.
_SYSTEM_PHRASES = [
    f"{verb} {what}"
    for verb in ("STOP", "START")
    for what in (
        "MERGES",
        "TTL MERGES",
        "MOVES",
        "FETCHES",
        "REPLICATED SENDS",
        "DISTRIBUTED SENDS",
        "REPLICATION QUEUES",
        "PULLING REPLICATION LOG",
        "CLEANUP",
    )
]
_SYSTEM_PHRASES += ["FLUSH DISTRIBUTED", "FLUSH LOGS", "SYNC REPLICA", "SYNC DATABASE REPLICA"]
_SYSTEM_PHRASES += ["RESTART REPLICA", "RESTORE REPLICA", "RELOAD DICTIONARY", "RELOAD DICTIONARIES"]
SYSTEM_COMMANDS = tuple(tuple(phrase.split()) for phrase in _SYSTEM_PHRASES)
# `ON CLUSTER {cluster}` unquoted: not ClickHouse (a syntax error), but the way templates write it.
_BARE_MACRO = [(Kind.PUNCT, "{"), (Kind.WORD, "cluster"), (Kind.PUNCT, "}")]


@dataclass(frozen=True)
class _Clause:
    """An ``ON CLUSTER name`` the author wrote: token indexes of ON, the name's first token, and the end."""

    on: int
    name: int
    end: int  # exclusive
    macro: bool


def takes_on_cluster(sql: str) -> bool:
    """True when ClickHouse accepts an ON CLUSTER clause in this statement (DDL, some SYSTEM commands).

    False for INSERT, SELECT, SET, EXISTS, SHOW, KILL, WITH ... SELECT, temporary objects and anything
    else: run in cluster mode, such a statement runs where it is sent, as ClickHouse would run it.
    """
    return _position(_statement(tokenize(sql))) is not None


def cluster_form(sql: str, cluster: str | None) -> str:
    """The statement as it runs in cluster mode ``cluster`` (None: one server, or a Replicated database).

    The author's ``ON CLUSTER {cluster}`` (the macro bare, backquoted, double-quoted or as a string)
    names ``cluster``, or goes away with the whitespace before it when there is no cluster; an explicit
    ``ON CLUSTER other`` is the author's choice and stays. Otherwise the clause is added where the
    grammar puts it, when there is a cluster and the statement takes one. Every other byte is kept.
    """
    tokens = _statement(tokenize(sql))
    clause = _written_clause(tokens)
    if clause is not None:
        if not clause.macro:
            return sql
        if cluster is not None:
            return sql[: tokens[clause.name].start] + ident(cluster) + sql[tokens[clause.end - 1].end :]
        return _remove(sql, tokens, clause)
    position = _position(tokens) if cluster is not None else None
    if cluster is None or position is None:
        return sql
    at = tokens[position - 1].end
    rest = sql[at:]
    # A space after the clause keeps it from running into a following word or a parenthesis.
    tail = " " if rest and not rest[0].isspace() and rest[0] != ";" else ""
    return f"{sql[:at]} ON CLUSTER {ident(cluster)}{tail}{rest}"


def _statement(tokens: list[Token]) -> list[Token]:
    """The tokens of the first statement: a trailing ``;`` is not part of it."""
    for index, token in enumerate(tokens):
        if token.kind is Kind.PUNCT and token.value == ";":
            return tokens[:index]
    return tokens


def _written_clause(tokens: list[Token]) -> _Clause | None:
    """The author's ON CLUSTER clause: at paren depth 0, before the statement's query (a JOIN's ON is no clause).

    Looked for anywhere in the statement's head, not only where ``_position`` puts it, because a few
    SYSTEM commands also accept it after their table, and an explicit clause must never get a twin.
    """
    depth = 0
    for index, token in enumerate(tokens):
        if token.kind is Kind.PUNCT and token.value in "()":
            depth += 1 if token.value == "(" else -1
            continue
        if depth:
            continue
        if token.upper() in ("SELECT", "WITH"):
            return None
        if token.upper() != "ON" or _upper(tokens, index + 1) != "CLUSTER" or index + 2 >= len(tokens):
            continue
        name = tokens[index + 2]
        if [(t.kind, t.value) for t in tokens[index + 2 : index + 5]] == _BARE_MACRO:
            return _Clause(index, index + 2, index + 5, macro=True)
        if name.kind in (Kind.WORD, Kind.QUOTED, Kind.STRING):
            return _Clause(
                index, index + 2, index + 3, macro=name.kind is not Kind.WORD and name.value == MACRO
            )
    return None


def _remove(sql: str, tokens: list[Token], clause: _Clause) -> str:
    """``sql`` without the clause and the blanks before it (after it, when a comment precedes it)."""
    start, end = tokens[clause.on].start, tokens[clause.end - 1].end
    gap = sql[tokens[clause.on - 1].end : start]
    if gap and gap.isspace():
        # Only blanks before ON: drop them. A comment there keeps its line end; the blanks after go.
        start -= len(gap)
    else:
        end += len(sql[end:]) - len(sql[end:].lstrip())
    return sql[:start] + sql[end:]


def _upper(tokens: list[Token], index: int) -> str:
    return tokens[index].upper() if index < len(tokens) else ""


def _words(tokens: list[Token], index: int, phrase: tuple[str, ...]) -> bool:
    return all(_upper(tokens, index + offset) == word for offset, word in enumerate(phrase))


def statement_subjects(sql: str) -> tuple[bool, list[str]]:
    """Whether ``sql`` changes a database itself, and the databases it names (those qualifying the
    objects it changes, or the databases themselves).

    The objects are the names the statement acts on — ``db.t`` of ``ALTER TABLE db.t``, both sides of
    each RENAME pair, the table of ``SYSTEM STOP MERGES db.t`` — never a table a view reads. Cluster
    mode needs them: the tables of a Replicated database take no ON CLUSTER, the database itself does.
    """
    head = _head(_statement(tokenize(sql)))
    if head is None:
        return False, []
    tokens, verb, kind, at = head
    starts, _ = _names(tokens, verb, _name(tokens, at), at)
    if kind in ("DATABASE", "ALL TABLES FROM"):
        return True, [tokens[i].value for i in starts]
    return False, [tokens[i].value for i in starts if _name(tokens, i) != i + 1]


def reruns_safely(sql: str) -> bool:
    """Whether sending ``sql`` again to hosts that already ran it changes nothing there.

    True for ``CREATE ... IF NOT EXISTS``, ``DROP ... IF EXISTS`` and SYSTEM STOP|START commands: an
    ON CLUSTER statement that did not finish everywhere can then be sent again to every host. Not for
    RENAME, EXCHANGE, ALTER or a plain CREATE, which fail or act twice where they already ran.
    """
    head = _head(_statement(tokenize(sql)))
    if head is None:
        return False
    tokens, verb, _, at = head
    if verb == "SYSTEM":
        return _upper(tokens, 1) in ("STOP", "START")
    if verb == "CREATE":
        return _words(tokens, at - 3, ("IF", "NOT", "EXISTS"))
    return verb == "DROP" and _words(tokens, at - 2, ("IF", "EXISTS"))


def _head(tokens: list[Token]) -> tuple[list[Token], str, str, int] | None:
    """(tokens, verb, object kind, index of the first object name) of a statement that takes the clause."""
    verb = _upper(tokens, 0)
    if verb == "SYSTEM":
        lengths = [len(phrase) for phrase in SYSTEM_COMMANDS if _words(tokens, 1, phrase)]
        return (tokens, verb, "", 1 + max(lengths)) if lengths else None
    at = 3 if verb == "CREATE" and _words(tokens, 1, ("OR", "REPLACE")) else 1
    kind = next((k for k in _KINDS.get(verb, ()) if _words(tokens, at, tuple(k.split()))), None)
    if kind is None:
        return None
    at += len(kind.split())
    if _words(tokens, at, ("IF", "NOT", "EXISTS")):
        at += 3
    elif _upper(tokens, at) == "IF" and _upper(tokens, at + 1) in ("EXISTS", "EMPTY"):
        at += 2
    if kind == "INDEX":
        index_name = _name(tokens, at)
        at = index_name + 1 if index_name is not None and _upper(tokens, index_name) == "ON" else -1
    return tokens, verb, kind, at


def _position(tokens: list[Token]) -> int | None:
    """Index of the token the clause goes before (``len(tokens)``: at the end), or None: no clause here."""
    head = _head(tokens)
    if head is None:
        return None
    tokens, verb, kind, at = head
    if verb == "SYSTEM":
        return at
    return _after_names(tokens, verb, kind, _name(tokens, at), at)


def _names(tokens: list[Token], verb: str, at: int | None, first: int) -> tuple[list[int], int | None]:
    """Where each object name starts, and the index past them: pairs for RENAME and EXCHANGE, lists
    for DROP and DETACH, one name otherwise (``at`` is past the first name, which starts at ``first``)."""
    separator = {"RENAME": ",", "DROP": ",", "DETACH": ","}.get(verb)
    starts = [first] if at is not None else []
    while at is not None:
        if verb in ("RENAME", "EXCHANGE"):
            joiner = "TO" if verb == "RENAME" else "AND"
            if _upper(tokens, at) != joiner:
                return starts, None
            starts.append(at + 1)
            at = _name(tokens, at + 1)
            if verb == "EXCHANGE":
                return starts, at
        if at is None or separator is None or at >= len(tokens) or tokens[at].value != separator:
            break
        starts.append(at + 1)
        at = _name(tokens, at + 1)
    return starts, at


def _after_names(tokens: list[Token], verb: str, kind: str, at: int | None, first: int) -> int | None:
    """Past the statement's object names and what comes before the clause (UUID, FROM 'path', LIKE)."""
    _, at = _names(tokens, verb, at, first)
    if at is None:
        return None
    strings = {"UUID"} if verb in ("CREATE", "ATTACH", "UNDROP") else set()
    strings |= {"FROM"} if verb == "ATTACH" else set()
    strings |= {"LIKE", "ILIKE"} if kind == "ALL TABLES FROM" else set()
    # `UUID '...'`, ATTACH's `FROM 'path'` and TRUNCATE ALL's `[NOT] LIKE 'pattern'` come before the clause.
    if kind == "ALL TABLES FROM" and _upper(tokens, at) == "NOT":
        at += 1
    if _upper(tokens, at) in strings and at + 1 < len(tokens) and tokens[at + 1].kind is Kind.STRING:
        at += 2
    return at


def _name(tokens: list[Token], at: int) -> int | None:
    """The index after the (possibly qualified, possibly quoted) name at ``at``; None when none is there."""
    if at < 0 or at >= len(tokens) or not tokens[at].is_name:
        return None
    at += 1
    while (
        at + 1 < len(tokens)
        and tokens[at].kind is Kind.PUNCT
        and tokens[at].value == "."
        and tokens[at + 1].is_name
    ):
        at += 2
    return at
