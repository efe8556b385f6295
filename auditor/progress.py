"""The progress bar of long runs (rich): operations read, ops/s and ETA, on stderr.

The bar's total is the file size in bytes for a file, the newest checkpoint's tree size for
a directory with a tlog, and unknown otherwise (no bar, no ETA; the count and rate still
show). It is drawn only when stderr is a terminal, unless forced.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class OpsColumn(ProgressColumn):
    """``<ops> ops  <rate> ops/s`` from the task's ``ops`` field and its elapsed time."""

    def render(self, task: Task) -> Text:
        """Render the column for ``task``."""
        ops = int(task.fields.get("ops", 0))
        elapsed = task.elapsed or 0.0
        rate = ops / elapsed if elapsed > 0 else 0.0
        return Text(f"{ops:,} ops  {rate:,.0f} ops/s", style="progress.data.speed")


class ReplayProgress:
    """A progress display for one replay (a no-op when disabled).

    Args:
        description: shown left of the bar.
        total: bytes (file) or ops (tlog); None when unknown.
        start: where a resumed run begins, in the same unit (its ETA counts only what is left).
        enabled: draw at all (default: only when stderr is a terminal).
    """

    def __init__(
        self, description: str, total: int | None, enabled: bool | None = None, start: int = 0
    ) -> None:
        show = sys.stderr.isatty() if enabled is None else enabled
        self._ops = 0
        self._total = total
        self._position = start
        self._started = time.monotonic()
        self._progress: Progress | None = None
        if not show:
            return
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("[progress.percentage]{task.percentage:>3.0f}%"),
            OpsColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total, completed=start, ops=0)
        self._progress.start()

    @property
    def ops(self) -> int:
        """Operations counted so far."""
        return self._ops

    def advance(self, ops: int, completed: int | None = None) -> None:
        """Count ``ops`` more operations; ``completed`` sets the bar position (bytes for a
        file), otherwise the bar advances by ``ops``."""
        self._ops += ops
        self._position = self._position + ops if completed is None else completed
        if self._total is not None and self._position > self._total:
            # read past the total known (a checkpoint older than the stream): no bar stuck
            # at 100 %; the next checkpoint sets it again (set_total)
            self._total = self._position
        if self._progress is None:
            return
        self._progress.update(
            self._task, completed=self._position, total=self._total, ops=self._ops
        )

    @property
    def total(self) -> int | None:
        """The bar's total (None: unknown)."""
        return self._total

    def set_total(self, total: int | None) -> None:
        """Change the bar's total (a newer checkpoint is larger); never below what was
        read."""
        self._total = None if total is None else max(total, self._position)
        if self._progress is not None:
            self._progress.update(self._task, total=self._total)

    def close(self) -> None:
        """Stop drawing."""
        if self._progress is not None:
            self._progress.stop()

    @property
    def rate(self) -> float:
        """Average ops/s since the display was created."""
        elapsed = time.monotonic() - self._started
        return self._ops / elapsed if elapsed > 0 else 0.0
