"""Which hosts of a cluster are behind: from an ON CLUSTER statement's result, or the DDL queue.

A host is done only when it reported status 0. One that failed reported an error code; one that
neither finished nor failed within ``distributed_ddl_task_timeout`` reported no status (NULL) — it
is behind, never done: its task stays queued and may still run, or fail, later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: ``system.distributed_ddl_queue`` statuses of a task that a host has finished with.
FINISHED_STATUSES = frozenset({"Finished", "Removing"})


@dataclass(frozen=True)
class HostResult:
    """One host's outcome of an ON CLUSTER statement, as the engine reported it."""

    host: str
    #: The error code (0: done), or None: not finished within the timeout.
    status: int | None
    error: str = ""

    @property
    def done(self) -> bool:
        return self.status == 0

    @property
    def late(self) -> bool:
        return self.status is None

    @property
    def failed(self) -> bool:
        return not self.done and not self.late

    @property
    def reason(self) -> str:
        return " ".join(self.error.split())[:200] or f"code {self.status}"

    def describe(self) -> str:
        if self.late:
            return "behind (not finished in time; the task stays queued there)"
        return "done" if self.done else f"failed: {self.reason}"


def host_results(columns: Iterable[str], rows: Iterable[Iterable[object]]) -> list[HostResult]:
    """Each host's outcome from an ON CLUSTER statement's result (``host``, ``port``, ``status``, ``error``;
    inside a Replicated database ``shard``/``replica`` name the host instead)."""
    names = list(columns)
    out = []
    for raw in rows:
        # Every row has a value per column: any `strict` (mutmut's equivalent mutants) reads them alike.
        row = dict(zip(names, raw, strict=False))  # pragma: no mutate
        if "host" in row:
            host = f"{row['host']}:{row.get('port', '')}".rstrip(":")
        else:
            host = f"{row.get('shard', '')}|{row.get('replica', '')}"
        status = row.get("status")
        out.append(
            HostResult(host, None if status is None else int(str(status)), str(row.get("error") or ""))
        )
    return out


def behind(results: Iterable[HostResult]) -> list[HostResult]:
    """The hosts that did not finish the statement: failed, or not finished within the timeout."""
    return [r for r in results if not r.done]


def queued_hosts(rows: Iterable[tuple[str, int, str]]) -> list[str]:
    """Hosts (``host:port``, sorted, once each) with a ``system.distributed_ddl_queue`` task unfinished,
    from its ``(host, port, status)`` rows."""
    return sorted({f"{host}:{port}" for host, port, status in rows if status not in FINISHED_STATUSES})
