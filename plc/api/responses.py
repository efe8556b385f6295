"""Response helpers and OpenAPI descriptions shared by the routes."""

from __future__ import annotations

import re
from typing import Any

JSON = "application/json; charset=utf-8"
DID_LD_JSON = "application/did+ld+json; charset=utf-8"
JSONLINES = "application/jsonlines"
TEXT = "text/plain; charset=utf-8"


def accepts_gzip(accept_encoding: str) -> bool:
    """True if an ``Accept-Encoding`` header value accepts ``gzip`` (RFC 9110 §12.5.3): a
    ``gzip`` (or ``x-gzip``) coding, else ``*``, listed with a weight above 0. A coding with an
    unreadable weight counts as not accepted."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                weight = float(value) if _QVALUE.fullmatch(value) else 0.0
        if coding:
            weights[coding] = max(weight, weights.get(coding, 0.0))
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False


_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


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
        415: "Content-Encoding other than identity, gzip or deflate, or a charset other than UTF",
        429: "Per-DID rate limit; see Retry-After",
        503: "Database unavailable or locked; retry",
    }
    return {code: _message(text[code]) for code in codes}


def ok_json(description: str, media_type: str = "application/json") -> dict[str, Any]:
    """OpenAPI entry of a 200 JSON response."""
    return {"description": description, "content": {media_type: {"schema": {}}}}


NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {
        "description": "Not modified: If-None-Match names the body's ETag (no body)",
    }
}
"""OpenAPI entry of the 304 a tagged read answers (:mod:`plc.api.etag`)."""


def query_parameter(
    name: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    """An OpenAPI query parameter with its exact schema. The routes take their parameters as
    optional strings (so that every bad value is their own 400 with a message, not a schema
    error) and hide them from FastAPI's document; this is what they document instead."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


def only_real_answers(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's OpenAPI dict, changed in place) without the 422 answers and
    their schemas FastAPI adds to every route with parameters: a request FastAPI cannot
    validate is answered 400 with a message here (``plc.api.errors``), and each route lists
    its 400 where it can happen."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if "components" in document and not schemas:
        document["components"].pop("schemas", None)
        if not document["components"]:
            del document["components"]
    return document
