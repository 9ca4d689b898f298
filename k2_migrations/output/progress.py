"""Progress on stderr: one line per step, a bar for long operations, never an obstacle to the run."""

from __future__ import annotations

import os
import sys
import threading
from typing import IO, ClassVar, TextIO

from k2_migrations.config import mask_secrets

#: The bar's width in characters, between its brackets.
BAR_WIDTH = 30


class Progress:
    """Progress lines on stderr: one per step, and a bar for long operations.

    The bar is this small class rather than ``click.progressbar``: a mutation reports how many parts
    are left (a total that may grow while it runs), not increments of a known length; off a terminal
    a log still wants a line per quarter, where click prints only the label; and step lines from the
    signal watcher's thread must share the bar's line, under one lock.

    On a terminal the bar is redrawn in place and holds the line until the next message ends it:
    :meth:`line` does, and so must anything else that writes to the terminal — the CLI's output and
    its error line call :func:`end_open_bar`. Off a terminal no ``\\r`` is ever written: one line per
    quarter of each bar. Everything goes to stderr, so stdout carries only what was asked for (the
    summary, a ``--json`` document). ``quiet`` (``-q``) prints nothing at all.

    Progress never stops a run: once the stream's reader is gone (``k2-migrate upgrade 2>&1 | head``)
    the stream is pointed at /dev/null (see :func:`drop_output`) and the run goes on to its end; the
    journal has every step.
    """

    #: The instance whose bar holds the terminal's current line. Kept per process, not per instance:
    #: the cursor's column belongs to the process's stderr, and whoever writes there next (the CLI's
    #: error line, a summary on the same terminal) must end the bar without having its Progress.
    _holding_line: ClassVar[Progress | None] = None

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
            self._logged.clear()  # a new step: a later bar of the same label is logged afresh
            self._write(mask_secrets(text) + "\n")

    def bar(self, label: str, done: float, total: float) -> None:
        """A one-line progress bar, redrawn in place on a terminal, logged at 25% steps elsewhere."""
        if self.quiet or total <= 0:
            return
        fraction = max(0.0, min(1.0, done / total))
        filled = int(fraction * BAR_WIDTH)
        tail = f" [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction * 100:5.1f}%"
        with self._lock:
            if self.stream.isatty():
                self._write("\r" + _fit(f"    {label}", tail, self._columns()))
                self._bar_open = True
                Progress._holding_line = self
                return
            quarter = int(fraction * 4)
            if self._logged.get(label, -1) < quarter:  # off a terminal: one line per quarter
                self._logged[label] = quarter
                self._write(f"    {label}{tail}\n")

    def close(self) -> None:
        """End the bar's line if one is drawn, so that whatever is written next starts at column 0."""
        with self._lock:
            self._end_bar()

    def _end_bar(self) -> None:
        if self._bar_open:
            self._bar_open = False
            if Progress._holding_line is self:
                Progress._holding_line = None
            self._write("\n")

    def _columns(self) -> int:
        """The terminal's width: a bar longer than the line would wrap, and ``\\r`` could not redraw it.

        80 where the terminal does not say (a pseudo-terminal nobody sized reports 0).
        """
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (OSError, ValueError):
            return 80

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            drop_output(self.stream)


def end_open_bar() -> None:
    """End the line of a bar drawn on the terminal, if any: the next message starts at column 0."""
    progress = Progress._holding_line
    if progress is not None:
        progress.close()


def _fit(head: str, tail: str, columns: int) -> str:
    """``head + tail`` within ``columns - 1`` characters (the last column would wrap on some terminals),
    shortening ``head``: the bar and its percentage are what a reader watches."""
    room = columns - 1 - len(tail)
    if len(head) <= room:
        return head + tail
    return (head[: max(room - 3, 0)] + "...")[: max(room, 0)] + tail


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
