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

``ConsumerTooSlow`` after a connection that delivered no new line is retried like a failure
(growing pause, reported), not at once: a directory that says so on every handshake must not
be hammered.

Watchdog: a stream can stay open (answering pings) and deliver nothing. With ``/tlog/``, a
checkpoint still ahead of the entries read :data:`STALE_TICKS` log checks after it was seen
means the stream is stuck: the run catches up from ``/export``, says so on standard error and
reconnects. Without ``/tlog/``, after ``silence_s`` seconds without a message (default
:data:`SILENCE_S`) it reads ``/export`` once; if that had new entries it says so and
reconnects (a quiet directory just keeps its connection).

Messages redelivered with a ``seq`` already read and the same bytes are dropped by the
``seq`` tracker (go-didplc's replica does the same after reconnects). Stream messages are
batched (at most :data:`BATCH_LINES` or :data:`BATCH_SECONDS`) into the normal replay loop;
for a directory without ``/tlog/`` each batch first becomes the ``/export`` lines of its ops
(``lines``, :mod:`auditor.streambytes`). When ``/export`` does not serve a message's ``seq``
yet (:class:`auditor.streambytes.ExportBehind`), the lines before it are replayed and the
stream is read again from there after :data:`LOOKUP_BATCH_SECONDS`.

The ``websockets`` library's own log (a keepalive timeout's traceback) is silenced: each
failure is reported once, as one line, by the retry.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect

from auditor.errors import AuditFailed, DirectoryUnreachable
from auditor.interrupt import NEVER, StopRequest
from auditor.options import STREAM_SILENCE_S
from auditor.replay import Replayer
from auditor.sources import RawLine
from auditor.streambytes import ExportBehind

# Failures are told as one line each (on_retry); the library would print tracebacks.
logging.getLogger("websockets").addHandler(logging.NullHandler())
logging.getLogger("websockets").propagate = False

BATCH_LINES = 1000
BATCH_SECONDS = 0.5
LOOKUP_BATCH_SECONDS = 1.0
"""Batch window when each batch is looked up in ``/export`` (a directory without ``/tlog/``)."""
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
STALE_TICKS = 3
"""Log checks a checkpoint may stay ahead of the entries read before the stream is taken to
be stuck (with :data:`TICK_EVERY_S`: 10 to 15 s)."""
SILENCE_S = STREAM_SILENCE_S
"""Seconds without a stream message after which a directory without ``/tlog/`` is asked
for new entries on ``/export`` (``--stream-silence``)."""


def stream_url(base_url: str, cursor: int) -> str:
    """The WebSocket URL of ``/export/stream`` for an ``http(s)://`` directory URL."""
    scheme, _, rest = base_url.partition("://")
    ws_scheme = "wss" if scheme == "https" else "ws"
    return f"{ws_scheme}://{rest.rstrip('/')}/export/stream?cursor={cursor}"


def _tell(text: str) -> None:
    print(f"plc-audit: {text}", file=sys.stderr, flush=True)


class _Stuck(Exception):
    """The open stream is not delivering what the directory has (the watchdog)."""


class _Behind(Exception):
    """``/export`` does not serve a streamed op yet: read it again from the stream later."""


class _Watchdog:
    """Is a checkpoint seen :data:`STALE_TICKS` log checks ago still ahead of the entries
    read? (A busy log's newest checkpoint is often a little ahead: only an old one counts.)"""

    def __init__(self) -> None:
        self._sizes: deque[int] = deque(maxlen=STALE_TICKS)

    def stuck(self, checkpoint_size: int | None, read: int) -> str | None:
        """A reason to call the stream stuck after a log check, or None."""
        if checkpoint_size is None:
            return None
        self._sizes.append(checkpoint_size)
        if len(self._sizes) < STALE_TICKS or self._sizes[0] <= read:
            return None
        old = self._sizes[0]
        self._sizes.clear()  # then wait as long again before the next reconnect
        return (
            f"a checkpoint of size {old} stayed ahead of the {read} entries read for "
            f"{STALE_TICKS} log checks"
        )


def follow_stream(
    base_url: str,
    replayer: Replayer,
    *,
    catch_up: Callable[[], None],
    tick: Callable[[], int | None],
    seconds: float | None,
    tick_every_s: float | None = None,
    on_retry: Callable[[str], None] = _tell,
    stop: StopRequest = NEVER,
    lines: Callable[[list[RawLine]], list[RawLine]] | None = None,
    silence_s: float | None = None,
) -> str | None:
    """Follow the stream until ``seconds`` have passed (forever if None, until Ctrl-C).

    Args:
        base_url: the directory.
        replayer: where lines go (its tracker must de-duplicate redeliveries).
        catch_up: read ``/export`` pages up to the end (after ``OutdatedCursor``, and when
            the watchdog finds the stream stuck).
        tick: periodic log checks (new checkpoint), called every ``tick_every_s`` seconds
            (default :data:`TICK_EVERY_S`); returns the size of the checkpoint it checked
            (None: none, or no ``/tlog/``), for the watchdog.
        seconds: how long to follow.
        on_retry: told one line before each retry (default: standard error).
        stop: Ctrl-C; checked between messages and during retry pauses.
        lines: turns a batch of stream messages into the lines replayed (default: as they
            are); may raise :class:`DirectoryUnreachable` (the batch is then dropped: the
            stream sends it again from the last ``seq`` read) or :class:`ExportBehind` (its
            ready lines are replayed, the stream is read again from there).
        silence_s: seconds without a message before ``/export`` is asked for new entries
            (None: never; for directories without ``/tlog/``).

    Returns:
        A note for the summary when following stopped early without failing
        (:data:`NO_STREAM`), else None.

    Raises:
        AuditFailed: the stream cannot be used (an invalid URL, or ``FutureCursor`` more
            than :data:`MAX_FUTURE_CURSOR` times in a row).
        StopRequested: Ctrl-C, raised with every message received handed to ``replayer``
            (nothing half-done: the caller may drain and finish).
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    tick_every_s = TICK_EVERY_S if tick_every_s is None else tick_every_s
    failures = 0  # in a row, since the last successful connection
    future = 0
    last_tick = time.monotonic()
    watchdog = _Watchdog()
    lag_told = ""
    # Each batch handed to ``lines`` costs an /export request: no more than one a second
    # (plc.directory allows 500 requests in 5 minutes).
    window_s = BATCH_SECONDS if lines is None else LOOKUP_BATCH_SECONDS

    def expired() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def hand(batch: list[RawLine]) -> str | None:
        """Replay ``batch``; what ``/export`` does not serve yet, if anything (the rest of
        the batch is then dropped: the stream sends it again from the last ``seq`` read)."""
        if not batch:
            return None
        taken = batch[:]
        # Emptied first: a look-up that fails is not made again by hand_safely (the
        # stream sends these lines again after reconnecting from the last seq read).
        batch.clear()
        if lines is None:
            replayer.ingest(taken)
            return None
        try:
            replayer.ingest(lines(taken))
        except ExportBehind as behind:
            replayer.ingest(behind.ready)
            return str(behind)
        return None

    def hand_or_reread(batch: list[RawLine]) -> None:
        """``hand``, then, if ``/export`` lags, leave this connection to read again."""
        lag = hand(batch)
        if lag is not None:
            raise _Behind(lag)

    def hand_safely(batch: list[RawLine]) -> None:
        """``hand`` after a failure: a batch that cannot be looked up now is dropped (it is
        sent again after reconnecting from the last ``seq`` read)."""
        try:
            hand(batch)
        except DirectoryUnreachable:
            pass

    def caught_up() -> int:
        """Entries read by ``catch_up``."""
        replayer.drain()
        before = replayer.read_size
        catch_up()
        return replayer.read_size - before

    while not expired():
        batch: list[RawLine] = []
        start_seq = replayer.last_seq  # the cursor this connection asks from
        try:
            with connect(
                stream_url(base_url, replayer.last_seq), open_timeout=10, max_size=1 << 22
            ) as ws:
                opened = flushed = heard = time.monotonic()
                while not expired():
                    if stop.requested:
                        hand(batch)
                        batch = []
                        stop.check()
                    try:
                        message = ws.recv(timeout=0.2)
                    except TimeoutError:
                        message = None
                    now = time.monotonic()
                    if message is not None:
                        raw = message.encode("utf-8") if isinstance(message, str) else message
                        batch.append(RawLine(raw, None))
                        heard = now
                    if failures and (message is not None or now - opened >= RETRY_MAX_S):
                        # back in service (a stream that closes right after each handshake
                        # keeps its growing pause)
                        on_retry("/export/stream: connected again")
                        failures = 0
                    if batch and (len(batch) >= BATCH_LINES or now - flushed >= window_s):
                        hand_or_reread(batch)
                        batch, flushed = [], now
                    if now - last_tick >= tick_every_s:
                        hand_or_reread(batch)
                        batch = []
                        replayer.drain()
                        reason = watchdog.stuck(tick(), replayer.read_size)
                        last_tick = now
                        if reason is not None:
                            raise _Stuck(f"{reason}; {caught_up()} read from /export instead")
                    if silence_s is not None and now - heard >= silence_s:
                        heard = now
                        got = caught_up()
                        if got:  # new entries the stream did not send
                            raise _Stuck(
                                f"no message for {silence_s:g} s while /export had {got} new "
                                "entries (read from there)"
                            )
                hand(batch)
                return None
        except _Stuck as exc:
            on_retry(f"/export/stream: {exc}; reconnecting")
            continue
        except _Behind as exc:
            # Not a failure: the growing pause stays as it is. Said once per seq waited for.
            if str(exc) != lag_told:
                lag_told = str(exc)
                on_retry(f"{exc}; reading the stream again from there every {window_s:g} s")
            _pause(window_s, stop)
            continue
        except ConnectionClosed as exc:
            hand_safely(batch)
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            if reason == "OutdatedCursor":
                try:
                    caught_up()
                except DirectoryUnreachable as failed:
                    problem = f"catching up with /export failed ({failed})"
                else:
                    continue
            elif reason == "ConsumerTooSlow" and replayer.last_seq > start_seq:
                continue  # new lines came: go on from the last seq read at once
            else:
                if reason == "FutureCursor":
                    future += 1
                    if future > MAX_FUTURE_CURSOR:
                        raise AuditFailed(f"/export/stream keeps closing ({reason})") from exc
                else:
                    future = 0
                problem = f"the stream closed ({reason or exc})"
                if reason == "ConsumerTooSlow":
                    problem += " without sending a new line"
        except DirectoryUnreachable as exc:  # log checks or export look-ups, between messages
            hand_safely(batch)
            problem = str(exc)
        except InvalidURI as exc:
            raise AuditFailed(f"cannot follow /export/stream: {exc}") from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            hand_safely(batch)
            if isinstance(exc, InvalidStatus) and exc.response.status_code in NO_STREAM_STATUSES:
                return NO_STREAM
            problem = f"cannot connect ({exc or type(exc).__name__})"
        failures += 1
        pause = min(RETRY_FIRST_S * 2 ** (failures - 1), RETRY_MAX_S)
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - time.monotonic()))
        on_retry(f"/export/stream: {problem}; retrying in {pause:.1f} s (attempt {failures + 1})")
        _pause(pause, stop)
    return None


def _pause(seconds: float, stop: StopRequest) -> None:
    """Sleep ``seconds``, ending early on Ctrl-C.

    Raises:
        StopRequested: Ctrl-C.
    """
    until = time.monotonic() + seconds
    while True:
        stop.check()
        left = until - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))
