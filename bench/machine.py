"""The machine the figures come from, and progress lines: other processes share these cores."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from bench.processes import ROOT


def _proc_field(path: str, key: str) -> str | None:
    """The value after ``key`` in a ``key: value`` file of /proc (None if absent or unreadable)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _meminfo_gib(key: str) -> float:
    """A /proc/meminfo figure in GiB."""
    value = _proc_field("/proc/meminfo", f"{key}:")
    return int(value.split()[0]) / 1024 / 1024 if value else float("nan")


def _version(package: str) -> str:
    """An installed package's version."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    """A git command's output in the project root (empty if git fails)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def _git_revision() -> str:
    """The commit, and for a modified tree which files differ (others may be editing it)."""
    revision = _git("describe", "--always", "--dirty").strip() or "unknown"
    changed = [
        line[3:] for line in _git("status", "--porcelain").splitlines() if not line[3:].startswith("bench/")
    ]
    if changed:
        diff = hashlib.sha256(_git("diff", "HEAD", "--", *changed).encode()).hexdigest()[:10]
        revision += f" (uncommitted outside bench/: {', '.join(changed[:6])}; diff sha256 {diff})"
    return revision


def load_average() -> float:
    """The 1-minute load average now (other processes share these cores)."""
    return os.getloadavg()[0]


def print_machine(work: Path | None = None) -> None:
    """The machine and software the figures come from, one fact per line, as the head of a report."""
    load1, load5, load15 = os.getloadavg()
    cpu = _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown"
    lines = [
        f"CPU: {cpu}, {os.cpu_count()} logical cores",
        f"RAM: {_meminfo_gib('MemTotal'):.1f} GiB ({_meminfo_gib('MemAvailable'):.1f} GiB available)",
        f"OS: {platform.system()} {platform.release()}",
        f"Python: {platform.python_implementation()} {platform.python_version()}",
        "chdb {} / chdb-core {} / clickhouse-connect {} / alembic {}".format(
            _version("chdb"), _version("chdb-core"), _version("clickhouse-connect"), _version("alembic")
        ),
        f"k2-migrations: {_git_revision()}",
        f"load average at start: {load1:.2f} {load5:.2f} {load15:.2f} (1/5/15 min)",
    ]
    if work is not None:
        lines.append(f"work directory: {work} ({shutil.disk_usage(work).free / 1024**3:.0f} GiB free)")
    print("## Machine\n")
    print("\n".join(f"- {line}" for line in lines))
    print()


def progress(message: str) -> None:
    """A progress line on stderr (the tables go to stdout)."""
    print(
        f"[bench {time.strftime('%H:%M:%S')} load {load_average():.2f}] {message}",
        file=sys.stderr,
        flush=True,
    )
