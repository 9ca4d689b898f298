"""What a ``k2-migrate`` run did, read back: its ``--json`` run document, its journal, and the plain plan.

The plain plan is the list of statements a plain clickhouse-connect script runs to do the same work
(:mod:`bench.worker` ``replay``), the arm the overhead and pause benchmarks compare k2-migrate with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.processes import BenchError, k2_migrate

PAUSE_BEGINS = "ingestion_pause: begins"
PAUSE_ENDS = "ingestion_pause: ends"


def journal_of_last_run(directory: Path, brokers: str) -> list[dict[str, Any]]:
    """``k2-migrate log --json``: the journal rows of the newest run, oldest first."""
    entries: list[dict[str, Any]] = k2_migrate(
        directory, "log", "--json", "-n", "5000", brokers=brokers
    ).json()["entries"]
    if not entries:
        return []
    newest = entries[0]["run_id"]
    return [e for e in reversed(entries) if e["run_id"] == newest]


def interval(document: Mapping[str, Any], revision: str, name: str = "ingestion_pause") -> float:
    """Seconds of a timed interval of a ``--json`` run document."""
    for item in document["intervals"]:
        if item["revision"] == revision and item["name"] == name:
            return float(item["seconds"])
    raise BenchError(f"the run reported no {name} interval for {revision}")


def interval_freshness(document: Mapping[str, Any], revision: str, name: str = "ingestion_pause") -> str:
    """What the run's summary said of a timed interval's freshness gap: seconds since the last batch
    at its end / the longest gap between batches before it ("-": none reported)."""
    for item in document["intervals"]:
        if item["revision"] == revision and item["name"] == name and item.get("freshness"):
            seen = item["freshness"]
            every = "-" if seen["flush_every_s"] is None else seen["flush_every_s"]
            since = "-" if seen["since_last_s"] is None else seen["since_last_s"]
            return f"{since}/{every}"
    return "-"


def revision_steps(document: Mapping[str, Any], revision: str) -> list[dict[str, Any]]:
    """The steps of one revision in a ``--json`` run document."""
    for item in document["revisions"]:
        if item["revision"] == revision:
            steps: list[dict[str, Any]] = item["steps"]
            return steps
    raise BenchError(f"the run did not apply {revision}")


def steps_between(steps: Sequence[Mapping[str, Any]], begin: str, end: str) -> list[Mapping[str, Any]]:
    """The steps strictly between the one whose operation is ``begin`` and the one that is ``end``."""
    names = [str(s["operation"]) for s in steps]
    first, last = names.index(begin), names.index(end)
    return list(steps[first + 1 : last])


def pause_steps(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The steps of k2_003 inside its ingestion pause."""
    return steps_between(revision_steps(document, "k2_003"), PAUSE_BEGINS, PAUSE_ENDS)


def journal_statements(journal: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], list[str]]:
    """(revision, step) -> the statements the journal says that step executed."""
    statements: dict[tuple[str, int], list[str]] = {}
    for entry in journal:
        if entry["kind"] == "step" and entry["status"] == "done" and entry["sql"]:
            statements[(str(entry["revision"]), int(entry["step"]))] = str(entry["sql"]).split(";\n")
    return statements


def rendered_statements(plan_document: Mapping[str, Any]) -> dict[tuple[str, int], list[str]]:
    """(revision, step) -> the SQL ``k2-migrate plan --json`` renders for that step (what it would run)."""
    return {
        (str(revision["revision"]), int(step["index"])): [str(s) for s in step["sql"]]
        for revision in plan_document["revisions"]
        for step in revision["steps"]
    }


def plain_plan(
    run_document: Mapping[str, Any],
    journal: Sequence[Mapping[str, Any]],
    plan_document: Mapping[str, Any],
    *,
    revision: str | None = None,
    pause_only: bool = False,
) -> list[dict[str, str]]:
    """What a plain script must run to do what a k2-migrate run did, in the same order.

    The statements each step executed come from the journal. The reads that are not journaled but
    belong to the migration's work are added: a guard's ``count()`` of each table before (the SQL
    ``plan`` renders) and after (where the run document says the table went), each ``verify`` query,
    and a wait for each mutation. What is left out is k2-migrate's own bookkeeping: catalog lookups,
    the journal, the lock, captured definitions, the version table and the schema record.
    """
    statements = journal_statements(journal)
    rendered = rendered_statements(plan_document)
    guards: dict[str, list[str]] = {}
    for guard in run_document["guards"]:
        guards.setdefault(str(guard["label"]), []).append(str(guard["moved_to"]))
    items: list[dict[str, str]] = []
    for rev in run_document["revisions"]:
        if revision is not None and rev["revision"] != revision:
            continue
        steps = rev["steps"]
        if pause_only:
            steps = steps_between(steps, PAUSE_BEGINS, PAUSE_ENDS)
        for step in steps:
            key = (str(rev["revision"]), int(step["index"]))
            operation = str(step["operation"])
            label = f"{key[0]} [{key[1]}] {operation}"
            executed = [{"kind": "sql", "sql": sql, "label": label} for sql in statements.get(key, [])]
            if operation.endswith(" together") and len(executed) > 1:
                # k2-migrate drops Kafka tables at the same time, each on a client of its own, and views
                # one by one on its own client (DropObjects): so does the script.
                waiting = [e for e in executed if not e["sql"].startswith("DROP VIEW")]
                if len(waiting) > 1:
                    items.append(
                        {"kind": "together", "sql": json.dumps([e["sql"] for e in waiting]), "label": label}
                    )
                else:
                    items += waiting
                items += [e for e in executed if e["sql"].startswith("DROP VIEW")]
            elif operation.startswith("guard '"):
                items += executed
                items += [
                    {"kind": "query", "sql": sql, "label": label}
                    for sql in rendered.get(key, [])
                    if sql.startswith("SELECT count()")
                ]
            elif operation.startswith("check guard '"):
                name = operation.split("'")[1]
                items += [
                    {"kind": "query", "sql": f"SELECT count() FROM {table}", "label": label}
                    for table in guards.get(name, [])
                ]
                items += executed
            elif operation.startswith("check: "):
                sql = rendered[key][0].split("  -- must return 0")[0]
                items.append({"kind": "query", "sql": sql, "label": label})
            elif operation.startswith("mutation on "):
                items += executed
                database, table = operation.removeprefix("mutation on ").split(":", 1)[0].split(".", 1)
                items.append({"kind": "wait_mutations", "database": database, "table": table, "label": label})
            else:
                items += executed
    return items
