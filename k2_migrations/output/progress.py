"""Progress on stderr: one line per step, a bar for long operations, never an obstacle to the run."""

from __future__ import annotations

import os
import sys
import threading
from typing import IO, TYPE_CHECKING, TextIO

from k2_migrations.config import mask_secrets

if TYPE_CHECKING:
    pass


class Progress:
    """Progress lines on stderr: one per step, and a bar for long operations.

    Progress never stops a run: once the stream's reader is gone (``k2-migrate upgrade 2>&1 | head``)
    the stream is pointed at /dev/null (see :func:`drop_output`) and the run goes on to its end; the
    journal has every step. Lines may come from the signal watcher's thread too, hence the lock.
    """

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._bar_open = False
        self._logged: dict[str, int] = {}
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self._end_bar()
            self._write(mask_secrets(text) + "\n")

    def bar(self, label: str, done: float, total: float) -> None:
        """A one-line progress bar, redrawn in place on a terminal, logged at 25% steps elsewhere."""
        if self.quiet or total <= 0:
            return
        fraction = max(0.0, min(1.0, done / total))
        width = 30
        filled = int(fraction * width)
        text = f"    {label} [{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%"
        with self._lock:
            if self.stream.isatty():
                self._write("\r" + text)
                self._bar_open = True
                return
            quarter = int(fraction * 4)
            if self._logged.get(label, -1) < quarter:  # off a terminal: one line per quarter
                self._logged[label] = quarter
                self._write(text + "\n")

    def _end_bar(self) -> None:
        if self._bar_open:
            self._write("\n")
            self._bar_open = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            drop_output(self.stream)


def drop_output(stream: IO[str]) -> None:
    """Point a stream whose reader went away at /dev/null: later writes to it succeed and go nowhere.

    Python ignores SIGPIPE, so a write to a pipe whose reader has closed raises BrokenPipeError; the
    Python docs (signal module, "Note on SIGPIPE") recommend this redirect, which also lets the
    interpreter's flush at exit succeed. What the stream still buffers is discarded with it.
    """
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # no descriptor (click's test runner): nothing that can break
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
