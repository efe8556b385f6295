"""A blocking call bounded in time as a whole, for HTTP clients whose timeouts bound each
read only (httpx: a server that sends its answer's head a byte a minute passes every read's
timeout for as long as it likes). Used by ``plc import`` and ``plc-audit``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


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


def call_with_client(client: C, fn: Callable[[C], T], seconds: float) -> T:
    """:func:`call_within` for a request on ``client`` (an HTTP client): one that is too slow
    has ``client`` closed aside, in a thread of its own (closing may wait on the request left
    behind), so that the request's socket is closed and its thread ends at its next read,
    not when the server stops. The caller gives the next request a new client.

    Raises:
        TooSlow: no result within ``seconds`` (``client`` is being closed).
        BaseException: whatever ``fn`` raised.
    """
    try:
        return call_within(lambda: fn(client), seconds)
    except TooSlow:
        threading.Thread(target=client.close, name="plc-deadline-close", daemon=True).start()
        raise
