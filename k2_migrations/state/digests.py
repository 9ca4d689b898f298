"""The source digest of a revision file as it is on disk now (see :mod:`k2_migrations.decisions.digests`)."""

from __future__ import annotations

from pathlib import Path

from k2_migrations.decisions.digests import source_digest, sql_files_run


def revision_digest(path: str | Path) -> str:
    """The digest of the revision file at ``path`` and the SQL files it runs, read now."""
    file = Path(path)
    source = file.read_bytes()
    sql: dict[str, bytes | None] = {}
    for name in sql_files_run(source.decode("utf-8", errors="replace")):
        given = Path(name)
        try:
            sql[name] = (given if given.is_absolute() else file.resolve().parent / given).read_bytes()
        except OSError:
            sql[name] = None
    return source_digest(source, sql)
