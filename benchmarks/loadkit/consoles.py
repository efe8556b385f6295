"""Where each tool prints: ``load.py`` to stderr (so stdout stays free), ``compare_reference.py``
to stdout; both wide when not on a terminal (log files)."""

from __future__ import annotations

import sys

from rich.console import Console

load_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
"""``load.py``'s progress, per-phase lines and summary table."""

compare_console = Console(width=None if sys.stdout.isatty() else 200)
"""``compare_reference.py``'s output."""
