"""Whether ``upgrade head`` has nothing to do, decided without Alembic and without the lock.

Three pure pieces, each answering ``None``/False whenever it cannot be sure, which sends the run down
the normal path (Alembic loads the revisions, the lock is taken, the state is read again under it):

- :func:`read_header`: a revision file's ``revision``, ``down_revision``, ``branch_labels`` and
  ``depends_on`` from its source, with :mod:`ast`, without running it — only when each is one plain
  literal assignment at the top of the module and nothing in the file could bind them otherwise;
- :func:`script_heads`: the heads Alembic's ``ScriptDirectory.get_heads()`` computes from those
  headers (a revision no other names as its ``down_revision``), or None for anything Alembic would
  refuse or that this module does not model (``depends_on``, duplicate ids, a cycle, a missing
  parent, a clashing branch label);
- :func:`noop_verdict`: from the script's heads and what the one unlocked read of the migrations
  database returned (tables, the version record's heads and newest ``seq``, every journal attempt,
  whether a schema record exists) and a second read of the watermarks, whether the database is at
  those heads with nothing in progress — see docs/safety.md, "The no-op fast path".
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

#: The four module attributes Alembic reads from a revision file.
HEADER_NAMES = ("revision", "down_revision", "branch_labels", "depends_on")
#: Characters Alembic refuses in a revision id (``Revision.verify_rev_id``).
ILLEGAL_ID_CHARS = frozenset("@-+:")
#: Names through which module code could bind a header other than by assignment.
_DYNAMIC_NAMES = frozenset({"globals", "locals", "vars", "setattr", "exec", "eval", "__import__", "__dict__"})
#: Statements that may stand at the top of a revision file the fast path reads.
_TOP_LEVEL = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
)

#: The journal's closing statuses of an attempt (``close_attempt``, ``end_revision``): anything else,
#: including a status this release does not know, counts as in progress here.
CLOSED_STATUSES = frozenset({"done", "abandoned", "reverted"})
#: The migrations database's tables and the engines the one-server layout gives them; any other
#: engine (replicated in cluster mode, shared on ClickHouse Cloud, a previous release's MergeTree
#: ``alembic_version``) takes the normal path.
EXPECTED_ENGINES = {
    "alembic_version": "View",
    "k2_migrations_versions": "MergeTree",
    "k2_migrations_journal": "Log",
    "k2_migrations_snapshots": "MergeTree",
}


@dataclass(frozen=True)
class RevisionHeader:
    """What Alembic reads from one revision file to place it in the graph."""

    revision: str
    down_revisions: tuple[str, ...]
    branch_labels: tuple[str, ...]
    depends_on: tuple[str, ...]
    doc: str


def read_header(source: str) -> RevisionHeader | None:
    """The header of a revision file's ``source``; None when it is not certain without running it.

    Certain means: the file parses; each of :data:`HEADER_NAMES` is assigned exactly once, at the top
    level, to a literal (a string, None, or a tuple or list of strings; ``revision`` a string); no
    other statement binds them (``for``, ``with``, ``import ... as``, ``global``, ``del``, augmented
    assignment, a walrus); nothing calls ``globals()``, ``setattr``, ``exec`` and the like; the top
    level holds only imports, definitions and assignments; and ``upgrade`` and ``downgrade`` are
    defined (Alembic's load refuses a file without them, so the normal path must say so).
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    body = list(tree.body)
    # Alembic's Script.doc: the module's docstring, stripped, up to its first blank line.
    # `clean=None` is as false as False: not dedented either.
    written = ast.get_docstring(tree, clean=False)  # pragma: no mutate
    doc = re.split("\n\n", (written or "").strip())[0]
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if not all(isinstance(node, _TOP_LEVEL) for node in body):
        return None
    values: dict[str, object] = {}
    for node in body:
        target, value = _assignment(node)
        if target in HEADER_NAMES:
            if target in values:
                return None
            try:
                if value is None:
                    return None  # annotated, never assigned: Alembic would not find it
                values[target] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None  # computed: only Alembic's import can tell
    if set(values) != set(HEADER_NAMES) or not _bound_only_by_assignment(tree, body):
        return None
    functions = {node.name for node in body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    if not {"upgrade", "downgrade"} <= functions:
        return None
    revision = values["revision"]
    parts = [_ids(values[name]) for name in HEADER_NAMES[1:]]
    if not isinstance(revision, str) or any(part is None for part in parts):
        return None
    down, labels, depends = (part or () for part in parts)
    return RevisionHeader(revision, down, labels, depends, doc)


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    """The one plain name a top-level statement assigns, with its value (an annotation alone: None)."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    return None, None


def _bound_only_by_assignment(tree: ast.Module, body: list[ast.stmt]) -> bool:
    """No binding of a header name but the top-level plain assignments, and no dynamic binding."""
    skip: set[int] = set()
    for node in body:
        if _assignment(node)[0] in HEADER_NAMES:
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target  # type: ignore[attr-defined]
            skip.add(id(target))
    return not any(id(node) not in skip and _may_bind(node) for node in ast.walk(tree))


def _may_bind(node: ast.AST) -> bool:
    """Whether ``node`` binds a header name, or could bind any name at run time."""
    if isinstance(node, ast.Name):
        return node.id in _DYNAMIC_NAMES or (node.id in HEADER_NAMES and not isinstance(node.ctx, ast.Load))
    if isinstance(node, ast.Attribute):
        return node.attr in _DYNAMIC_NAMES | {"modules"}
    if isinstance(node, ast.Global | ast.Nonlocal):
        return bool(set(node.names) & set(HEADER_NAMES))
    if isinstance(node, ast.alias):
        return node.name == "*" or (node.asname or node.name) in HEADER_NAMES
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name in HEADER_NAMES
    return False


def _ids(value: object) -> tuple[str, ...] | None:
    """A header value as Alembic's ``to_tuple`` gives it; None for what this module does not model."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def script_heads(headers: Iterable[RevisionHeader]) -> tuple[str, ...] | None:
    """The heads Alembic computes for these revisions, sorted; None to leave the answer to Alembic.

    A head is a revision no other revision names in its ``down_revision``. None for: no revisions,
    a ``depends_on``, an id Alembic refuses (empty, or with ``@ - + :``), the same id twice, a parent
    not among the revisions, a revision its own parent or named twice as a parent, a branch label
    that repeats or is a revision id, and a cycle.
    """
    revisions = list(headers)
    by_id = {h.revision: h for h in revisions}
    if not revisions or len(by_id) != len(revisions):
        return None
    labels: list[str] = []
    for h in revisions:
        if h.depends_on or not h.revision or ILLEGAL_ID_CHARS & set(h.revision):
            return None
        if len(set(h.down_revisions)) != len(h.down_revisions) or h.revision in h.down_revisions:
            return None
        if any(parent not in by_id for parent in h.down_revisions):
            return None
        labels.extend(h.branch_labels)
    if len(set(labels)) != len(labels) or set(labels) & set(by_id):
        return None
    if _has_cycle(by_id):
        return None
    parents = {parent for h in revisions for parent in h.down_revisions}
    return tuple(sorted(set(by_id) - parents))


def _has_cycle(by_id: dict[str, RevisionHeader]) -> bool:
    """Whether following ``down_revision`` from some revision comes back to it (Kahn's algorithm)."""
    children = {rev: 0 for rev in by_id}
    for h in by_id.values():
        for parent in h.down_revisions:
            children[parent] += 1
    ready = [rev for rev, count in children.items() if count == 0]
    seen = 0
    while ready:
        rev = ready.pop()
        seen += 1
        for parent in by_id[rev].down_revisions:
            children[parent] -= 1
            if children[parent] == 0:
                ready.append(parent)
    return seen != len(by_id)


@dataclass(frozen=True)
class AttemptSummary:
    """One journal attempt as the unlocked read summarises it: the status its rows end on."""

    attempt_id: str
    revision: str
    direction: str
    status: str


@dataclass(frozen=True)
class StateRead:
    """What the one unlocked query read from the migrations database.

    ``record_seq`` and ``journal_rows`` are the watermarks: the newest ``seq`` of the version record
    (read with the heads, from the same parts) and the journal's row count (read with the attempts).
    """

    tables: dict[str, str]
    heads: tuple[str, ...]
    record_seq: int
    journal_rows: int
    attempts: tuple[AttemptSummary, ...]
    schema_recorded: bool


@dataclass(frozen=True)
class Verdict:
    """Whether the run may end here with nothing to do, and if not, why (for ``-v`` and tests)."""

    noop: bool
    reason: str


def layout_difference(tables: dict[str, str]) -> str | None:
    """How the migrations tables (``{name: engine}``) differ from :data:`EXPECTED_ENGINES`; None: not."""
    for table, engine in EXPECTED_ENGINES.items():
        if tables.get(table) != engine:
            return f"{table} is {tables.get(table) or 'missing'}, not {engine}"
    return None


def noop_verdict(
    target: str, wanted: tuple[str, ...] | None, state: StateRead, watermarks_again: tuple[int, int]
) -> Verdict:
    """Whether ``upgrade target`` has nothing to do, from the script's heads and the rows read.

    ``wanted`` is :func:`script_heads` (None: unreadable); ``watermarks_again`` the record's newest
    ``seq`` and the journal's row count read once more after ``state``. The answer is yes only if:
    the target is ``head`` with one head, or ``heads``; the migrations tables are the ones this
    release creates, with their one-server engines; the applied heads are exactly the script's; no
    attempt is in progress; a schema record exists for those heads (the normal path would write one);
    and neither watermark moved (no version change, no journal row while the reads were made).
    """
    if target not in {"head", "heads"}:
        return Verdict(False, f"target {target!r}: only head and heads are decided here")
    if wanted is None:
        return Verdict(False, "the revision files need Alembic to read them")
    if target == "head" and len(wanted) != 1:
        return Verdict(False, f"the revisions have {len(wanted)} heads")
    unexpected = layout_difference(state.tables)
    if unexpected is not None:
        return Verdict(False, unexpected)
    if tuple(sorted(state.heads)) != wanted:
        return Verdict(
            False, f"applied {', '.join(sorted(state.heads)) or 'base'}, wanted {', '.join(wanted)}"
        )
    open_attempts = [a for a in state.attempts if a.status not in CLOSED_STATUSES]
    if open_attempts:
        a = open_attempts[-1]
        return Verdict(False, f"attempt {a.attempt_id} ({a.revision} {a.direction}) is {a.status or 'open'}")
    if not state.schema_recorded:
        return Verdict(False, "no schema record for these heads")
    if watermarks_again != (state.record_seq, state.journal_rows):
        return Verdict(False, "the version record or the journal changed while it was read")
    return Verdict(True, f"at {', '.join(wanted)}, nothing in progress")
