"""A blocking call bounded in time as a whole, for HTTP clients whose timeouts bound each
read only (httpx: a server that sends its answer's head a byte a minute passes every read's
timeout for as long as it likes). Used by ``plc import`` and ``plc-audit``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class TooSlow(TimeoutError):
    """The call did not return within its time (it goes on in its thread, left to end)."""


def call_within(fn: Callable[[], T], seconds: float, name: str = "plc-deadline") -> T:
    """``fn()``'s result, or what it raised, if it returns within ``seconds``.

    ``fn`` runs in a daemon thread of its own: a call that is too slow is left to it (with
    whatever it holds, e.g. an HTTP connection: give the next call a new client) and cannot
    keep the process from exiting. The wait ends at once on a signal the main thread
    handles (Ctrl-C).

    Raises:
        TooSlow: no result within ``seconds``.
        BaseException: whatever ``fn`` raised.
    """
    outcome: list[tuple[bool, object]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    # Event.wait refuses a timeout past TIMEOUT_MAX (inf: OverflowError); NaN waits not at all
    if not done.wait(min(seconds, threading.TIMEOUT_MAX) if seconds == seconds else 0):
        raise TooSlow(f"no answer within {seconds:g} s")
    returned, value = outcome[0]
    if not returned:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]
