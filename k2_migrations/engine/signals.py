"""Ctrl-C and SIGTERM during a run: stop at the next step boundary; a second Ctrl-C stops now.

A deploy system's SIGTERM asks for the same orderly stop as a first Ctrl-C (exit 130, the next run
resumes). The second Ctrl-C raises KeyboardInterrupt in the main thread; the step it cuts is
journaled ``started``/``failed``, so the next run re-checks it against the live state, and the run
ends with :class:`~k2_migrations.errors.Interrupted` saying so.

Python runs a signal handler only in the main thread, between bytecodes, and once for signals that
arrived while it could not run: while the main thread waits inside the embedded engine, two Ctrl-C
make one late call. The C-level handler also writes every signal to a wakeup fd at once, so a
watcher thread counts them there (:meth:`StopSignals._watch`); the handler only raises once the
watcher has decided to cut.

A signal sent to the main thread interrupts its wait only if the wait has begun: one that lands
after the handler ran and before the main thread blocks again (a wait retried after EINTR, as
Python retries ``recv``) is handled at the next bytecode, which a wait of 10 s postpones by 10 s.
So the watcher signals the main thread again until the handler has raised, or the block ends.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from k2_migrations.errors import Interrupted

if TYPE_CHECKING:
    from types import FrameType

    from k2_migrations.engine.context import ProgressSink

#: The signals that ask a run to stop, by the name messages use.
SIGNAL_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

#: How long the watcher waits for the main thread to raise before signalling it again.
RESIGNAL_S = 0.2


class StopSignals:
    """What asked a run to stop, and where a second Ctrl-C cut it.

    ``running`` says what a cut interrupts (for its message); ``cancel`` cancels the statements the
    engine was running at a given monotonic time (the embedded engine's wait does not end for a
    signal).
    """

    def __init__(
        self, progress: ProgressSink, *, running: Callable[[], str], cancel: Callable[[float], None]
    ) -> None:
        self.progress = progress
        #: What asked the run to stop at the next step: Ctrl-C or SIGTERM ("" while none did).
        self.stopped_by = ""
        #: Where a second Ctrl-C stopped the run inside the running step ("" while none did).
        self.cut = ""
        self._running = running
        self._cancel = cancel
        #: Set once the handler raised for the cut, or the block ended: the watcher stops signalling.
        self._answered = threading.Event()

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Install the handlers for the block (the main thread's), and put the previous ones back."""
        closing = False
        self._answered.clear()

        def handler(signum: int, frame: FrameType | None) -> None:
            self.stopped_by = self.stopped_by or SIGNAL_NAMES[signum]
            if self.cut and not closing and not self._answered.is_set():
                self._answered.set()
                raise KeyboardInterrupt

        reader, writer = socket.socketpair()
        writer.setblocking(False)
        previous = {signum: signal.signal(signum, handler) for signum in SIGNAL_NAMES}
        previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        watcher = threading.Thread(target=self._watch, args=(reader,), name="k2-migrate-signals", daemon=True)
        watcher.start()
        try:
            yield
        except BaseException:
            if not self.cut:
                raise
            # Whatever the cut raised first (KeyboardInterrupt, or the cancelled statement's error).
            raise Interrupted(
                f"stopped at once by a second Ctrl-C in {self.cut}: the step was cut short; run the same "
                "command again: it re-checks that step against the live state and resumes"
            ) from None
        finally:
            closing = True  # a cut decided from here on finds the revisions over: nothing left to cut
            self._answered.set()
            signal.set_wakeup_fd(previous_fd)
            writer.close()  # the watcher reads the end of its stream and returns
            watcher.join()
            for signum, previous_handler in previous.items():  # runs a pending handler first
                signal.signal(signum, previous_handler)
            reader.close()

    def _watch(self, reader: socket.socket) -> None:
        """Announce each stop request the moment it arrives; on the second Ctrl-C, cut the step.

        Cutting cancels the statements the embedded engine was running, then signals the main
        thread again so that the handler runs, now raising, even if it already ran for both Ctrl-C.
        A server's statement is a socket wait: that signal interrupts it. A signal that reached the
        main thread just before it blocked again is lost on that wait: signal it until it answers.
        """
        sigints = 0
        while data := reader.recv(64):
            for signum in data:
                if signum == signal.SIGTERM:
                    self.progress.line("  SIGTERM: stopping after the current step")
                elif signum == signal.SIGINT:
                    sigints += 1
                    if sigints == 1:
                        self.progress.line(
                            "  Ctrl-C: stopping after the current step (press again to stop at once)"
                        )
                    elif sigints == 2:  # a third is the signal sent here
                        self.progress.line("  Ctrl-C again: stopping now")
                        self.cut = self._running()
                        self._cancel(time.monotonic())
                        main = threading.main_thread().ident or 0
                        signal.pthread_kill(main, signal.SIGINT)
                        while not self._answered.wait(RESIGNAL_S):
                            signal.pthread_kill(main, signal.SIGINT)
