"""``--follow``: once caught up with ``/export``, read ``/export/stream`` (WebSocket).

Protocol (did:plc spec v0.3.0; plc-spec-notes.md §4.2): connect to
``/export/stream?cursor=<last seq read>``; the directory sends every op with a higher ``seq``,
one ``sequenced_op`` JSON object per text message, then new ops as they are sequenced. It
closes with code 1000 and a reason:

- ``OutdatedCursor``: the cursor is older than the stream's backfill window: catch up with
  ``/export`` pages, then reconnect;
- ``ConsumerTooSlow``: reconnect from the last ``seq`` read;
- ``FutureCursor``: the cursor is beyond the directory's newest ``seq``; retried
  :data:`MAX_FUTURE_CURSOR` times, then the audit fails (a directory that forgot ops it
  served shows up in the re-read and log checks of the next run).

A directory that answers the WebSocket handshake with HTTP 404 or 405 serves no stream (the
reference server before spec v0.3.0): following stops at once with :data:`NO_STREAM` as a
note, and the run ends like one without ``--follow``. Any other failure (the directory
restarting, unreachable, answering 5xx, closing the stream; its ``/tlog/checkpoint`` or
``/export`` failing so while followed) is retried for as long as the run follows, after a
pause that doubles up to :data:`RETRY_MAX_S`, and each retry is reported on standard error: a
monitor must outlive a routine restart of what it watches.

Messages redelivered with a ``seq`` already read and the same bytes are dropped by the
``seq`` tracker (go-didplc's replica does the same after reconnects). Stream messages are
batched (at most :data:`BATCH_LINES` or :data:`BATCH_SECONDS`) into the normal replay loop.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect

from auditor.errors import AuditFailed, DirectoryUnreachable
from auditor.replay import Replayer
from auditor.sources import RawLine

BATCH_LINES = 1000
BATCH_SECONDS = 0.5
MAX_FUTURE_CURSOR = 5
TICK_EVERY_S = 5.0
"""Seconds between two log checks (a new checkpoint) while following."""
RETRY_FIRST_S = 0.4
"""Pause before the first retry of a failed stream; it doubles on each failure in a row."""
RETRY_MAX_S = 5.0
"""Longest pause between retries."""
NO_STREAM_STATUSES = (404, 405)
"""Handshake answers that mean "no such endpoint": retrying cannot help."""
NO_STREAM = "the directory serves no /export/stream; stopped after catching up"


def stream_url(base_url: str, cursor: int) -> str:
    """The WebSocket URL of ``/export/stream`` for an ``http(s)://`` directory URL."""
    scheme, _, rest = base_url.partition("://")
    ws_scheme = "wss" if scheme == "https" else "ws"
    return f"{ws_scheme}://{rest.rstrip('/')}/export/stream?cursor={cursor}"


def _tell(text: str) -> None:
    print(f"plc-audit: {text}", file=sys.stderr, flush=True)


def follow_stream(
    base_url: str,
    replayer: Replayer,
    *,
    catch_up: Callable[[], None],
    tick: Callable[[], None],
    seconds: float | None,
    tick_every_s: float | None = None,
    on_retry: Callable[[str], None] = _tell,
) -> str | None:
    """Follow the stream until ``seconds`` have passed (forever if None, until Ctrl-C).

    Args:
        base_url: the directory.
        replayer: where lines go (its tracker must de-duplicate redeliveries).
        catch_up: read ``/export`` pages up to the end (after ``OutdatedCursor``).
        tick: periodic log checks (new checkpoint), called every ``tick_every_s`` (default
            :data:`TICK_EVERY_S`).
        seconds: how long to follow.
        on_retry: told one line before each retry (default: standard error).

    Returns:
        A note for the summary when following stopped early without failing
        (:data:`NO_STREAM`), else None.

    Raises:
        AuditFailed: the stream cannot be used (an invalid URL, or ``FutureCursor`` more
            than :data:`MAX_FUTURE_CURSOR` times in a row).
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    tick_every_s = TICK_EVERY_S if tick_every_s is None else tick_every_s
    failures = 0  # in a row, since the last successful connection
    future = 0
    last_tick = time.monotonic()

    def expired() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    while not expired():
        batch: list[RawLine] = []
        try:
            with connect(
                stream_url(base_url, replayer.last_seq), open_timeout=10, max_size=1 << 22
            ) as ws:
                opened = flushed = time.monotonic()
                while not expired():
                    try:
                        message = ws.recv(timeout=0.2)
                    except TimeoutError:
                        message = None
                    if message is not None:
                        raw = message.encode("utf-8") if isinstance(message, str) else message
                        batch.append(RawLine(raw, None))
                    now = time.monotonic()
                    if failures and (message is not None or now - opened >= RETRY_MAX_S):
                        # back in service (a stream that closes right after each handshake
                        # keeps its growing pause)
                        on_retry("/export/stream: connected again")
                        failures = 0
                    if batch and (len(batch) >= BATCH_LINES or now - flushed >= BATCH_SECONDS):
                        replayer.ingest(batch)
                        batch, flushed = [], now
                    if now - last_tick >= tick_every_s:
                        replayer.drain()
                        tick()
                        last_tick = now
                if batch:
                    replayer.ingest(batch)
                return None
        except ConnectionClosed as exc:
            if batch:
                replayer.ingest(batch)
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            if reason == "OutdatedCursor":
                replayer.drain()
                try:
                    catch_up()
                except DirectoryUnreachable as failed:
                    problem = f"catching up with /export failed ({failed})"
                else:
                    continue
            elif reason == "ConsumerTooSlow":
                continue
            else:
                if reason == "FutureCursor":
                    future += 1
                    if future > MAX_FUTURE_CURSOR:
                        raise AuditFailed(f"/export/stream keeps closing ({reason})") from exc
                else:
                    future = 0
                problem = f"the stream closed ({reason or exc})"
        except DirectoryUnreachable as exc:  # the log checks' requests, between messages
            if batch:
                replayer.ingest(batch)
            problem = str(exc)
        except InvalidURI as exc:
            raise AuditFailed(f"cannot follow /export/stream: {exc}") from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            if batch:
                replayer.ingest(batch)
            if isinstance(exc, InvalidStatus) and exc.response.status_code in NO_STREAM_STATUSES:
                return NO_STREAM
            problem = f"cannot connect ({exc or type(exc).__name__})"
        failures += 1
        pause = min(RETRY_FIRST_S * 2 ** (failures - 1), RETRY_MAX_S)
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - time.monotonic()))
        on_retry(f"/export/stream: {problem}; retrying in {pause:.1f} s (attempt {failures + 1})")
        time.sleep(pause)
    return None
