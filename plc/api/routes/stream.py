"""``GET /export/stream``: the export as a live WebSocket (did:plc spec v0.3, "Export Stream").

- ``cursor`` (optional, integer ≥ 0): backfill every op with ``seq > cursor`` in pages, then
  switch to live. Without a cursor, only ops committed after the connection opened.
- Each text message is one ``sequenced_op`` line, the very bytes ``/export`` serves.
- Close (code 1000) reasons, as the reference server: ``FutureCursor`` (cursor beyond the
  newest ``seq``), ``OutdatedCursor`` (the first op after the cursor is older than the backfill
  window: page through ``/export`` instead), ``ConsumerTooSlow`` (more live ops waiting for a
  slow client than its buffer holds).
- A plain HTTP request answers 426 ``upgrade required``.

New ops are found by asking the database (so ops committed by other processes on the same
PostgreSQL are streamed too), woken at once by this process's commits and otherwise every
poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import timedelta

import orjson
from fastapi import APIRouter, Request, WebSocket
from starlette.responses import Response
from starlette.websockets import WebSocketDisconnect

from plc.api.errors import message_response
from plc.api.responses import query_parameter
from plc.config import Settings
from plc.exportline import parse_line
from plc.service import Directory
from plc.timestamps import parse_timestamp

router = APIRouter()
log = logging.getLogger("plc.stream")

PAGE = 500
_CURSOR = re.compile(r"[0-9]{1,18}")


class ConsumerTooSlow(Exception):
    """The live buffer of one connection overflowed."""


class CommitSignal:
    """Wakes stream connections when this process commits (set from the committer thread)."""

    def __init__(self) -> None:
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def register(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.add((asyncio.get_running_loop(), event))
        return event

    def unregister(self, event: asyncio.Event) -> None:
        self._waiters = {w for w in self._waiters if w[1] is not event}

    def notify(self, *_: object) -> None:
        """Wake every connection: one call per event loop (it runs before write answers on
        the committer thread, so one wake-up of the loop, not one per subscriber)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
        for loop, event in list(self._waiters):
            by_loop.setdefault(loop, []).append(event)
        for loop, events in by_loop.items():
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(_set_all, events)


def _set_all(events: list[asyncio.Event]) -> None:
    for event in events:
        event.set()


@router.get(
    "/export/stream",
    summary="Live export over WebSocket (`?cursor=<seq>`); plain HTTP answers 426",
    response_class=Response,
    status_code=426,
    responses={
        101: {"description": "Switching Protocols: a WebSocket upgrade request is taken"},
        403: {"description": "WebSocket handshake refused: `cursor` is not digits (1-18)"},
        426: {
            "description": "Not a WebSocket upgrade request",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    },
    openapi_extra={
        "parameters": [
            query_parameter(
                "cursor",
                {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
                "Backfill every op with a higher `seq`, then go live; absent: live ops only. "
                "A cursor past the newest `seq` is closed with reason `FutureCursor`.",
            )
        ]
    },
)
async def stream_without_upgrade(request: Request) -> Response:
    return message_response(426, "upgrade required", {"upgrade": "websocket"})


@router.websocket("/export/stream")
async def export_stream(websocket: WebSocket) -> None:
    directory: Directory = websocket.app.state.directory
    settings: Settings = websocket.app.state.settings
    signal: CommitSignal = websocket.app.state.commit_signal
    raw_cursor = websocket.query_params.get("cursor")
    if raw_cursor is not None and not _CURSOR.fullmatch(raw_cursor):
        await websocket.close(code=1008, reason="InvalidCursor")
        return
    await websocket.accept()
    head = await directory.run(directory.store.tree_size)
    if raw_cursor is None:
        cursor = head
    else:
        cursor = int(raw_cursor)
        if cursor > head:
            await _close(websocket, "FutureCursor")
            return
        if cursor < head:
            first = await directory.run(directory.store.export_after_seq, cursor, 1)
            created = parse_timestamp(parse_line(first[0])["createdAt"])
            window = timedelta(seconds=settings.stream_backfill_window_s)
            if created < directory.clock() - window:
                await _close(websocket, "OutdatedCursor")
                return
    wake = signal.register()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=settings.stream_buffer)
    poll_s = settings.stream_poll_interval_ms / 1000
    producer = asyncio.create_task(_produce(directory, cursor, queue, wake, poll_s))
    receiver = asyncio.create_task(_drain_incoming(websocket))
    sender = asyncio.create_task(_send(websocket, queue))
    try:
        done, _ = await asyncio.wait(
            {producer, receiver, sender}, return_when=asyncio.FIRST_COMPLETED
        )
        if producer in done and isinstance(producer.exception(), ConsumerTooSlow):
            sender.cancel()
            await _close(websocket, "ConsumerTooSlow")
    finally:
        signal.unregister(wake)
        for task in (producer, receiver, sender):
            task.cancel()
        await asyncio.gather(producer, receiver, sender, return_exceptions=True)


async def _produce(
    directory: Directory,
    cursor: int,
    queue: asyncio.Queue[bytes],
    wake: asyncio.Event,
    poll_s: float,
) -> None:
    """Page new lines from the store into ``queue``: waiting for room while backfilling,
    refusing to wait once live (a full buffer then means the client is too slow)."""
    live = False
    while True:
        wake.clear()
        lines = await directory.run(directory.store.export_after_seq, cursor, PAGE)
        for line in lines:
            if live:
                try:
                    queue.put_nowait(line)
                except asyncio.QueueFull:
                    raise ConsumerTooSlow from None
            else:
                await queue.put(line)
        if lines:
            cursor = orjson.loads(lines[-1])["seq"]
        if len(lines) < PAGE:
            live = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_s)


async def _send(websocket: WebSocket, queue: asyncio.Queue[bytes]) -> None:
    while True:
        line = await queue.get()
        await websocket.send_text(line.decode("utf-8"))


async def _drain_incoming(websocket: WebSocket) -> None:
    """Read (and ignore) client messages so a close from the client is noticed."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


async def _close(websocket: WebSocket, reason: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=1000, reason=reason), timeout=5)
