"""``GET /metrics``: the server's Prometheus metrics (``plc.metrics``), when
``PLC_METRICS`` is on."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from plc.metrics import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, DirectoryMetrics

router = APIRouter()


@router.get(
    "/metrics",
    summary="Prometheus metrics of this server (all its worker processes)",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format 0.0.4, or OpenMetrics when the Accept "
            "header asks for application/openmetrics-text",
            "content": {TEXT_CONTENT_TYPE: {}, OPENMETRICS_CONTENT_TYPE: {}},
        },
    },
)
def metrics(request: Request) -> Response:
    registry: DirectoryMetrics = request.app.state.metrics
    body, content_type = registry.exposition(request.headers.get("accept", ""))
    return Response(body, headers={"content-type": content_type})
