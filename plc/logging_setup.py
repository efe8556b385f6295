"""Structured logging: one JSON object per line on stderr, flushed per record."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", …extra}`` per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode("utf-8")


def configure_logging(level: str = "info") -> None:
    """Send every log record as a JSON line to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # No access log (a line per request costs about 0.1 ms of a 0.15 ms read). uvicorn
    # decides per connection from whether this logger has handlers, and each worker runs
    # this after uvicorn's own set-up, so it must stay cut off here.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
    sys.unraisablehook = log_unraisable


def log_unraisable(unraisable: Any) -> None:
    """``sys.unraisablehook``: one JSON line for an exception Python could not raise (in a
    ``__del__``, or a ``repr`` that failed inside a C extension: pydantic-core on a value
    nested ~1000 deep), where the default hook prints a traceback outside the JSON log. The
    object itself is not shown (its ``repr`` may be what failed); the exception's text is cut
    to 200 characters."""
    try:
        text = str(unraisable.exc_value)
    except Exception:  # noqa: BLE001 - the hook must not fail in turn
        text = ""
    frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
    logging.getLogger("plc.unraisable").warning(
        unraisable.err_msg or "Exception ignored",
        extra={
            "fields": {
                "exc_type": getattr(unraisable.exc_type, "__name__", "?"),
                "exc": text[:200],
                "object_type": type(unraisable.object).__qualname__,
                "where": f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None,
            }
        },
    )


class RepeatLimit:
    """Whether a failure that keeps happening (a database that is away, every request or
    tick failing the same way) is to be logged again: each distinct text at most once per
    ``every_s`` seconds, so an outage is said once a minute, not once per request.

    Args:
        every_s: seconds before the same text is due again.
        keep: most texts remembered (texts can vary without end: names, numbers); past it
            the memory starts over.
    """

    def __init__(self, every_s: float = 60.0, keep: int = 64) -> None:
        self.every_s = every_s
        self._keep = keep
        self._said: dict[str, float] = {}

    def due(self, text: str) -> bool:
        """True (and remembered) if ``text`` was not said within the last ``every_s``."""
        now = time.monotonic()
        if now - self._said.get(text, -self.every_s) < self.every_s:
            return False
        if len(self._said) >= self._keep:
            self._said.clear()
        self._said[text] = now
        return True

    def forget(self) -> None:
        """Make every text due again (the failure ended: a new one is news)."""
        self._said.clear()
