"""The stairway test: every revision up, down and up again, on a throwaway embedded database.

For each revision, in the order ``upgrade heads`` applies them from base (Alembic's order, branches
and merges included), it upgrades that one revision, downgrades that one revision, and upgrades it
again. It checks that the downgrade restores exactly the schema from before the upgrade and the
heads from before it, and that upgrading again reproduces exactly the schema of the first upgrade —
read back from system tables and compared as ``check`` compares, so formatting never counts. Every user
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
    from alembic.script import Script, ScriptDirectory
    from clickhouse_connect.driver.client import Client

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

    script_dir = project.script
    # Alembic's own order for upgrade heads from base: every revision after its parents.
    # (heads: a tuple, as Alembic passes them itself; its annotation says str)
    order = [step.revision for step in script_dir._upgrade_revs("heads", ())]  # type: ignore[arg-type]
    path = keep or Path(tempfile.mkdtemp(prefix="k2-migrate-stairway-"))
    project.settings.url = f"chdb://{path}"
    # Holding a client keeps the engine (and its Kafka consumers) alive between the runs below.
    holder = embedded_client(Target(kind="embedded", path=path))
    catalog = Catalog(holder)
    ignored = SYSTEM_DATABASES | {project.migrations_database}
    results: list[StairResult] = []
    try:
        heads_before: tuple[str, ...] = ()
        for script in order:
            result = StairResult(
                script.revision, down_kept=getattr(script.module, "downgrade_keeps_schema", None)
            )
            results.append(result)
            before = read_schema(catalog, set(catalog.database_names()) - ignored)
            migrate(project, "up", script.revision, progress)
            heads_up = _heads(holder, project.migrations_database)
            databases = set(before) | (set(catalog.database_names()) - ignored)
            before = {
                db: before.get(db) for db in databases
            }  # a database the revision created: absent before
            after_up = read_schema(catalog, databases)
            migrate(project, "down", _down_target(script, heads_up, script_dir), progress)
            if result.down_kept is None:
                result.problems += _diff(
                    "down did not restore the schema", before, read_schema(catalog, databases)
                )
            heads_down = _heads(holder, project.migrations_database)
            if heads_down != heads_before:
                result.problems.append(
                    f"down left the heads at {_named(heads_down)}, not {_named(heads_before)} as before the up"
                )
            migrate(project, "up", script.revision, progress)
            result.problems += _diff(
                "up again differs from the first up", after_up, read_schema(catalog, databases)
            )
            heads_before = _heads(holder, project.migrations_database)
    finally:
        holder.close()
    return results


def _down_target(script: Script, heads: tuple[str, ...], script_dir: ScriptDirectory) -> str:
    """The downgrade target that undoes ``script`` alone, as Alembic names it.

    ``R@-1`` is one step down on R's own branch, whatever other branches are applied. A merge has
    several parents, so that walk is ambiguous; downgrading to a parent undoes what is applied above
    that parent — the merge, and any other applied revision built on that parent — so a parent is
    picked that has no applied descendant but the merge (if none is, the heads check reports it).
    """
    parents = script._versioned_down_revisions
    if len(parents) < 2:
        return f"{script.revision}@-1"
    for parent in parents:
        above = {r.revision for r in script_dir.iterate_revisions(heads, parent) if r.revision != parent}
        if above == {script.revision}:
            return parent
    return parents[0]


def _heads(client: Client, database: str) -> tuple[str, ...]:
    from k2_migrations.state.versions import read_heads

    return read_heads(client, database)


def _named(heads: tuple[str, ...]) -> str:
    return ", ".join(heads) or "base"


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
