"""The child processes of the benchmarks: ``k2-migrate`` as a user runs it, and :mod:`bench.worker` actions.

Everything that opens an embedded database runs in a child: chDB allows one data directory per
process, and a measurement must not inherit a warm engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The project root: alembic.ini, versions/ and the packages live here."""

ALEMBIC_INI = ROOT / "alembic.ini"

UNREACHABLE_BROKERS = "127.0.0.1:9"
"""Nothing listens there: librdkafka gets "connection refused" at once and keeps retrying."""


class BenchError(RuntimeError):
    """A benchmark could not run (a child failed, no disk space, a template took too long)."""


class PrepareTimeout(BenchError):
    """A child (loading a template) took longer than it was given."""


@dataclass(frozen=True)
class Completed:
    """A finished child process: its output and its wall time."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> dict[str, Any]:
        """The JSON document the child printed (the last one, if anything came before it)."""
        text = self.stdout.strip()
        start = text.rfind("\n{") + 1 if not text.startswith("{") else 0
        try:
            document: dict[str, Any] = json.loads(text[start:])
        except json.JSONDecodeError as exc:
            raise BenchError(f"{self.describe()} printed no JSON ({exc}): {text[-500:]!r}") from None
        return document

    def describe(self) -> str:
        """The command, shortened."""
        return " ".join(a if len(a) < 60 else a[:57] + "..." for a in self.args[:8])


def run_process(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> Completed:
    """Run a child in the project root, capture its output, and time it (wall clock)."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            list(args),
            cwd=ROOT,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PrepareTimeout(f"{' '.join(args[:6])} did not finish within {timeout:.0f} s") from exc
    result = Completed(tuple(args), done.returncode, done.stdout, done.stderr, time.perf_counter() - started)
    if check and done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-1500:]
        raise BenchError(f"{result.describe()} exited {done.returncode}: {tail}")
    return result


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a child: ours without k2-migrate settings that would redirect it, plus overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("K2_MIGRATE_", "K2_SOURCE_", "K2_TARGET_", "K2_KAFKA_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.update(overrides)
    return env


def k2_env(brokers: str) -> dict[str, str]:
    """A child's environment for the K2 revisions: source ``default``, target ``k2``, these brokers."""
    return child_env(K2_KAFKA_BROKERS=brokers, K2_SOURCE_DATABASE="default", K2_TARGET_DATABASE="k2")


def k2_migrate_command() -> list[str]:
    """The installed ``k2-migrate`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "k2-migrate"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("k2-migrate")
    if found:
        return [found]
    return [sys.executable, "-m", "k2_migrations"]


def chdb_url(directory: Path, config_file: Path | None = None) -> str:
    """``chdb:///absolute/path`` (with ``?config-file=`` when given)."""
    url = f"chdb://{directory.resolve()}"
    return f"{url}?config-file={config_file.resolve()}" if config_file is not None else url


def k2_migrate(
    directory: Path,
    *args: str,
    brokers: str = UNREACHABLE_BROKERS,
    timeout: float | None = 3600,
    prefix: Sequence[str] = (),
) -> Completed:
    """``k2-migrate -c alembic.ini --url chdb:///DIR -q ARGS`` as a child process, timed."""
    command = [
        *prefix,
        *k2_migrate_command(),
        "-c",
        str(ALEMBIC_INI),
        "--url",
        chdb_url(directory),
        "-q",
        *args,
    ]
    return run_process(command, env=k2_env(brokers), timeout=timeout)


def worker(
    action: str, *args: str, env: Mapping[str, str] | None = None, timeout: float | None = 3600
) -> tuple[dict[str, Any], Completed]:
    """``python -m bench.worker ACTION ARGS`` in a fresh process; returns its JSON report and the process."""
    done = run_process(
        [sys.executable, "-m", "bench.worker", action, *args], env=env or child_env(), timeout=timeout
    )
    return done.json(), done
