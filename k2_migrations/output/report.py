"""What a run prints: the human summary and the ``--json`` document.

Both are built from the same :class:`~k2_migrations.engine.results.RunResult`, so the text and the JSON
never disagree. Every string passes through :func:`~k2_migrations.config.mask_secrets`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from k2_migrations.config import mask_secrets

if TYPE_CHECKING:
    from k2_migrations.engine.results import RunRecords, RunResult


def run_document(result: RunResult) -> dict[str, Any]:
    rt = result.runtime
    return {
        "ok": True,
        "command": result.command,
        "target": result.target,
        "url": result.url,
        "from": list(result.heads_before),
        "to": list(result.heads_after),
        "elapsed_s": round(result.elapsed_s, 3),
        "lock_broken": result.lock_broken,
        "revisions": _revisions(rt),
        "guards": [
            {
                "label": g.label,
                "table": g.table,
                "moved_to": g.moved_to,
                "before": g.before,
                "after": g.after,
                "ok": g.ok,
                "inserted": g.inserted,
                "lost": g.lost,
                "dropped_by_step": g.dropped.step if g.dropped else None,
            }
            for g in rt.guard_results
        ],
        "checks": [{"name": c.name, "violations": c.violations} for c in rt.checks],
        "intervals": [
            {
                "revision": revision,
                "name": name,
                "seconds": round(seconds, 3),
                "freshness": asdict(rt.freshness[(revision, name)])
                if (revision, name) in rt.freshness
                else None,
            }
            for (revision, name), seconds in rt.intervals.items()
        ],
    }


def _revisions(rt: RunRecords) -> list[dict[str, Any]]:
    return [
        {
            "revision": r.revision,
            "direction": r.direction,
            "description": r.description,
            "resumed": r.resumed,
            "reverted": r.reverted,
            "elapsed_s": round(r.elapsed_s, 3),
            "steps": [
                {
                    "index": s.index,
                    "operation": s.operation,
                    "status": s.status,
                    "elapsed_ms": round(s.elapsed_ms, 1),
                    "note": s.note,
                    "sql": s.sql,
                    "guards": s.guards,
                }
                for s in r.steps
            ],
        }
        for r in rt.revisions
    ]


def run_text(result: RunResult) -> str:
    rt = result.runtime
    lines: list[str] = []
    before = ", ".join(result.heads_before) or "base"
    after = ", ".join(result.heads_after) or "base"
    if not rt.revisions:
        lines.append(f"Nothing to do: {result.url} is at {after}.")
    else:
        lines.append(f"{result.command}grade of {result.url}: {before} -> {after} in {result.elapsed_s:.2f}s")
    if result.lock_broken:
        lines.append(f"  broke a stale lock held by {result.lock_broken}")
    for revision in rt.revisions:
        done = sum(1 for s in revision.steps if s.status == "done")
        skipped = sum(1 for s in revision.steps if s.status == "skipped")
        how = (
            " (reverting an interrupted run)"
            if revision.reverted
            else (" (resumed)" if revision.resumed else "")
        )
        extra = f", {skipped} already done" if skipped else ""
        lines.append(
            f"  {revision.revision} {revision.direction}{how}: {done} step(s){extra}, "
            f"{revision.elapsed_s:.2f}s — {revision.description}"
        )
    if rt.guard_results:
        lines.append("Guards (rows before -> after):")
        width = max(len(g.moved_to) for g in rt.guard_results)
        for g in rt.guard_results:
            mark = "ok" if g.ok else "MISMATCH"
            after = "missing" if g.after < 0 else f"{g.after:,}"
            row = f"  {g.label:<8} {g.moved_to:<{width}}  {g.before:>12,} -> {after:>12}  {mark}"
            if g.dropped is not None:
                how = " (allow_rows)" if g.dropped.allow_rows else ""
                row += f": dropped by step {g.dropped.step}{how} with {g.dropped.rows:,} rows"
            elif g.after >= 0:
                row += f": {g.accounting}"
            lines.append(row)
    for check in rt.checks:
        lines.append(
            f"Check {check.name}: {'ok' if not check.violations else f'{check.violations} violations'}"
        )
    for (revision_id, name), seconds in rt.intervals.items():
        seen = rt.freshness.get((revision_id, name))
        freshness = f"; freshness: {seen.describe()}" if seen is not None else ""
        lines.append(f"{name.replace('_', ' ').capitalize()} ({revision_id}): {seconds:.3f}s{freshness}")
    return mask_secrets("\n".join(lines))


def plan_document(direction: str, heads: tuple[str, ...], target: str, rt: RunRecords) -> dict[str, Any]:
    return {
        "ok": True,
        "direction": direction,
        "from": list(heads),
        "target": target,
        "revisions": _revisions(rt),
    }


def plan_text(direction: str, heads: tuple[str, ...], target: str, rt: RunRecords) -> str:
    current = ", ".join(heads) or "base"
    if not rt.revisions:
        return f"Nothing to do: the database is at {current}."
    lines = [
        f"Plan: {direction}grade from {current} to {target} ({len(rt.revisions)} revision(s)); nothing was run."
    ]
    for revision in rt.revisions:
        lines.append(f"\n{revision.revision} ({revision.direction}): {revision.description}")
        for step in revision.steps:
            lines.append(f"  {step.index}. {step.operation}")
            for statement in step.sql:
                for line in statement.splitlines():
                    lines.append(f"       {line}")
            for guard in step.guards:
                lines.append(f"       guard: {guard}")
    return mask_secrets("\n".join(lines))
