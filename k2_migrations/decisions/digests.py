"""Edited revisions: each applied revision's source digest, recorded with its change of heads,
compared with the digest of its files now.

A revision's digest is sha256 over its ``.py`` file and the ``.sql`` files it runs with
``op.run_sql_file("...")`` (a literal path, relative to the revision file's directory), each with
CRLF read as LF: a checkout that only changed line endings is not an edit. A ``.sql`` file that is
missing counts as such (its absence is part of the digest). A path computed at run time is not
found without running the revision: only the literal ones are covered.

The version record keeps, per row, the digest of the revision the row is about, or ``''`` when the
row says nothing new about the files (a downgrade's rows, rows written before digests existed).
A revision's recorded digest is its newest non-empty one; none recorded means unknown, never edited.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Mapping


def normalised(content: bytes) -> bytes:
    """``content`` with CRLF line endings read as LF."""
    return content.replace(b"\r\n", b"\n")


def source_digest(source: bytes, sql_files: Mapping[str, bytes | None]) -> str:
    """The hex sha256 of a revision file's ``source`` and the SQL files it runs (``{path as named:
    content}``, None for a file that is not there), in the order of their names."""
    digest = hashlib.sha256(normalised(source))
    for name in sorted(sql_files):
        content = sql_files[name]
        digest.update(b"\0file\0" + name.encode() + b"\0")
        digest.update(b"missing" if content is None else b"content\0" + normalised(content))
    return digest.hexdigest()


def sql_files_run(source: str) -> tuple[str, ...]:
    """The paths a revision's source passes as a literal to ``*.run_sql_file(...)``, sorted, once
    each; none for a source that does not parse (the revision cannot run either)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ()
    found: set[str] = set()
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run_sql_file"
        ):
            continue
        given = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "path"), None)
        if isinstance(given, ast.Constant) and isinstance(given.value, str):
            found.add(given.value)
    return tuple(sorted(found))


def applied_revisions(heads: Iterable[str], parents: Mapping[str, tuple[str, ...]]) -> set[str]:
    """The heads and every ancestor ``parents`` (``{revision: its down_revisions}``) reaches."""
    applied: set[str] = set()
    pending = list(heads)
    while pending:
        revision = pending.pop()
        if revision not in applied:
            applied.add(revision)
            pending.extend(parents.get(revision, ()))
    return applied


def edited_revisions(
    recorded: Mapping[str, str],
    current: Mapping[str, str],
    heads: Iterable[str],
    parents: Mapping[str, tuple[str, ...]],
) -> tuple[str, ...]:
    """The applied revisions whose files changed since their digest was recorded, sorted.

    ``recorded`` is each revision's newest non-empty recorded digest, ``current`` the digest of each
    revision file the project has now, ``heads`` the applied heads and ``parents`` the project's
    graph. A revision is edited when it is applied (a head or an ancestor of one), the project has
    it, and a digest was recorded for it that is not its current one; ``''`` or no digest recorded
    is unknown, and a revision the project does not have is left to the commands that say so.
    """
    return tuple(
        sorted(
            revision
            for revision in applied_revisions(heads, parents)
            if recorded.get(revision, "") not in {"", current.get(revision, recorded.get(revision))}
        )
    )
