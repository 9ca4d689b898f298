"""A revision file as the checks read it: parsed with :mod:`ast`, never imported or executed.

Linting must not run a revision's module-level code or need its imports to resolve, so what can be
read is limited to string literals and f-strings (an f-string's ``{expressions}`` are unknown; its
constant text is read), names bound once to such strings (module constants, locals), and the calls
made on Alembic's ``op``. Whatever comes from a function call — such as the DDL of
:mod:`k2_migrations.k2.baseline_schema` — cannot be read and never produces a finding: a check that
guessed would cry wolf on correct revisions.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from k2_migrations.authoring.lint.sql import Statement, read_sql
from k2_migrations.authoring.lint.walk import Scope, bindings, op_method, scope_walk, string_nodes

#: Stands, inside folded text, for the part of an f-string (or concatenation) whose value is unknown:
#: a plain identifier, so the SQL around it still tokenizes (``{db}.t`` reads as a two-part name).
UNKNOWN = "__k2_lint_unknown__"


@dataclass(frozen=True)
class Hit:
    """A finding before waivers: it keeps the lines of the offending code, where a waiver may sit.

    ``fix`` is None when the rule's own fix says it all.
    """

    path: Path
    rule: str
    line: int
    last_line: int
    message: str
    fix: str | None = None


@dataclass(frozen=True)
class Waiver:
    """A ``# k2-lint`` comment: the rules it names (none if it is not a waiver) and its reason, if any."""

    line: int
    rules: tuple[str, ...]
    reason: str | None


@dataclass(frozen=True)
class OpCall:
    """A call ``op.method(...)`` on Alembic's op, in the scope (module or function) that makes it."""

    node: ast.Call
    method: str
    scope: Scope


@dataclass
class Revision:
    """One file: its parse tree (None when it does not parse, with ``syntax`` saying why) and what the
    checks share: the op calls in evaluation order, the string expressions and their SQL."""

    path: Path
    source: str
    tree: ast.Module | None = None
    syntax: Hit | None = None
    _sql: dict[str, list[Statement] | None] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, path: Path, source: str) -> Revision:
        try:
            tree = ast.parse(source, filename=str(path))
        except SyntaxError as exc:
            line = exc.lineno or 1
            fix = "fix the Python syntax; nothing else in this file was checked"
            return cls(
                path, source, syntax=Hit(path, "syntax", line, line, f"does not parse: {exc.msg}", fix)
            )
        except ValueError as exc:  # e.g. a NUL byte in the source
            return cls(
                path,
                source,
                syntax=Hit(path, "syntax", 1, 1, f"does not parse: {exc}", "fix the file's content"),
            )
        return cls(path, source, tree)

    # -- what the checks share

    @cached_property
    def functions(self) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
        """Functions by name; a module-level one wins over a nested one of the same name."""
        assert self.tree is not None
        found = {n.name: n for n in self.tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.setdefault(node.name, node)
        return found

    @cached_property
    def scopes(self) -> list[Scope]:
        assert self.tree is not None
        defs = [n for n in ast.walk(self.tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        return [self.tree, *defs]

    @cached_property
    def calls(self) -> dict[int, list[ast.Call]]:
        """Every call of each scope (by ``id``), in evaluation order, not entering nested definitions."""
        return {id(s): [n for n in scope_walk(s) if isinstance(n, ast.Call)] for s in self.scopes}

    @cached_property
    def op_calls(self) -> list[OpCall]:
        names = self._op_names
        found: list[OpCall] = []
        for scope in self.scopes:
            for call in self.calls[id(scope)]:
                method = op_method(call, names)
                if method is not None:
                    found.append(OpCall(call, method, scope))
        return found

    def op_method(self, call: ast.Call) -> str | None:
        """``name`` for a call ``op.name(...)`` on Alembic's op (under whatever name it was imported)."""
        return op_method(call, self._op_names)

    @cached_property
    def strings(self) -> list[tuple[ast.expr, str]]:
        """Every maximal string expression with its literal text, skipping documentation (a string that
        is a whole statement). Names are not followed: a string counts where it is written."""
        assert self.tree is not None
        found: list[tuple[ast.expr, str]] = []
        for node in string_nodes(self.tree):
            text = self._fold(node, None, 0)
            if text is not None:
                found.append((node, text))
        return found

    @cached_property
    def waivers(self) -> list[Waiver]:
        return list(_waivers(self.source))

    def sql(self, text: str) -> list[Statement] | None:
        """The statements of ``text``; None when it is no SQL any ClickHouse could read (prose, say)."""
        if text not in self._sql:
            self._sql[text] = read_sql(text)
        return self._sql[text]

    def text(self, node: ast.expr | None, scope: Scope) -> str | None:
        """The text of an argument: a string expression, or a name bound once to one in ``scope``."""
        return None if node is None else self._fold(node, scope, 0)

    def hit(self, rule: str, node: ast.AST, message: str, fix: str | None = None) -> Hit:
        line = getattr(node, "lineno", 1)
        return Hit(self.path, rule, line, getattr(node, "end_lineno", None) or line, message, fix)

    # -- folding strings

    @cached_property
    def _op_names(self) -> set[str]:
        assert self.tree is not None
        names = {"op"}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module == "alembic":
                names.update(alias.asname or alias.name for alias in node.names if alias.name == "op")
        return names

    @cached_property
    def _bindings(self) -> dict[int, dict[str, ast.expr | None]]:
        return {id(s): bindings(s) for s in self.scopes}

    def _fold(self, node: ast.expr, scope: Scope | None, depth: int) -> str | None:
        """The text of a string expression, unknown parts as UNKNOWN; None if it is not one.

        With a ``scope``, names bound once to a string are followed (an argument of an ``op`` call);
        without, only the literal text counts (a string seen where it is written).
        """
        if depth > 10:
            return None
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.JoinedStr):
            parts: list[str] = []
            for value in node.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    parts.append(value.value)
                    continue
                inner = None
                if scope is not None and isinstance(value, ast.FormattedValue) and value.format_spec is None:
                    inner = self._fold(value.value, scope, depth + 1)
                parts.append(inner if inner is not None else UNKNOWN)
            return "".join(parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left = self._fold(node.left, scope, depth + 1)
            right = self._fold(node.right, scope, depth + 1)
            if left is None and right is None:
                return None
            return (UNKNOWN if left is None else left) + (UNKNOWN if right is None else right)
        if scope is None:
            return None
        if isinstance(node, ast.Name):
            bound = self._resolve(node.id, scope)
            return None if bound is None else self._fold(bound[0], bound[1], depth + 1)
        if isinstance(node, ast.Call) and not node.keywords:
            func = node.func
            callee = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if callee in ("text", "dedent") and len(node.args) == 1:  # sqlalchemy.text, textwrap.dedent
                return self._fold(node.args[0], scope, depth + 1)
            if callee in ("strip", "lstrip", "rstrip") and not node.args and isinstance(func, ast.Attribute):
                return self._fold(func.value, scope, depth + 1)
        return None

    def _resolve(self, name: str, scope: Scope) -> tuple[ast.expr, Scope] | None:
        assert self.tree is not None
        for where in (scope, self.tree):
            bindings = self._bindings[id(where)]
            if name in bindings:
                value = bindings[name]
                return None if value is None else (value, where)
        return None


# -- call arguments ------------------------------------------------------------------------------


def argument(call: ast.Call, index: int, name: str) -> ast.expr | None:
    """The argument given by keyword ``name`` or at ``index`` (None when a ``*args`` hides positions)."""
    found = keyword(call, name)
    if found is not None:
        return found
    positional = [a for a in call.args if not isinstance(a, ast.Starred)]
    return positional[index] if index < len(positional) and len(positional) == len(call.args) else None


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_constant(node: ast.expr | None, *values: object) -> bool:
    return isinstance(node, ast.Constant) and any(node.value is v for v in values)


def opaque(text: str) -> bool:
    """True when nothing of the text is known (e.g. ``f"{ddl}"``)."""
    return not text.replace(UNKNOWN, "").strip()


def shown(text: str) -> str:
    """Folded text as a message shows it: an unknown part as ``{…}``."""
    return text.replace(UNKNOWN, "{…}")


def shown_name(database: str | None, name: str) -> str:
    """``database.name`` (or ``name`` when the database is unknown) as a message shows it."""
    return shown(f"{database}.{name}" if database else name)


_MENTION = re.compile(r"#\s*k2-lint\b", re.IGNORECASE)
_WAIVER = re.compile(r"#\s*k2-lint:\s*allow\b(?P<rules>[^#]*?)(?:--(?P<reason>.*))?$")


def _waivers(source: str) -> Iterator[Waiver]:
    """Every ``# k2-lint`` comment. Comments come from Python's tokenizer, so text in strings never counts."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return
    for token in tokens:
        if token.type != tokenize.COMMENT or not _MENTION.match(token.string):
            continue
        match = _WAIVER.match(token.string)
        if match is None:  # meant as a waiver but not one: say so rather than silently waive nothing
            yield Waiver(token.start[0], (), None)
            continue
        rules = tuple(r for r in re.split(r"[\s,]+", match.group("rules").strip()) if r)
        reason = (match.group("reason") or "").strip() or None
        yield Waiver(token.start[0], rules, reason)
