"""The stairway test: every revision up, down and up again, on a throwaway embedded database.

For each revision in order it checks that the downgrade restores exactly the schema from before
the upgrade, and that upgrading again reproduces exactly the schema of the first upgrade — read
back from system tables and compared as ``check`` compares, so formatting never counts. Guards
and checks inside the revisions run as in production. No server is needed: a user can test a new
revision before a deploy.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from k2_migrations.config import Target
from k2_migrations.errors import DriftDetected

if TYPE_CHECKING:
    from k2_migrations.core.runner import Project
    from k2_migrations.core.runtime import Progress
    from k2_migrations.core.shape import Shape


@dataclass
class StairResult:
    revision: str
    problems: list[str] = field(default_factory=list)


def stairway(project: Project, progress: Progress, keep: Path | None = None) -> list[StairResult]:
    from k2_migrations.backends.embedded import embedded_client
    from k2_migrations.core.catalog import Catalog
    from k2_migrations.core.runner import migrate
    from k2_migrations.core.shape import read_schema

    revisions = [script.revision for script in reversed(list(project.script.walk_revisions()))]
    path = keep or Path(tempfile.mkdtemp(prefix="k2-migrate-stairway-"))
    project.settings.url = f"chdb://{path}"
    # Holding a client keeps the engine (and its Kafka consumers) alive between the runs below.
    holder = embedded_client(Target(kind="embedded", path=path))
    catalog = Catalog(holder)
    results: list[StairResult] = []
    try:
        previous = "base"
        databases: set[str] = set()
        for revision in revisions:
            result = StairResult(revision)
            results.append(result)
            before = read_schema(catalog, databases)
            up = migrate(project, "up", revision, progress)
            databases |= up.runtime.databases - {project.migrations_database}
            after_up = read_schema(catalog, databases)
            migrate(project, "down", previous, progress)
            result.problems += _diff(
                "down did not restore the schema", before, read_schema(catalog, databases)
            )
            migrate(project, "up", revision, progress)
            result.problems += _diff(
                "up again differs from the first up", after_up, read_schema(catalog, databases)
            )
            previous = revision
    finally:
        holder.close()
    return results


def _diff(
    what: str, expected: dict[str, dict[str, Shape] | None], live: dict[str, dict[str, Shape] | None]
) -> list[str]:
    from k2_migrations.core.shape import diff_schema

    return [f"{what}: {d.describe()}" for d in diff_schema(expected, live)]


def raise_on_problems(results: list[StairResult]) -> None:
    bad = [r for r in results if r.problems]
    if bad:
        raise DriftDetected(
            "stairway failed: " + "; ".join(f"{r.revision}: {p}" for r in bad for p in r.problems)
        )
