"""``GET /export/stream``: the export as a live WebSocket (did:plc spec v0.3, "Export Stream").

- ``cursor`` (optional, integer ≥ 0): backfill every op with ``seq > cursor`` in pages, then
  switch to live. Without a cursor, only ops committed after the connection opened.
- Each text message is one ``sequenced_op`` line, the very bytes ``/export`` serves.
- Close (code 1000) reasons, as the reference server: ``FutureCursor`` (cursor beyond the
  newest ``seq``), ``OutdatedCursor`` (the first op after the cursor is older than the backfill
  window: page through ``/export`` instead); 1011 ``Unavailable`` when the database fails.
- A plain HTTP request answers 426 ``upgrade required``.

A connection backfills from the database in pages until it is within the lines the process's
:class:`~plc.api.stream_hub.StreamHub` keeps, then the hub feeds it: one database reader per
process however many connections are live (ops committed by other processes on the same
PostgreSQL are found too, every poll interval). A live connection with more than
``PLC_STREAM_BUFFER`` ops waiting goes back to the database from its last op and joins again,
where the reference closes it with ``ConsumerTooSlow`` (a burst of commits made clients that
read as fast as they could reconnect); one that stops reading is cut off by the send timeout
(:mod:`plc.api.ws_protocol`). Connections give up the event loop every ``SLICE`` sends: on
SQLite nothing else yields, and a hundred connections backfilling at once held every other
request for seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import timedelta

from fastapi import APIRouter, Request, WebSocket
from starlette.responses import Response
from starlette.websockets import WebSocketDisconnect

from plc.api.errors import message_response
from plc.api.responses import query_parameter
from plc.api.routes.export import seq_or_past
from plc.api.stream_hub import PAGE, StreamHub, Subscriber, seq_of
from plc.config import Settings
from plc.errors import PlcError
from plc.exportline import line_head
from plc.service import Directory
from plc.timestamps import parse_timestamp

router = APIRouter()
log = logging.getLogger("plc.stream")

SLICE = 50
"""Messages a connection sends before it lets other work run."""
_CURSOR = re.compile(r"[0-9]{1,100}")


@router.get(
    "/export/stream",
    summary="Live export over WebSocket (`?cursor=<seq>`); plain HTTP answers 426",
    response_class=Response,
    status_code=426,
    responses={
        101: {"description": "Switching Protocols: a WebSocket upgrade request is taken"},
        400: {
            "description": "WebSocket handshake refused: `cursor` is not digits (1-100)",
            "content": {"application/json": {}},
        },
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
    hub: StreamHub = websocket.app.state.stream_hub
    raw_cursor = websocket.query_params.get("cursor")
    if raw_cursor is not None and not _CURSOR.fullmatch(raw_cursor):
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            # refused before the upgrade as any bad request is: 400 {"message"}
            await websocket.send_denial_response(message_response(400, "Invalid cursor parameter"))
        else:  # a server without the denial extension: the handshake fails (403)
            await websocket.close(code=1008, reason="InvalidCursor")
        return
    await websocket.accept()
    try:
        start = await _starting_cursor(directory, settings, raw_cursor)
    except PlcError:  # the database failed: after the upgrade, only a close can say so
        start = "Unavailable"
    if isinstance(start, str):
        await _close(websocket, start)
        return
    cursor = start
    subscriber = Subscriber(settings.stream_buffer)
    serving = asyncio.create_task(_serve(websocket, directory, hub, cursor, subscriber))
    tasks = {
        asyncio.create_task(_drain_incoming(websocket)),
        serving,
        asyncio.create_task(subscriber.gone.wait()),
    }
    metrics = directory.metrics
    if metrics is not None:
        metrics.stream_connections.inc()
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        error = serving.exception() if serving.done() and not serving.cancelled() else None
        failed = error is not None and not isinstance(error, WebSocketDisconnect)
        if failed and isinstance(error, PlcError):
            subscriber.end("Unavailable")  # the database failed: the client retries later
        elif failed:
            log.error("export stream failed", exc_info=error)
            subscriber.end("Unavailable")
        if subscriber.ended is not None:
            await _close(websocket, subscriber.ended)
    finally:
        if metrics is not None:
            metrics.stream_connections.dec()
        hub.leave(subscriber)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _starting_cursor(
    directory: Directory, settings: Settings, raw_cursor: str | None
) -> int | str:
    """The ``seq`` a new connection starts after (the newest one without a cursor), or the
    reason it is closed with (``FutureCursor``, ``OutdatedCursor``).

    Raises:
        PlcError: the database failed (Unavailable)."""
    head = await directory.run(directory.store.tree_size)
    if raw_cursor is None:
        return head
    # past any seq: FutureCursor, as the reference answers a cursor beyond its newest op
    named = seq_or_past(raw_cursor)
    cursor = head + 1 if named is None else named
    if cursor > head:
        return "FutureCursor"
    if cursor < head:
        first = await directory.run(directory.store.export_after_seq, cursor, 1)
        created = parse_timestamp(line_head(first[0])["createdAt"])
        window = timedelta(seconds=settings.stream_backfill_window_s)
        if created < directory.clock() - window:
            return "OutdatedCursor"
    return cursor


async def _serve(
    websocket: WebSocket, directory: Directory, hub: StreamHub, cursor: int, fed: Subscriber
) -> None:
    """Backfill from ``cursor`` until the hub takes the connection, then send what it feeds;
    back to the database whenever it falls behind (until the connection closes or the hub
    drops it)."""
    sent = 0

    async def send(line: bytes) -> None:
        nonlocal sent
        await websocket.send_text(line.decode("utf-8"))
        sent += 1
        if sent % SLICE == 0:
            await asyncio.sleep(0)

    while True:
        joined = False
        while not joined:
            lines = await directory.run(directory.store.export_after_seq, cursor, PAGE)
            for line in lines:
                await send(line)
            if lines:
                cursor = seq_of(lines[-1])
            if len(lines) < PAGE:
                joined = await hub.join(cursor, fed)
        while fed.ended is None and not fed.behind:
            await fed.ready.wait()
            fed.ready.clear()
            while fed.lines and fed.ended is None:
                cursor, line = fed.lines.popleft()
                await send(line)
        if fed.ended is not None:
            return


async def _drain_incoming(websocket: WebSocket) -> None:
    """Read (and ignore) client messages so a close from the client is noticed."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


async def _close(websocket: WebSocket, reason: str) -> None:
    code = 1011 if reason == "Unavailable" else 1000
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), timeout=5)
