"""Running the rules: which files, every rule over all of them, waivers applied, findings in order.

ClickHouse has no transactional DDL, so k2-migrations makes a run safe with idempotent operations,
row-count guards and a journal. A revision that goes around them fails only at run time, on
production data, often half-applied; these checks find such code in the source, in review and CI.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from k2_migrations.authoring.lint import waivers
from k2_migrations.authoring.lint.model import Finding, Rule
from k2_migrations.authoring.lint.source import Hit, Revision
from k2_migrations.authoring.lint.sqlfiles import SqlFile, run_by
from k2_migrations.errors import UsageError

__all__ = ["ALL_RULES", "RULES", "Finding", "Rule", "lint_paths", "lint_source"]

ALL_RULES: tuple[Rule, ...] = (*waivers.FAMILY_RULES, *waivers.RULES)
#: Each rule's id and what it flags, for the CLI and the docs.
RULES: dict[str, str] = {rule.id: rule.what for rule in ALL_RULES}


def lint_paths(paths: Sequence[Path]) -> list[Finding]:
    """Lint revision files and directories of them, as one set: the Kafka rules compare across files.

    A directory contributes its ``*.py`` files, not its subdirectories (Alembic's default
    ``version_locations`` layout) and not ``__init__.py`` (a package marker, not a revision), and
    its ``*.sql`` files. A file named explicitly is linted whatever its name: as SQL when it ends in
    ``.sql``, else as a revision. The SQL files the revisions run (``op.run_sql_file``) are linted
    too, wherever they are. Findings come file by file in the order given (a directory's files
    sorted by name; then the SQL files revisions run that were not among them), each file's by line.

    Raises :class:`~k2_migrations.errors.UsageError` for a path that does not exist or cannot be
    read: that is a mistake in the command, not a finding about a revision.
    """
    files = _files(paths)
    revisions = [_read(path) for path in files if path.suffix != ".sql"]
    named = [path for path in files if path.suffix == ".sql"]
    seen = {path.resolve() for path in named}
    for revision in revisions:
        if revision.tree is None:
            continue
        for _, path in run_by(revision):
            if path.is_file() and path.resolve() not in seen:
                seen.add(path.resolve())
                named.append(path)
    return _run(revisions, [SqlFile.read(path) for path in named])


def lint_source(path: Path, source: str) -> list[Finding]:
    """Lint one revision's source text (``path`` is only used to name it in the findings).

    The Kafka rules compare this file's Kafka tables with one another only; use :func:`lint_paths`
    to compare revisions with each other.
    """
    return _run([Revision.read(path, source)], [])


def _run(revisions: list[Revision], sql_files: list[SqlFile]) -> list[Finding]:
    paths = [r.path for r in revisions] + [f.path for f in sql_files]
    hits: dict[Path, list[Hit]] = {path: [] for path in paths}
    for rule in ALL_RULES:
        for hit in rule.check(revisions, sql_files):
            hits[hit.path].append(hit)
    for sql_file in sql_files:
        hits[sql_file.path].extend([*sql_file.hits(), *waivers.problems(sql_file.path, sql_file.waivers)])
    fixes = {rule.id: rule.fix for rule in ALL_RULES}
    findings: list[Finding] = []
    for revision in revisions:
        found = waivers.apply(hits.pop(revision.path, []), revision.waivers if revision.tree else [], fixes)
        findings.extend(found)
    for sql_file in sql_files:
        findings.extend(waivers.apply(hits.pop(sql_file.path, []), sql_file.waivers, fixes))
    return findings


def _files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in [*path.glob("*.py"), *path.glob("*.sql")]
                if p.is_file() and p.name != "__init__.py"
            )
        elif path.is_file():
            found = [path]
        else:
            raise UsageError(
                f"lint: {path} is neither a file nor a directory; name revision files, .sql files or versions/"
            )
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files


def _read(path: Path) -> Revision:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"lint: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return Revision.read(path, data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        fix = "save it as UTF-8 (Python's default)"
        return Revision(path, "", syntax=Hit(path, "syntax", line, line, "the file is not UTF-8 text", fix))
