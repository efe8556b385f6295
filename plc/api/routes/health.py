"""``GET /_health`` and ``GET /``."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter
from starlette.responses import RedirectResponse, Response

from plc.api.deps import DirectoryDep, SettingsDep
from plc.api.responses import JSON
from plc.errors import DATABASE_UNAVAILABLE

router = APIRouter()


@router.get(
    "/_health",
    summary="Liveness and database check",
    response_class=Response,
    responses={
        200: {"description": "Healthy", "content": {"application/json": {}}},
        503: {"description": "Database unreachable", "content": {"application/json": {}}},
    },
)
async def health(directory: DirectoryDep, settings: SettingsDep) -> Response:
    stalled = directory.committer.stalled_s()
    if stalled is not None:
        # Reads may still work (a new connection) while writes wait on one that stopped
        # answering: a load balancer must not keep sending POSTs here.
        return _unhealthy(settings.version, f"{COMMIT_STALLED}: for {stalled:.0f} s")
    try:
        await asyncio.wait_for(directory.run(directory.store.ping), PING_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - any database failure means unhealthy
        return _unhealthy(settings.version, DATABASE_UNAVAILABLE)
    return Response(orjson.dumps({"version": settings.version}), media_type=JSON)


PING_TIMEOUT_S = 5.0
"""Longest wait for the database's answer to ``/_health``'s ping (a load balancer's check
must not wait out ``PLC_DB_TIMEOUT_S``)."""
COMMIT_STALLED = "Database unavailable: a commit has waited for its answer"


def _unhealthy(version: str, message: str) -> Response:
    # The reference's body, plus the message every other error of ours carries.
    body = {"version": version, "error": "Service Unavailable", "message": message}
    return Response(orjson.dumps(body), status_code=503, media_type=JSON)


@router.get("/", include_in_schema=False)
def home() -> Response:
    return RedirectResponse("/docs", status_code=302)
