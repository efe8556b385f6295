"""Response helpers and OpenAPI descriptions shared by the routes."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

JSON = "application/json; charset=utf-8"
DID_LD_JSON = "application/did+ld+json; charset=utf-8"
JSONLINES = "application/jsonlines"
TEXT = "text/plain; charset=utf-8"


def json_bytes(body: bytes, media_type: str = JSON, status: int = 200) -> Response:
    """A response whose body is already-serialised JSON."""
    return Response(body, status_code=status, media_type=media_type)


def _message(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {"message": {"type": "string"}},
                }
            }
        },
    }


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error status codes."""
    text = {
        400: "Malformed or invalid request or operation",
        404: "Not registered or not available (tombstoned)",
        408: "The request body did not arrive within the body timeout",
        409: "The DID's head moved while the operation was validated; retry",
        413: "Request body over the size limit",
        415: "Content-Encoding other than identity, gzip or deflate",
        429: "Per-DID rate limit; see Retry-After",
        503: "Database unavailable or locked; retry",
    }
    return {code: _message(text[code]) for code in codes}


def ok_json(description: str, media_type: str = "application/json") -> dict[str, Any]:
    """OpenAPI entry of a 200 JSON response."""
    return {"description": description, "content": {media_type: {"schema": {}}}}
