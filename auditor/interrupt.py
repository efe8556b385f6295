"""Ctrl-C during a run, stopped only where the state is consistent.

A ``KeyboardInterrupt`` raised wherever the main thread happens to be can land between a
batch's tree write and its ``COMMIT``, or between appending leaves to the in-memory tree and
handing the batch to the workers; a run that then goes on (``--follow`` stops following and
still commits, checks and reports) would commit a tree that no longer matches its cursor.
So during ``sync`` and ``verify`` the first SIGINT only sets :attr:`StopRequest.requested`;
the replay loops call :meth:`StopRequest.check` between batches, which raises
:class:`StopRequested` there. A second SIGINT raises ``KeyboardInterrupt`` at once (a stuck
request, a slow spot check): the batch being committed is rolled back, and nothing after it
uses the run's state in memory (the run ends, exit code 130).
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType


class StopRequested(KeyboardInterrupt):
    """Ctrl-C, raised between batches (where the replay is consistent): ``sync --follow``
    stops following and finishes normally; elsewhere it ends the run like Ctrl-C (130)."""


class StopRequest:
    """SIGINT as a stop flag while in use as a context manager (main thread only; elsewhere
    SIGINT keeps Python's default: ``KeyboardInterrupt`` at once).

    Attributes:
        requested: a SIGINT arrived.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: object = None
        self._installed = False

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        # os.write, not print: the main thread may be inside a write to stderr (the bar).
        os.write(2, b"\nplc-audit: stopping after this batch (Ctrl-C again to abort at once)\n")

    def check(self) -> None:
        """Raise :class:`StopRequested` if a stop was requested (call between batches)."""
        if self.requested:
            raise StopRequested


NEVER = StopRequest()
"""A stop request that is never made (not installed): for callers without Ctrl-C."""
