"""Walking a revision's Python tree: scopes in evaluation order, names bound once, string expressions."""

from __future__ import annotations

import ast
from collections.abc import Iterator

Scope = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def op_method(call: ast.Call, names: set[str]) -> str | None:
    func = call.func
    if not isinstance(func, ast.Attribute):
        return None
    owner = func.value
    if isinstance(owner, ast.Name) and owner.id in names:
        return func.attr
    if (
        isinstance(owner, ast.Attribute)
        and owner.attr == "op"
        and isinstance(owner.value, ast.Name)
        and owner.value.id == "alembic"
    ):
        return func.attr
    return None


def scope_walk(scope: Scope) -> Iterator[ast.AST]:
    """The nodes of a scope in evaluation order (children first), not entering nested definitions."""
    for statement in scope.body:
        if not isinstance(statement, _NESTED):
            yield from _postorder(statement)


def _postorder(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, _NESTED):
            yield from _postorder(child)
    yield node


def bindings(scope: Scope) -> dict[str, ast.expr | None]:
    """Each name bound in the scope: its value where it is bound exactly once by ``name = value``, else None."""
    counts: dict[str, int] = {}
    values: dict[str, ast.expr] = {}
    if not isinstance(scope, ast.Module):
        arguments = scope.args
        parameters = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        parameters += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
        for parameter in parameters:
            counts[parameter.arg] = counts.get(parameter.arg, 0) + 1
    for statement in scope.body:
        if isinstance(statement, _NESTED):
            counts[statement.name] = counts.get(statement.name, 0) + 1
    for node in scope_walk(scope):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            counts[node.id] = counts.get(node.id, 0) + 1
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                counts[bound] = counts.get(bound, 0) + 1
        elif (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            values[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values[node.target.id] = node.value
    return {name: values.get(name) if count == 1 else None for name, count in counts.items()}


def string_nodes(tree: ast.Module) -> Iterator[ast.expr]:
    def visit(node: ast.AST) -> Iterator[ast.expr]:
        if isinstance(node, ast.Expr) and _is_string(node.value):
            return
        if isinstance(node, ast.expr) and _is_string(node):
            yield node
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    return visit(tree)


def _is_string(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_string(node.left) or _is_string(node.right)
    return False
