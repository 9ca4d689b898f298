"""The revision as a whole: a file that parses, an ``upgrade()`` that does something, a ``downgrade()``.

``upgrade()`` and ``downgrade()`` "do nothing" when their body is only ``pass``/``...`` (comments are
not code: ``k2-migrate revision`` writes its examples as comments above a ``pass``). A docstring
saying why makes that a decision instead of an unfinished revision. A merge revision (whose
``down_revision`` is a tuple) exists to join heads, so empty bodies are its normal form.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence

from k2_migrations.authoring.lint.model import Rule, each_revision
from k2_migrations.authoring.lint.source import Hit, Revision, is_constant
from k2_migrations.authoring.lint.sqlfiles import SqlFile

_Function = ast.FunctionDef | ast.AsyncFunctionDef


def _syntax(revisions: Sequence[Revision], sql_files: Sequence[SqlFile]) -> Iterator[Hit]:
    """A revision that is no Python (a SQL file's own ``syntax`` finding comes with its statements)."""
    for revision in revisions:
        if revision.syntax is not None:
            yield revision.syntax


def _does_nothing(function: _Function) -> bool:
    body = function.body[1:] if ast.get_docstring(function) is not None else function.body
    return all(
        isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and is_constant(s.value, Ellipsis)) for s in body
    )


def _says_why(function: _Function) -> bool:
    return bool((ast.get_docstring(function) or "").strip())


def _assigned(tree: ast.Module, name: str) -> ast.expr | None:
    """The value of the last module-level ``name = ...`` or ``name: type = ...`` (what Alembic reads)."""
    value: ast.expr | None = None
    for node in tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            value = node.value
    return value


def _entries(revision: Revision) -> tuple[_Function | None, _Function | None, bool] | None:
    """(upgrade, downgrade, is a merge) of a revision; None for a file that is not one (a helper module)."""
    assert revision.tree is not None
    tree = revision.tree
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    upgrade, downgrade = functions.get("upgrade"), functions.get("downgrade")
    if upgrade is None and _assigned(tree, "revision") is None:
        return None
    down = _assigned(tree, "down_revision")
    merge = isinstance(down, ast.Tuple | ast.List) and len(down.elts) > 1
    return upgrade, downgrade, merge


def _no_downgrade(revision: Revision) -> Iterator[Hit]:
    entries = _entries(revision)
    if entries is None:
        return
    upgrade, downgrade, merge = entries
    if downgrade is None:
        line = upgrade.lineno if upgrade is not None else 1
        message = "the revision has no downgrade(): k2-migrate downgrade cannot go below it"
        yield Hit(revision.path, "no-downgrade", line, line, message)
        return
    if not _does_nothing(downgrade) or _says_why(downgrade):
        return
    if upgrade is not None and _does_nothing(upgrade) and (merge or not _says_why(upgrade)):
        return  # a merge joining heads, or the template not written yet: empty-revision says so
    yield revision.hit(
        "no-downgrade",
        downgrade,
        "downgrade() does nothing and does not say why",
        "undo upgrade() in reverse order, or give downgrade() a docstring saying why nothing needs undoing",
    )


def _empty_revision(revision: Revision) -> Iterator[Hit]:
    entries = _entries(revision)
    if entries is None:
        return
    upgrade, downgrade, merge = entries
    if upgrade is None or merge or not _does_nothing(upgrade) or _says_why(upgrade):
        return
    if downgrade is not None and _does_nothing(downgrade) and not _says_why(downgrade):
        message = "upgrade() and downgrade() do nothing yet: the revision is still the template k2-migrate revision wrote"
    else:
        message = "upgrade() does nothing and does not say why"
    yield revision.hit("empty-revision", upgrade, message)


RULES = (
    Rule(
        "syntax",
        "revisions",
        "the file is not valid Python, so nothing else in it was checked",
        "fix the Python syntax; nothing else in this file was checked",
        _syntax,
        waivable=False,
    ),
    Rule(
        "no-downgrade",
        "revisions",
        "no downgrade(), or one that does nothing without a docstring saying why",
        "add downgrade() undoing upgrade() in reverse order, or one whose docstring says why nothing needs undoing",
        each_revision(_no_downgrade),
    ),
    Rule(
        "empty-revision",
        "revisions",
        "an upgrade() that does nothing and does not say why (a new revision not written yet)",
        "write upgrade() with the operations on op (docs/authoring.md) and downgrade() undoing them in "
        "reverse order; give an upgrade() meant to do nothing a docstring saying why, or delete the file",
        each_revision(_empty_revision),
    ),
)
