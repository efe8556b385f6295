"""The one table from the project's exceptions to HTTP status codes and ``{"message"}`` bodies.

Nothing below ``plc.api`` knows a status code. Every error body is ``{"message": str}`` (the
reference's shape); user values in messages are already cut to 200 characters where raised.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from plc.errors import (
    Conflict,
    InvalidInput,
    InvalidOperation,
    NotFound,
    PlcError,
    PolicyViolation,
    RateLimited,
    Unavailable,
    VerificationError,
)
from plc.tlog.errors import HashReaderError

log = logging.getLogger("plc.api")

STATUS_OF: tuple[tuple[type[PlcError], int], ...] = (
    (RateLimited, 429),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
    (InvalidInput, 400),
    (InvalidOperation, 400),
    (PolicyViolation, 400),
    (VerificationError, 400),
    (PlcError, 400),
)

CORS_HEADERS = {"access-control-allow-origin": "*"}


def message_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A ``{"message": …}`` JSON response."""
    return Response(
        orjson.dumps({"message": message}),
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers=headers,
    )


def status_for(exc: PlcError) -> int:
    """HTTP status of a project exception (first matching class in :data:`STATUS_OF`)."""
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 400


def error_message(exc: PlcError) -> tuple[int, str, dict[str, str] | None]:
    """``(status, message, extra headers)`` of a project error: ``Retry-After`` for
    :class:`RateLimited`."""
    headers = {"retry-after": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
    return status_for(exc), exc.message, headers


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers: project errors, request validation, HTTP errors, and a last
    resort that answers 500 without detail (and logs the traceback)."""

    async def on_plc_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PlcError)
        if isinstance(exc, HashReaderError):
            # Only the server's own reader serves the log here: a stored hash is missing,
            # which is the database's fault, not the request's (it was a silent 400).
            return await on_unexpected(request, exc)
        return message_response(*error_message(exc))

    async def on_validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return message_response(400, f"Invalid request: {where} {first.get('msg', '')}".strip())

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            if request.url.path.startswith("/xrpc/"):
                body = orjson.dumps({"error": "InvalidRequest", "message": "Method Not Allowed"})
                headers = dict(exc.headers or {})
                return Response(body, 405, headers, "application/json; charset=utf-8")
            # Express has no such answer: a method no route takes is an unmatched route, 404.
            return message_response(404, "Not Found")
        if exc.status_code == 404 and request.url.path.startswith("/xrpc/"):
            # No such XRPC method here: XRPC servers answer 501 MethodNotImplemented (404 is
            # XRPCNotSupported to clients: "no XRPC server at all").
            body = orjson.dumps(
                {"error": "MethodNotImplemented", "message": "Method Not Implemented"}
            )
            return Response(body, 501, None, "application/json; charset=utf-8")
        detail = exc.detail if isinstance(exc.detail, str) else "Error"
        return message_response(exc.status_code, detail, dict(exc.headers or {}))

    async def on_client_gone(_request: Request, _exc: Exception) -> Response:
        # The client closed its connection before its body arrived: no one reads an answer,
        # and it is no server error (the fast path drops it the same way).
        return message_response(400, "Request body incomplete: the client disconnected")

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        if request.url.path.startswith("/xrpc/"):
            # XRPC clients read the error name; the lexicons' catch-all is this one.
            body = {"error": "InternalServerError", "message": "Internal Server Error"}
            return Response(
                orjson.dumps(body), 500, CORS_HEADERS, "application/json; charset=utf-8"
            )
        # Starlette answers this from its outermost middleware, outside CorsMiddleware.
        return message_response(500, "Internal Server Error", CORS_HEADERS)

    app.add_exception_handler(PlcError, on_plc_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(Exception, on_unexpected)
