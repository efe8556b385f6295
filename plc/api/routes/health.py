"""``GET /_health`` and ``GET /``."""

from __future__ import annotations

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
    try:
        await directory.run(directory.store.ping)
    except Exception:  # noqa: BLE001 - any database failure means unhealthy
        # The reference's body, plus the message every other error of ours carries.
        body = {
            "version": settings.version,
            "error": "Service Unavailable",
            "message": DATABASE_UNAVAILABLE,
        }
        return Response(orjson.dumps(body), status_code=503, media_type=JSON)
    return Response(orjson.dumps({"version": settings.version}), media_type=JSON)


@router.get("/", include_in_schema=False)
def home() -> Response:
    return RedirectResponse("/docs", status_code=302)
