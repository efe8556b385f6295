"""Per-DID endpoints: ``POST /{did}`` and the reads ``/{did}``, ``/data``, ``/log``,
``/log/audit``, ``/log/last`` (plc-spec-notes.md §4; design.md decision 1)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from plc.api.deps import directory_of, settings_of
from plc.api.errors import message_response
from plc.api.responses import DID_LD_JSON, TEXT, error_responses, json_bytes, ok_json
from plc.errors import InvalidInput

router = APIRouter()

DRAIN_LIMIT = 1 << 20
"""Bytes of an oversized body read (and dropped) before answering 413."""


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` bytes (drained up to 1 MiB)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_LIMIT:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_LIMIT:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        return None
    return b"".join(chunks)


@router.post(
    "/{did}",
    summary="Submit a signed operation for a DID",
    response_class=Response,
    responses={
        200: {"description": "Accepted (or already stored)", "content": {"text/plain": {}}},
        **error_responses(400, 409, 413, 429, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def post_operation(did: str, request: Request) -> Response:
    directory, settings = directory_of(request), settings_of(request)
    if not _is_json(request.headers.get("content-type", "")):
        return message_response(400, "Content-Type must be application/json")
    body = await _read_body(request, settings.max_body_bytes)
    if body is None:
        return message_response(413, "request entity too large", {"connection": "close"})
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON body: {str(exc)[:200]}") from exc
    await directory.submit(did, value)
    return Response(b"OK", media_type=TEXT)


@router.get(
    "/{did}",
    summary="Resolve a DID to its DID document",
    response_class=Response,
    responses={200: ok_json("DID document", "application/did+ld+json"), **error_responses(404)},
)
async def get_document(did: str, request: Request) -> Response:
    directory = directory_of(request)
    return json_bytes(await directory.run(directory.document, did), DID_LD_JSON)


@router.get(
    "/{did}/data",
    summary="Current state of a DID (keys, handles, services)",
    response_class=Response,
    responses={200: ok_json("DID state"), **error_responses(404)},
)
async def get_data(did: str, request: Request) -> Response:
    directory = directory_of(request)
    return json_bytes(await directory.run(directory.data, did))


@router.get(
    "/{did}/log",
    summary="Operation log (non-nullified operations, oldest first)",
    response_class=Response,
    responses={200: ok_json("Array of operations"), **error_responses(404)},
)
async def get_op_log(did: str, request: Request) -> Response:
    directory = directory_of(request)
    return json_bytes(await directory.run(directory.op_log, did))


@router.get(
    "/{did}/log/audit",
    summary="Audit log (every operation, nullified ones included)",
    response_class=Response,
    responses={
        200: ok_json("Array of {did, operation, cid, nullified, createdAt}"),
        **error_responses(404),
    },
)
async def get_audit_log(did: str, request: Request) -> Response:
    directory = directory_of(request)
    return json_bytes(await directory.run(directory.audit_log, did))


@router.get(
    "/{did}/log/last",
    summary="The newest non-nullified operation",
    response_class=Response,
    responses={200: ok_json("Operation"), **error_responses(404)},
)
async def get_last_op(did: str, request: Request) -> Response:
    directory = directory_of(request)
    return json_bytes(await directory.run(directory.last_op, did))
