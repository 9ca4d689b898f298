"""The stairway test: every revision up, down and up again, on a throwaway embedded database.

For each revision in order it checks that the downgrade restores exactly the schema from before
the upgrade, and that upgrading again reproduces exactly the schema of the first upgrade — read
back from system tables and compared as ``check`` compares, so formatting never counts. Every user
database is compared, so a database a revision creates must be gone after its downgrade. Guards and
checks inside the revisions run as in production. No server is needed: a user can test a new
revision before a deploy.

A revision whose downgrade leaves the schema in place by design (a baseline that adopts a schema
it never created) says so, with the reason, in a module attribute::

    downgrade_keeps_schema = "the baseline adopts the platform's schema; it never owned it"

Its downgrade is then not compared (the result says so and why); the up-again comparison still is.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from k2_migrations.config import Target
from k2_migrations.errors import DriftDetected

if TYPE_CHECKING:
    from k2_migrations.commands.project import Project
    from k2_migrations.introspection.shape import Shape
    from k2_migrations.output.progress import Progress


#: Databases of the engine itself, never a revision's.
SYSTEM_DATABASES = frozenset(
    {"system", "information_schema", "INFORMATION_SCHEMA", "_temporary_and_external_tables"}
)


@dataclass
class StairResult:
    revision: str
    problems: list[str] = field(default_factory=list)
    #: Why the downgrade was not compared (the revision's ``downgrade_keeps_schema``), if it was not.
    down_kept: str | None = None


def stairway(project: Project, progress: Progress, keep: Path | None = None) -> list[StairResult]:
    from k2_migrations.backends.embedded import embedded_client
    from k2_migrations.commands.migrate import migrate
    from k2_migrations.introspection.catalog import Catalog
    from k2_migrations.introspection.shape import read_schema

    scripts = list(reversed(list(project.script.walk_revisions())))
    path = keep or Path(tempfile.mkdtemp(prefix="k2-migrate-stairway-"))
    project.settings.url = f"chdb://{path}"
    # Holding a client keeps the engine (and its Kafka consumers) alive between the runs below.
    holder = embedded_client(Target(kind="embedded", path=path))
    catalog = Catalog(holder)
    ignored = SYSTEM_DATABASES | {project.migrations_database}
    results: list[StairResult] = []
    try:
        previous = "base"
        for script in scripts:
            result = StairResult(
                script.revision, down_kept=getattr(script.module, "downgrade_keeps_schema", None)
            )
            results.append(result)
            before = read_schema(catalog, set(catalog.database_names()) - ignored)
            migrate(project, "up", script.revision, progress)
            databases = set(before) | (set(catalog.database_names()) - ignored)
            before = {
                db: before.get(db) for db in databases
            }  # a database the revision created: absent before
            after_up = read_schema(catalog, databases)
            migrate(project, "down", previous, progress)
            if result.down_kept is None:
                result.problems += _diff(
                    "down did not restore the schema", before, read_schema(catalog, databases)
                )
            migrate(project, "up", script.revision, progress)
            result.problems += _diff(
                "up again differs from the first up", after_up, read_schema(catalog, databases)
            )
            previous = script.revision
    finally:
        holder.close()
    return results


def _diff(
    what: str, expected: dict[str, dict[str, Shape] | None], live: dict[str, dict[str, Shape] | None]
) -> list[str]:
    from k2_migrations.introspection.shape import diff_schema

    return [f"{what}: {d.describe()}" for d in diff_schema(expected, live)]


def raise_on_problems(results: list[StairResult]) -> None:
    bad = [r for r in results if r.problems]
    if bad:
        raise DriftDetected(
            "stairway failed: " + "; ".join(f"{r.revision}: {p}" for r in bad for p in r.problems)
        )
