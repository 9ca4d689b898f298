"""The freshness gap of a timed interval: what a reader of the tables fed by streaming tables sees.

A Kafka engine table flushes its rows to its views' tables in batches (every
``stream_flush_interval_ms`` when the topic is quiet), so a reader of those tables sees new rows
arrive batch by batch. An interval that pauses ingestion (k2_003's ``ingestion_pause``) adds to the
gap between two batches: the time from the last batch to the pause, the pause itself, and the time
from the pause to the re-created consumers' first batch. Where the engine shows the batches
(``system.parts``: a part not merged yet is one batch into one table, and its ``modification_time``
says when, to the second), :func:`freshness` puts the gap seen at the interval's end beside the
gap between batches before it; the rest of the gap (to the first new batch, about one flush
interval) comes after the interval, so it is not part of the figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

#: The seconds before the interval whose batches give the flush interval it is compared with: a few
#: flush intervals at the Kafka engine's default (7.5 s), and recent enough that parts written
#: otherwise long before (a load, a copy) are not taken for the feed's rhythm.
WINDOW_S = 30


@dataclass(frozen=True)
class Freshness:
    """The gap readers of the fed tables see, in whole seconds of the engine's clock.

    ``batches``: how many batches were seen before the interval (0: none, and both figures are
    None). ``flush_every_s``: the longest gap between those of the :data:`WINDOW_S` seconds before
    it (None with fewer than two there). ``since_last_s``: from the last batch before the interval
    to its end, the gap readers had seen by then.
    """

    batches: int
    flush_every_s: int | None
    since_last_s: int | None

    def describe(self) -> str:
        """One clause for the summary's interval line."""
        if not self.batches:
            return "no batches seen"
        text = f"no new batch for {self.since_last_s}s at its end"
        if self.flush_every_s is not None:
            text += f" (batches every {self.flush_every_s}s before)"
        return text


def freshness(batch_times: Iterable[int], began: int, ended: int) -> Freshness:
    """The gap from the batches' times (engine seconds; several parts written in the same second
    are one batch), the interval's start ``began`` and end ``ended`` on the same clock.

    Only the batches at or before ``began`` count: a part written later during the interval is
    a table the interval moved or re-created, not a batch readers saw.
    """
    seen = sorted({t for t in batch_times if t <= began})
    if not seen:
        return Freshness(0, None, None)
    gaps = [b - a for a, b in pairwise(t for t in seen if t >= began - WINDOW_S)]
    return Freshness(len(seen), max(gaps) if gaps else None, max(ended - seen[-1], 0))
