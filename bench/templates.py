"""Prepared embedded databases: templates made once per volume, copies derived from them, clones to run on.

Preparing a database (:func:`prepare_template`) is what ``make demo`` does, in processes of its own:
``k2-migrate upgrade k2_001 --url chdb:///DIR`` (the CLI, as a subprocess) lays down the K2 baseline in
``default``, then a child process runs :func:`k2_migrations.k2.demo_data.load` at the scale. The result
is a *template* that is never opened again: every measurement works on a clone of it (a byte copy of
the closed directory), so every run of a measurement starts from the same bytes.

The Kafka tables of a template point at an unreachable broker (``127.0.0.1:9``). A copy whose Kafka
tables point at a live local Tansu broker is made by :func:`broker_template`. Each template has a JSON
marker beside it saying it is complete and what it holds, so a ``--work`` directory is reused.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.processes import ROOT, UNREACHABLE_BROKERS, BenchError, PrepareTimeout, k2_migrate, worker

TOPICS: Mapping[str, int] = {"market.crypto.trades.binance": 3, "market.crypto.trades.kraken": 2}
"""The K2 topics and their partitions (one per symbol, as the producers key them)."""

PREPARE_TIMEOUT_S = 20 * 60
"""A template that takes longer than this to load is given up (the brief's "reasonable time")."""

MB_PER_SCALE = 60
"""Disk a template takes per unit of scale (59 MB at 1x, 558 MB at 10x on this engine)."""


@dataclass(frozen=True)
class Template:
    """A prepared, closed embedded database: the K2 baseline in ``default`` with demo data at ``scale``."""

    path: Path
    scale: float
    brokers: str
    rows: dict[str, int]
    baseline_s: float
    load_s: float
    size_bytes: int
    reused: bool = False

    @property
    def label(self) -> str:
        """``1x``, ``10x``, ``0.1x``..."""
        return scale_label(self.scale)

    def to_json(self) -> dict[str, Any]:
        """What the marker file next to the template records."""
        return {
            "scale": self.scale,
            "brokers": self.brokers,
            "rows": self.rows,
            "baseline_s": self.baseline_s,
            "load_s": self.load_s,
            "size_bytes": self.size_bytes,
        }


def scale_label(scale: float) -> str:
    """How a scale is written in the tables."""
    return f"{scale:g}x"


def dir_size(path: Path) -> int:
    """Bytes under ``path`` (symlinks not followed)."""
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                continue
    return total


def clone(source: Path, destination: Path) -> float:
    """Copy a closed data directory byte for byte; returns the seconds it took."""
    started = time.perf_counter()
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(source, destination, symlinks=True)
    return time.perf_counter() - started


def remove(path: Path) -> None:
    """Delete a clone."""
    shutil.rmtree(path, ignore_errors=True)


def discard(template: Template) -> None:
    """Delete a template and its marker (a broker copy is for one broker's port: no later run can use it)."""
    _marker(template.path).unlink(missing_ok=True)
    remove(template.path)


def _marker(path: Path) -> Path:
    """The JSON file next to a template that says it is complete, and what it holds."""
    return path.with_name(path.name + ".json")


def _save(template: Template) -> Template:
    """Write the template's marker: from now on it is complete and reused."""
    _marker(template.path).write_text(json.dumps(template.to_json()))
    return template


def _reuse(path: Path, scale: float, brokers: str) -> Template | None:
    """A complete template already at ``path`` for this scale and broker list, if there is one."""
    marker = _marker(path)
    if not (marker.is_file() and path.is_dir()):
        return None
    data = json.loads(marker.read_text())
    if data.get("scale") != scale or data.get("brokers") != brokers:
        return None
    return Template(
        path=path,
        scale=scale,
        brokers=brokers,
        rows={str(k): int(v) for k, v in data["rows"].items()},
        baseline_s=float(data["baseline_s"]),
        load_s=float(data["load_s"]),
        size_bytes=int(data["size_bytes"]),
        reused=True,
    )


def prepare_template(work: Path, scale: float, *, timeout: float = PREPARE_TIMEOUT_S) -> Template:
    """The template at ``scale`` in ``work``: reused if a complete one is there, else prepared.

    Two processes of its own: ``k2-migrate upgrade k2_001`` (the CLI) and a loader child running
    ``demo_data.load(client, "default", scale)``. A load slower than ``timeout`` is killed and raises
    :class:`PrepareTimeout`.
    """
    path = work / "templates" / f"x{scale:g}"
    found = _reuse(path, scale, UNREACHABLE_BROKERS)
    if found is not None:
        return found
    # The template, a broker copy and a clone of it can coexist: three times the template, plus slack.
    work.mkdir(parents=True, exist_ok=True)
    need, free = int(3 * MB_PER_SCALE * scale * 1024**2) + 2 * 1024**3, shutil.disk_usage(work).free
    if free < need:
        raise BenchError(
            f"the {scale:g}x template needs about {need / 1024**3:.1f} GiB, {work} has {free / 1024**3:.1f}"
        )
    shutil.rmtree(path, ignore_errors=True)
    _marker(path).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    baseline = k2_migrate(path, "upgrade", "k2_001", timeout=600)
    started = time.perf_counter()
    try:
        loaded, _ = worker("load", str(path), repr(scale), timeout=timeout)
    except PrepareTimeout:
        shutil.rmtree(path, ignore_errors=True)
        raise PrepareTimeout(
            f"loading {scale:g}x took more than {timeout / 60:.0f} min and was stopped"
        ) from None
    return _save(
        Template(
            path=path,
            scale=scale,
            brokers=UNREACHABLE_BROKERS,
            rows={str(k): int(v) for k, v in loaded["rows"].items()},
            baseline_s=baseline.seconds,
            load_s=time.perf_counter() - started,
            size_bytes=dir_size(path),
        )
    )


def _derive(base: Template, suffix: str, brokers: str, change: Callable[[Path], dict[str, int]]) -> Template:
    """A copy of ``base`` changed by ``change`` (which returns the row counts it changed); reused if there."""
    path = base.path.with_name(base.path.name + suffix)
    found = _reuse(path, base.scale, brokers)
    if found is not None:
        return found
    _marker(path).unlink(missing_ok=True)
    clone(base.path, path)
    rows = {**base.rows, **change(path)}
    return _save(
        replace(base, path=path, brokers=brokers, rows=rows, size_bytes=dir_size(path), reused=False)
    )


def broker_template(template: Template, bootstrap: str) -> Template:
    """A copy of ``template`` whose two Kafka tables point at ``bootstrap``.

    The closed copy's table definitions are edited on disk rather than re-created by an engine: an
    engine that opened the copy would start consumers joining the broker's groups and leave them
    while joining, and a Tansu group left that way stays stuck for the next process
    (../shared/clickhouse-notes.md, "Kafka on the test broker").
    """
    old, new = f"kafka_broker_list = '{template.brokers}'", f"kafka_broker_list = '{bootstrap}'"

    def repoint(path: Path) -> dict[str, int]:
        """Replace the broker list in every table definition that names it (the two Kafka tables)."""
        edited = 0
        for sql in (path / "metadata").glob("*/*.sql"):
            text = sql.read_text()
            if old in text:
                sql.write_text(text.replace(old, new))
                edited += 1
        if edited != len(TOPICS):
            raise BenchError(f"{path}: {edited} table definitions name {old}, expected {len(TOPICS)}")
        return {}

    return _derive(template, f"-broker-{bootstrap.rsplit(':', 1)[-1]}", bootstrap, repoint)


def candles_template(base: Template, per_table: int) -> Template:
    """A copy of ``base`` with ``per_table`` synthetic candles more in each OHLCV table."""

    def add(path: Path) -> dict[str, int]:
        """Insert the candles in a child process; the OHLCV tables' new row counts."""
        document, _ = worker("add_candles", str(path), str(per_table))
        return {str(k): int(v) for k, v in document["rows"].items()}

    return _derive(base, f"+candles{per_table}", base.brokers, add)


@contextmanager
def kafka_broker() -> Iterator[str]:
    """A Tansu broker on 127.0.0.1 (the test harness's) with the K2 topics; yields its bootstrap address."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support.kafka_broker import KafkaBroker

    with KafkaBroker() as broker:
        for topic, partitions in TOPICS.items():
            broker.create_topic(topic, partitions)
        yield broker.bootstrap
