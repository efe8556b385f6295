"""XRPC identity endpoints, ``com.atproto.identity.*`` (plc-spec-notes.md §9.3; issue 5).

- ``GET /xrpc/com.atproto.identity.resolveHandle?handle=`` -> ``{"did"}``
- ``GET /xrpc/com.atproto.identity.resolveDid?did=`` -> ``{"didDoc"}``
- ``GET /xrpc/com.atproto.identity.resolveIdentity?identifier=`` ->
  ``{"did", "handle", "didDoc"}`` (``com.atproto.identity.defs#identityInfo``)
- ``POST /xrpc/com.atproto.identity.refreshIdentity`` with ``{"identifier"}`` -> the same,
  caches bypassed

Errors use the XRPC envelope ``{"error": <lexicon name>, "message": <text>}`` with
**status 400** for every lexicon error (``InvalidRequest``, ``HandleNotFound``,
``DidNotFound``, ``DidDeactivated``), as the Bluesky PDS answers. 404 is deliberately not used:
in XRPC a 404 means "this server does not serve the method" (``XRPCNotSupported``), and the
atproto clients (e.g. the Python SDK's ``is_method_not_served``) read it that way. A transient
failure of the did:plc store is 503 ``{"error": "Unavailable"}``.

``resolveHandle`` answers a DID only when its document claims the handle back (the lexicon
allows skipping that check; the directory never does). A handle that cannot be verified
within the time budget is ``"handle.invalid"`` in a 200 identity, never a timeout.

The handlers take the resolver from ``request.app.state.identity_resolver`` (an
:class:`~plc.resolve.IdentityResolver` set by the app factory). Parameters are validated here,
not by FastAPI, so that a missing or malformed one is an XRPC ``InvalidRequest``; user values
in messages are cut to 200 characters.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from plc.api.bodies import Refusal, read_body, take_body
from plc.api.deps import settings_of
from plc.api.responses import query_parameter
from plc.errors import InvalidInput, PlcError, Unavailable, echo
from plc.resolve.errors import DidDeactivated, DidNotFound, HandleNotFound, InvalidRequest
from plc.resolve.resolver import IdentityResolver
from plc.resolve.syntax import DID_PATTERN, HANDLE_PATTERN, MAX_DID_CHARS, MAX_HANDLE_CHARS
from plc.service import decode_json_body

router = APIRouter(tags=["identity"])

MAX_INPUT_BYTES = 8_192
"""Largest ``refreshIdentity`` request body read (bytes)."""

_JSON = "application/json; charset=utf-8"
_LEXICON_ERRORS = (InvalidRequest, HandleNotFound, DidNotFound, DidDeactivated)


def _error_schema(names: list[str]) -> dict[str, Any]:
    return {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string", "enum": names},
                        "message": {"type": "string"},
                    },
                }
            }
        }
    }


def _responses(output: dict[str, Any], errors: list[str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of an identity method."""
    return {
        200: {"description": "Success", "content": {"application/json": {"schema": output}}},
        400: {"description": "XRPC error", **_error_schema(["InvalidRequest", *errors])},
        503: {
            "description": "The DID store is unavailable; retry",
            **_error_schema(["Unavailable"]),
        },
    }


_IDENTITY_INFO = {
    "type": "object",
    "required": ["did", "handle", "didDoc"],
    "properties": {
        "did": {"type": "string", "format": "did"},
        "handle": {"type": "string", "format": "handle", "description": "or handle.invalid"},
        "didDoc": {"type": "object"},
    },
}
_IDENTITY_ERRORS = ["HandleNotFound", "DidNotFound", "DidDeactivated"]


_DID_SYNTAX = {"pattern": f"^{DID_PATTERN}$", "maxLength": MAX_DID_CHARS}
_HANDLE_SYNTAX = {"pattern": f"^{HANDLE_PATTERN}$", "maxLength": MAX_HANDLE_CHARS}
_SYNTAX: dict[str, dict[str, Any]] = {
    "did": _DID_SYNTAX,
    "handle": _HANDLE_SYNTAX,
    "at-identifier": {"anyOf": [_DID_SYNTAX, _HANDLE_SYNTAX]},
}
"""JSON Schema of each string format, from the checks the resolver applies (a value that
fails them is answered 400 ``InvalidRequest``)."""


def _identifier_schema(string_format: str) -> dict[str, Any]:
    return {"type": "string", "format": string_format, **_SYNTAX[string_format]}


def _one_parameter(name: str, string_format: str, description: str) -> dict[str, Any]:
    """``openapi_extra`` of a method with one required query parameter, read by
    :func:`_param` (given once and not empty, or the answer is 400 ``InvalidRequest``)."""
    schema = _identifier_schema(string_format)
    return {"parameters": [query_parameter(name, schema, description, required=True)]}


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=_JSON)


def _error(err: PlcError) -> Response:
    """XRPC error envelope for a resolver error; other project errors propagate."""
    if isinstance(err, _LEXICON_ERRORS):
        return _json({"error": err.xrpc_error, "message": err.message}, 400)
    if isinstance(err, Unavailable):
        return _json({"error": "Unavailable", "message": err.message}, 503)
    raise err


def _resolver(request: Request) -> IdentityResolver:
    resolver: IdentityResolver = request.app.state.identity_resolver
    return resolver


def _param(request: Request, name: str) -> str:
    """The single, non-empty query parameter ``name``.

    Raises:
        InvalidRequest: missing, empty or repeated.
    """
    values = request.query_params.getlist(name)
    if not values or values[0] == "":
        raise InvalidRequest(f'Params must have the property "{name}"')
    if len(values) > 1:
        raise InvalidRequest(f'Params must have only one "{name}"')
    return values[0]


async def _identifier_from_body(request: Request) -> str:
    """``identifier`` of a JSON ``refreshIdentity`` input, read up to :data:`MAX_INPUT_BYTES`.

    Raises:
        InvalidRequest: wrong Content-Type, body too large, not JSON, or no string identifier.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media_type:  # the XRPC server's wording, with what it wants
        raise InvalidRequest(
            'Request encoding (Content-Type) required but not provided: send {"identifier": '
            '"<handle or DID>"} as application/json'
        )
    if media_type != "application/json":
        raise InvalidRequest(f"Wrong request encoding (Content-Type): {echo(media_type)}")
    body = await take_body(
        read_body(request.headers.get("content-length"), request.stream(), MAX_INPUT_BYTES),
        request.headers.get("content-encoding"),
        settings_of(request).body_timeout_s,
        MAX_INPUT_BYTES,
    )
    if isinstance(body, Refusal):  # too slow (408), too large (413), an unknown encoding
        raise _BodyRefused(body)
    try:
        data = decode_json_body(body)
    except InvalidInput as err:
        raise InvalidRequest("Request body is not valid JSON") from err
    if not isinstance(data, dict) or "identifier" not in data:
        raise InvalidRequest('Input must have the property "identifier"')
    identifier = data["identifier"]
    if not isinstance(identifier, str):
        raise InvalidRequest("Input/identifier must be a string")
    if not identifier:
        raise InvalidRequest("Input/identifier must be a handle or a DID")
    return identifier


@router.get(
    "/xrpc/com.atproto.identity.resolveHandle",
    summary="Resolve a handle to its DID (bidirectionally verified)",
    responses=_responses(
        {"type": "object", "required": ["did"], "properties": {"did": {"type": "string"}}},
        ["HandleNotFound"],
    ),
    openapi_extra=_one_parameter("handle", "handle", "The handle to resolve."),
)
async def resolve_handle(request: Request) -> Response:
    """``com.atproto.identity.resolveHandle``: ``handle`` -> ``{"did"}``."""
    try:
        did = await _resolver(request).resolve_handle(_param(request, "handle"))
    except PlcError as err:
        return _error(err)
    return _json({"did": did})


@router.get(
    "/xrpc/com.atproto.identity.resolveDid",
    summary="Resolve a DID to its DID document",
    responses=_responses(
        {"type": "object", "required": ["didDoc"], "properties": {"didDoc": {"type": "object"}}},
        ["DidNotFound", "DidDeactivated"],
    ),
    openapi_extra=_one_parameter("did", "did", "The DID to resolve."),
)
async def resolve_did(request: Request) -> Response:
    """``com.atproto.identity.resolveDid``: ``did`` -> ``{"didDoc"}``."""
    try:
        document = await _resolver(request).resolve_did(_param(request, "did"))
    except PlcError as err:
        return _error(err)
    return _json({"didDoc": document})


@router.get(
    "/xrpc/com.atproto.identity.resolveIdentity",
    summary="Resolve a handle or DID to a verified identity",
    responses=_responses(_IDENTITY_INFO, _IDENTITY_ERRORS),
    openapi_extra=_one_parameter("identifier", "at-identifier", "A handle or a DID."),
)
async def resolve_identity(request: Request) -> Response:
    """``com.atproto.identity.resolveIdentity``: ``identifier`` -> ``identityInfo``."""
    try:
        info = await _resolver(request).resolve_identity(_param(request, "identifier"))
    except PlcError as err:
        return _error(err)
    return _json(info)


@router.post(
    "/xrpc/com.atproto.identity.refreshIdentity",
    summary="Re-resolve a handle or DID, bypassing caches",
    responses={
        **_responses(_IDENTITY_INFO, _IDENTITY_ERRORS),
        408: {
            "description": "The body did not arrive within PLC_BODY_TIMEOUT_S (connection closed)",
            **_error_schema(["InvalidRequest"]),
        },
        413: {
            "description": f"A body over {MAX_INPUT_BYTES} bytes (connection closed)",
            **_error_schema(["InvalidRequest"]),
        },
        415: {
            "description": "A Content-Encoding other than identity, gzip or deflate",
            **_error_schema(["InvalidRequest"]),
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["identifier"],
                        "properties": {"identifier": _identifier_schema("at-identifier")},
                    }
                }
            },
        }
    },
)
async def refresh_identity(request: Request) -> Response:
    """``com.atproto.identity.refreshIdentity``: ``{"identifier"}`` -> ``identityInfo``."""
    try:
        identifier = await _identifier_from_body(request)
        info = await _resolver(request).resolve_identity(identifier, refresh=True)
    except _BodyRefused as refused:
        body, status = (
            {"error": "InvalidRequest", "message": refused.refusal.message},
            refused.refusal.status,
        )
        return Response(
            orjson.dumps(body),
            status_code=status,
            media_type=_JSON,
            headers=refused.refusal.headers,
        )
    except PlcError as err:
        return _error(err)
    return _json(info)


class _BodyRefused(Exception):
    """The request body was refused before it was read as JSON (:class:`Refusal`)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
