"""Per-DID endpoints: ``POST /{did}`` and the reads ``/{did}``, ``/data``, ``/log``,
``/log/audit``, ``/log/last`` (plc-spec-notes.md §4; design.md decision 1).

These routes are normally answered by :mod:`plc.api.fastpath` with the same behaviour; the
endpoints here document them and serve what the fast path declines (``HEAD``, a ``root_path``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from plc.api.bodies import (
    Refusal,
    body_codec,
    content_type_refusal,
    read_body,
    take_post_body,
)
from plc.api.deps import directory_of, settings_of
from plc.api.errors import message_response
from plc.api.etag import tagged_response
from plc.api.responses import DID_LD_JSON, JSON, NOT_MODIFIED, TEXT, error_responses, ok_json

router = APIRouter()


@router.post(
    "/{did}",
    summary="Submit a signed operation for a DID",
    response_class=Response,
    responses={
        200: {"description": "Accepted (or already stored)", "content": {"text/plain": {}}},
        **error_responses(400, 408, 409, 413, 415, 429, 503),
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
    content_type = request.headers.get("content-type", "")
    body = await take_post_body(
        directory,
        content_type_refusal(content_type),
        lambda: read_body(
            request.headers.get("content-length"), request.stream(), settings.max_body_bytes
        ),
        request.headers.get("content-encoding"),
        settings.body_timeout_s,
        settings.max_body_bytes,
        body_codec(content_type),
    )
    if isinstance(body, Refusal):
        return message_response(body.status, body.message, body.headers)
    await directory.submit_body(did, body)
    return Response(b"OK", media_type=TEXT)


@router.get(
    "/{did}",
    summary="Resolve a DID to its DID document",
    response_class=Response,
    responses={
        200: ok_json("DID document", "application/did+ld+json"),
        **NOT_MODIFIED,
        **error_responses(404),
    },
)
async def get_document(did: str, request: Request) -> Response:
    directory = directory_of(request)
    return tagged_response(request, await directory.run(directory.document, did), DID_LD_JSON)


@router.get(
    "/{did}/data",
    summary="Current state of a DID (keys, handles, services)",
    response_class=Response,
    responses={200: ok_json("DID state"), **NOT_MODIFIED, **error_responses(404)},
)
async def get_data(did: str, request: Request) -> Response:
    directory = directory_of(request)
    return tagged_response(request, await directory.run(directory.data, did), JSON)


@router.get(
    "/{did}/log",
    summary="Operation log (non-nullified operations, oldest first)",
    response_class=Response,
    responses={200: ok_json("Array of operations"), **NOT_MODIFIED, **error_responses(404)},
)
async def get_op_log(did: str, request: Request) -> Response:
    directory = directory_of(request)
    return tagged_response(request, await directory.run(directory.op_log, did), JSON)


@router.get(
    "/{did}/log/audit",
    summary="Audit log (every operation, nullified ones included)",
    response_class=Response,
    responses={
        200: ok_json("Array of {did, operation, cid, nullified, createdAt}"),
        **NOT_MODIFIED,
        **error_responses(404),
    },
)
async def get_audit_log(did: str, request: Request) -> Response:
    directory = directory_of(request)
    return tagged_response(request, await directory.run(directory.audit_log, did), JSON)


@router.get(
    "/{did}/log/last",
    summary="The newest non-nullified operation",
    response_class=Response,
    responses={200: ok_json("Operation"), **NOT_MODIFIED, **error_responses(404)},
)
async def get_last_op(did: str, request: Request) -> Response:
    directory = directory_of(request)
    return tagged_response(request, await directory.run(directory.last_op, did), JSON)
