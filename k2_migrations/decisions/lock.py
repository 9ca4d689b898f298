"""Whether the holder of the run lock is dead, so that its lock may be broken.

The heartbeat's age is measured by the server's clock (``now64()`` against the heartbeat it
stored), so one host's slow clock cannot make a live holder look dead to another. A process id
means something only on the host that wrote it: a holder on another host is judged by its
heartbeat alone, however dead the same pid is here.
"""

from __future__ import annotations

from collections.abc import Callable


def holder_dead(
    *,
    heartbeat_age_s: float,
    expiry_s: float,
    holder_host: str,
    holder_pid: int,
    this_host: str,
    pid_alive: Callable[[int], bool],
    embedded_table: bool = False,
) -> bool:
    """Whether the holder is dead: its heartbeat older than ``expiry_s``, or its pid dead on this host.

    ``embedded_table``: a table lock on the embedded engine, always dead — chDB's own directory lock
    already proves no other process has the database open. ``pid_alive`` is asked only about a pid
    of this host.
    """
    if embedded_table or heartbeat_age_s > expiry_s:
        return True
    return holder_host == this_host and holder_pid > 0 and not pid_alive(holder_pid)
