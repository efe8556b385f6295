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
        if self._progress is None:
            return
        if completed is None:
            self._progress.update(self._task, advance=ops, ops=self._ops)
        else:
            self._progress.update(self._task, completed=completed, ops=self._ops)

    def set_total(self, total: int | None) -> None:
        """Change the bar's total (e.g. a newer checkpoint is larger)."""
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def close(self) -> None:
        """Stop drawing."""
        if self._progress is not None:
            self._progress.stop()

    @property
    def rate(self) -> float:
        """Average ops/s since the display was created."""
        elapsed = time.monotonic() - self._started
        return self._ops / elapsed if elapsed > 0 else 0.0
