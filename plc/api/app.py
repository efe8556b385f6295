"""The FastAPI application factory.

``create_app(settings)`` wires settings → engine → migrations → store → directory (and its
committer thread) in the lifespan; tests pass their own clock and engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import plc
from plc.api.errors import install_error_handlers
from plc.api.fastpath import PlcApp, headers_only
from plc.api.identity_source import DirectoryDocumentSource
from plc.api.routes import did, export, health, identity, metrics, stream, tlog
from plc.api.stream_hub import PAGE, CommitSignal, StreamHub
from plc.api.worker_lifetime import end_with_parent
from plc.checkpoints import Checkpointer, load_or_create_signer
from plc.config import Settings
from plc.logging_setup import configure_logging
from plc.metrics import DirectoryMetrics
from plc.resolve import IdentityResolver, ResolverSettings
from plc.service import Directory, system_clock
from plc.store.engine import is_sqlite, make_engine, make_read_engine
from plc.store.migrate import upgrade
from plc.store.sql import Clock, SqlStore
from plc.store.tlog_store import TlogStore
from plc.validation_process import ValidationProcess

log = logging.getLogger("plc.serve")

DESCRIPTION = (
    "A did:plc directory, wire-compatible with plc.directory, with a transparency log. "
    'Every error body is `{"message": string}`.'
)


class CorsMiddleware:
    """Adds ``Access-Control-Allow-Origin: *`` to every response and answers every ``OPTIONS``
    with 204, as the reference's ``cors()`` does (cheaper than a general CORS middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            # Every OPTIONS is a preflight to cors() (preflightContinue off): 204 whatever
            # the path, with or without Access-Control-Request-Method.
            requested = dict(scope["headers"]).get(b"access-control-request-headers")
            headers = [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-allow-methods", b"GET,HEAD,PUT,PATCH,POST,DELETE"),
                (b"vary", b"Access-Control-Request-Headers"),
                (b"content-length", b"0"),
            ]
            if requested:
                headers.append((b"access-control-allow-headers", requested))
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", b"*"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)


class HeadMiddleware:
    """Answers ``HEAD`` as the ``GET`` of the same path, headers only (the status, and the
    ``Content-Length`` the body would have), as the reference's Express router does for
    every GET route; FastAPI's routes take GET alone (RFC 9110 §9.3.2)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        await self.app({**scope, "method": "GET"}, receive, headers_only(send))


def create_served_app() -> FastAPI:
    """The app as ``plc serve`` runs it in each uvicorn worker: JSON logging set up in this
    process first (with ``PLC_WORKERS`` > 1 each worker is a process of its own, which the
    CLI's set-up does not reach), then :func:`create_app` with the settings of the
    environment ``plc serve`` hands down. A worker ends when ``plc serve`` dies
    (:func:`~plc.api.worker_lifetime.end_with_parent`)."""
    end_with_parent()
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)


async def _upgrade_when_reachable(engine: Engine, wait_s: float) -> None:
    """Migrate (:func:`upgrade`), waiting up to ``wait_s`` seconds for a database that does
    not answer (1, 2, 4 … 10 s between tries). ``plc serve`` checks the database before it
    starts any worker, but a worker that replaces a dead one starts on its own: during an
    outage its start failed, and uvicorn then stopped the whole server.

    Raises:
        OperationalError, InterfaceError: the database still does not answer.
    """
    deadline = time.monotonic() + wait_s
    pause = 1.0
    while True:
        try:
            upgrade(engine)
            return
        except (OperationalError, InterfaceError) as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            wait = min(pause, left)
            log.warning(
                "database not reachable at start (%s); trying again in %.0f s",
                type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
                wait,
            )
            await asyncio.sleep(wait)
            pause = min(pause * 2, 10.0)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock = system_clock,
    engine: Engine | None = None,
    resolver_settings: ResolverSettings | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        settings: defaults to :class:`Settings` read from the environment.
        clock: the time source for new ops (tests inject a fixed or stepping clock).
        engine: an engine to use instead of one built from ``settings.database_url``.
        resolver_settings: identity-resolution settings (default: ``PLC_RESOLVE_*``).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = engine or make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            busy_timeout_ms=settings.db_busy_timeout_ms,
        )
        await _upgrade_when_reachable(db, settings.db_start_wait_s)
        reads = make_read_engine(
            db, pool_size=settings.db_pool_size, busy_timeout_ms=settings.db_busy_timeout_ms
        )
        store = SqlStore(db, reads, settings.db_busy_timeout_ms)
        store.pin_reads()  # SQLite: the event loop's reads on a connection of their own
        directory = Directory(
            store,
            settings.policy(),
            clock,
            settings.commit_batch_max,
            inline_io=is_sqlite(db),
            db_timeout_s=settings.db_timeout_s,
        )
        tlog = TlogStore(store)
        store.leaf_hooks.append(tlog.append_in)
        signer = load_or_create_signer(tlog, settings.log_signing_key, settings.log_origin)
        checkpointer = Checkpointer(
            tlog,
            signer,
            clock,
            settings.checkpoint_interval_ms / 1000,
            kept=settings.checkpoints_kept,
        )
        if settings.metrics:
            app.state.metrics = DirectoryMetrics(store.tree_size)
            directory.metrics = app.state.metrics
            directory.committer.listeners.append(app.state.metrics.committed)
        signal = CommitSignal()
        directory.committer.listeners.append(signal.notify)
        app.state.commit_signal = signal
        poll_s = settings.stream_poll_interval_ms / 1000
        hub = StreamHub(directory, signal, poll_s, keep=max(2 * PAGE, settings.stream_buffer))
        app.state.stream_hub = hub
        validator = _validation_process(settings, db)
        directory.start()
        checkpointer.start()
        app.state.tlog = tlog
        app.state.checkpointer = checkpointer
        app.state.directory = directory
        app.state.settings = settings
        app.state.identity_resolver = IdentityResolver(
            resolver_settings or ResolverSettings(), DirectoryDocumentSource(directory)
        )
        try:
            if validator is not None:
                await validator.start()
                directory.validator = validator
            yield
        finally:
            try:
                await hub.stop()
                if validator is not None:
                    directory.validator = None
                    await validator.close()
            finally:
                directory.stop()
                checkpointer.stop()
                store.close()
                if reads is not db:
                    reads.dispose()
                if engine is None:
                    db.dispose()

    app = PlcApp(
        title="did:plc directory",
        version=plc.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
        # No redirects: a trailing slash is dropped in front of the routes (PlcApp).
        redirect_slashes=False,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    if settings.metrics:
        app.include_router(metrics.router)
    app.include_router(export.router)
    app.include_router(stream.router)
    app.include_router(tlog.router)
    app.include_router(identity.router)
    app.include_router(did.router)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(CorsMiddleware)
    return app


def _validation_process(settings: Settings, db: Engine) -> ValidationProcess | None:
    """The validation process ``settings.validation_process`` asks for, or None (also for a
    database another process cannot open: PostgreSQL or in-memory SQLite)."""
    if not settings.validation_process:
        return None
    database = db.url.database or ""
    if not is_sqlite(db) or database in ("", ":memory:") or "mode=memory" in str(db.url):
        return None
    url = db.url.render_as_string(hide_password=False)
    return ValidationProcess(
        url, settings.policy(), settings.db_busy_timeout_ms, settings.log_level
    )


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app`` (what ``openapi/plc-directory.json`` holds)."""
    return app.openapi()
