"""Validation of submitted operations in a child process (SQLite deployments).

Why: validating a ``POST /{did}`` body (JSON decode, schema, DAG-CBOR and CID, signature,
the rules, the new state's bodies) is about half the CPU of an update, all of it under the
GIL; the other half (HTTP, group commit) stays in the serving process. A child process does
the validation, so one server uses a second core. One child, not several: it answers in the
order it was asked, so ops go on being committed in the order their ``createdAt`` was read
(before the hop), which ``/export?after=<timestamp>`` readers rely on. The child only reads
the database (SQLite in WAL mode: readers never block the writer) and never writes; the
serving process commits every op with the head compare-and-swap as before, so a child's view
of a DID that is a moment old can at worst cost a 409, exactly as two concurrent validations
in one process can.

Off by default (``PLC_VALIDATION_PROCESS``): the hop to the child adds latency, which pays
off only when many clients write at once (2 cores, reference loadgen: 32 writers 1.5x the
updates/s of in-process validation; 8 writers 10-20 % fewer).

A child that is not ready yet, gone, or silent for :data:`REPLY_TIMEOUT_S` is not used
(a silent one is killed, and so is one that cannot read the database):
:meth:`ValidationProcess.prepare` raises
:class:`ValidatorUnavailable` and the caller validates in its own process. A child that went
away is replaced after :data:`RESTART_DELAY_S`, doubled for each replacement that has not
answered a request yet, up to :data:`RESTART_DELAY_MAX_S`.

Wire format (a ``socketpair``): frames of ``<II`` (request id, length) + pickle.
A request is ``(did, body, now)``; a reply is ``(kind, payload)``: ``0`` a PendingCommit as
a tuple of plain values (:func:`_flatten`; pickling the dataclasses themselves costs the
serving process several times more), ``3`` a SubmitResult (already stored), ``1`` a
:class:`PlcError` as (class, message, attributes), ``2`` an unexpected failure (its class
name; the serving process then validates the op itself). Request id 0 is the child's
"ready" frame. Only our own processes are at either end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import pickle
import signal
import socket
import struct
from datetime import datetime
from typing import Any

from plc.errors import PlcError, Unavailable
from plc.operation import Operation
from plc.policy import PolicySettings
from plc.rules import PreparedOperation
from plc.store.records import PendingCommit
from plc.store.sql import SqlStore

log = logging.getLogger("plc.validation")

_HEADER = struct.Struct("<II")
_READY = 0
_PENDING, _PLC_ERROR, _FAILURE, _STORED = 0, 1, 2, 3


REPLY_TIMEOUT_S = 10.0
"""A child that has not answered a request after this long is taken for stuck and killed."""

RESTART_DELAY_S = 1.0
"""Seconds from a child's end to the start of its replacement (doubled while replacements
fail before answering anything)."""

RESTART_DELAY_MAX_S = 60.0
"""The longest wait before a replacement child is started."""


class ValidatorUnavailable(Exception):
    """The child cannot take the request (starting, gone, stuck, or closed)."""


def child_main(
    sock: socket.socket,
    database_url: str,
    policy: PolicySettings,
    busy_timeout_ms: int,
    log_level: str = "info",
) -> None:
    """A child's loop: validate requests from ``sock`` until it closes (the parent is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the child stops
    from plc.logging_setup import configure_logging
    from plc.service import Directory
    from plc.store.engine import make_engine

    configure_logging(log_level)

    clock = _RequestClock()
    engine = make_engine(database_url, pool_size=1, busy_timeout_ms=busy_timeout_ms)
    store = SqlStore(engine, engine, busy_timeout_ms)
    store.pin_reads()
    directory = Directory(store, policy, clock, inline_io=True)
    stream = sock.makefile("rb")
    sock.sendall(_HEADER.pack(_READY, 0))
    while True:
        header = stream.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        request_id, length = _HEADER.unpack(header)
        did, body, clock.now = pickle.loads(stream.read(length))
        reply: tuple[int, Any]
        try:
            prepared = directory.prepare_body(did, body)
            if isinstance(prepared, PendingCommit):
                reply = (_PENDING, _flatten(prepared))
            else:
                reply = (_STORED, tuple(prepared))
        except PlcError as exc:
            reply = (_PLC_ERROR, (type(exc), exc.message, vars(exc)))
        except Exception as exc:  # noqa: BLE001 - the parent then validates it itself
            log.exception("validation failed")
            reply = (_FAILURE, type(exc).__name__)
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        sock.sendall(_HEADER.pack(request_id, len(data)) + data)


class _RequestClock:
    """The serving process's clock reading for the request being validated."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


def _flatten(pending: PendingCommit) -> tuple[Any, ...]:
    """A PendingCommit as plain values, its op's export JSON computed here (off the serving
    process)."""
    prepared = pending.prepared
    operation = prepared.operation
    return (
        prepared.did,
        operation.data,
        operation.cid,
        operation.signed_cbor,
        operation.canonical_json(),
        prepared.created_at,
        prepared.prev,
        prepared.nullified,
        prepared.key_index,
        prepared.valid_until,
        pending.expected_head,
        pending.data,
        pending.document,
        pending.restamp,
    )


def _unflatten(values: tuple[Any, ...]) -> PendingCommit:
    """The PendingCommit :func:`_flatten` took apart."""
    did, data, cid, signed, canonical, created_at, prev, nullified, key_index, until, *rest = values
    operation = Operation(data=data, cid=cid, _cache={"signed": signed, "json": canonical})
    prepared = PreparedOperation(did, operation, created_at, prev, nullified, key_index, until)
    return PendingCommit(prepared, *rest)


def _rebuild_error(cls: type[PlcError], message: str, attributes: dict[str, Any]) -> PlcError:
    """The PlcError a child raised (subclasses with extra constructor arguments included)."""
    exc = cls.__new__(cls)
    PlcError.__init__(exc, message)
    exc.__dict__.update(attributes)
    return exc


class ValidationProcess:
    """A child process that runs :meth:`plc.service.Directory.prepare` for the serving one.

    Args:
        database_url: the SQLite file database the server uses (already migrated).
        policy: the admission limits.
        busy_timeout_ms: SQLite busy timeout of the child's read connection.
        log_level: the child's log level (it logs JSON lines on stderr, as the server).
    """

    def __init__(
        self,
        database_url: str,
        policy: PolicySettings,
        busy_timeout_ms: int,
        log_level: str = "info",
    ) -> None:
        self.database_url = database_url
        self.policy = policy
        self.busy_timeout_ms = busy_timeout_ms
        self.log_level = log_level
        self.validated = 0
        """Ops the child validated (results and PlcErrors): what it took off this process."""
        self.restarts = 0
        """Children started to replace one that went away."""
        self._process: Any = None
        self._writer: asyncio.StreamWriter | None = None
        self._transport: asyncio.WriteTransport | None = None
        self._pump: asyncio.Task[None] | None = None
        self._ready = False
        self._alive = False
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self._closed = False
        self._closing = asyncio.Event()
        self._failed_restarts = 0  # replacements in a row that have not answered yet
        self._restart: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the child; it is used once it reports ready (about a second later)."""
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self._ready = False
        parent_end, child_end = socket.socketpair()
        try:
            self._process = context.Process(
                target=child_main,
                args=(
                    child_end,
                    self.database_url,
                    self.policy,
                    self.busy_timeout_ms,
                    self.log_level,
                ),
                name="plc-validator",
                daemon=True,
            )
            await asyncio.to_thread(self._process.start)
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        reader, self._writer = await asyncio.open_connection(sock=parent_end)
        self._transport = self._writer.transport  # the writer is kept: collected, it closes
        self._alive = True
        self._pump = asyncio.get_running_loop().create_task(self._read_replies(reader))

    @property
    def available(self) -> bool:
        """True when the child is ready to take a request."""
        return self._ready and self._alive

    async def prepare(self, did: str, body: bytes, now: datetime) -> Any:
        """``Directory.prepare_body(did, body)`` with the clock reading ``now``, in the child.

        Returns what ``prepare`` returns (a PendingCommit or a SubmitResult).

        Raises:
            PlcError: as ``prepare`` (or the body is not JSON).
            ValidatorUnavailable: the child is not ready, went away or got stuck meanwhile,
                or hit an unexpected error (not a PlcError): validate here, for the answer
                the serving process would give.
        """
        if not self.available or self._transport is None:
            raise ValidatorUnavailable("validation process not ready")
        request_id = self._next_id
        self._next_id = request_id % 0xFFFFFFFF + 1
        future: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        data = pickle.dumps((did, body, now), protocol=pickle.HIGHEST_PROTOCOL)
        self._transport.write(_HEADER.pack(request_id, len(data)) + data)
        try:
            kind, payload = await asyncio.wait_for(future, REPLY_TIMEOUT_S)
        except TimeoutError:
            self._pending.pop(request_id, None)
            log.error("validation process silent for %.0f s: killed", REPLY_TIMEOUT_S)
            self._stop_child()
            raise ValidatorUnavailable("validation process stuck") from None
        if kind == _PLC_ERROR and issubclass(payload[0], Unavailable):
            # The child could not read the database; this process may still be able to.
            log.error("validation process cannot read the database: replaced")
            self._stop_child()
            raise ValidatorUnavailable("validation process cannot read the database")
        self._failed_restarts = 0
        if kind == _FAILURE:
            log.warning("validation process failed (%s); validating in-process", payload)
            raise ValidatorUnavailable(str(payload))
        self.validated += 1
        if kind == _PENDING:
            return _unflatten(payload)
        if kind == _STORED:
            from plc.service import SubmitResult

            return SubmitResult(*payload)
        raise _rebuild_error(*payload)

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        """Resolve requests with the child's replies until its end closes or a reply cannot
        be read; then every request still waiting fails with ValidatorUnavailable, and
        (unless closed or cancelled) a replacement child is scheduled."""
        cancelled = False
        try:
            while True:
                header = await reader.readexactly(_HEADER.size)
                request_id, length = _HEADER.unpack(header)
                if request_id == _READY:
                    self._ready = True
                    continue
                reply = pickle.loads(await reader.readexactly(length))
                future = self._pending.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except asyncio.CancelledError:
            cancelled = True
            raise
        except Exception as exc:  # noqa: BLE001 - any failure ends the child's use
            if self._alive:
                log.error("validation process gone: %s", type(exc).__name__)
        finally:
            self._alive = False
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(ValidatorUnavailable("validation process gone"))
            if not self._closed and not cancelled:
                self._restart = asyncio.get_running_loop().create_task(self._replace())

    async def _replace(self) -> None:
        """Start a new child after the backoff delay (the old one is killed and reaped
        first); a start that fails schedules the next attempt."""
        delay = min(RESTART_DELAY_S * 2**self._failed_restarts, RESTART_DELAY_MAX_S)
        self._failed_restarts += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)
        if self._closed:
            return
        old = self._process
        if old is not None and old.pid is not None:  # pid: it was started
            if old.is_alive():
                old.kill()
            await asyncio.to_thread(old.join, 5)
        if self._closed:
            return
        self.restarts += 1
        log.warning("starting a new validation process (replacement %d)", self.restarts)
        try:
            await self.start()
        except Exception as exc:  # noqa: BLE001 - retried later; validation goes on here
            log.error("validation process did not start: %s", type(exc).__name__)
            if not self._closed:
                self._restart = asyncio.get_running_loop().create_task(self._replace())

    def _stop_child(self) -> None:
        """Stop using the child: close our end at once (it exits on EOF) and kill it."""
        self._alive = False
        if self._transport is not None:
            self._transport.abort()
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    async def close(self) -> None:
        """Stop the child and wait for it (it gets a second to exit by itself); no
        replacement is started afterwards."""
        self._closed = True
        self._closing.set()
        restart, self._restart = self._restart, None
        if restart is not None:
            await restart  # a waiting one returns at once; a starting one finishes first
        self._alive = False
        if self._transport is not None:
            self._transport.abort()  # no waiting for buffered requests to drain
        if self._process is not None and self._process.pid is not None:
            await asyncio.to_thread(self._process.join, 1)
            if self._process.is_alive():
                self._process.kill()
                await asyncio.to_thread(self._process.join, 5)
        if self._pump is not None:
            await self._pump
