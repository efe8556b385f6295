"""Validation of submitted operations in child processes (SQLite deployments).

Why: validating a ``POST /{did}`` body (JSON decode, schema, DAG-CBOR and CID, signature,
the rules, the new state's bodies) is about half the CPU of an update, all of it under the
GIL; the other half (HTTP, group commit) stays in the serving process. A child process does
the validation, so one server uses a second core. A child only reads the database (SQLite in
WAL mode: readers never block the writer) and never writes; the serving process commits every
op with the head compare-and-swap as before, so a child's view of a DID that is a moment old
can at worst cost a 409, exactly as two concurrent validations in one process can.

Off by default (``PLC_VALIDATION_PROCESSES``): the hop to the child adds latency, which pays
off only when many clients write at once (2 cores, reference loadgen: 32 writers 1.5x the
updates/s of in-process validation; 8 writers about a tenth fewer).

A child that is not ready yet, or gone, is simply not used: :meth:`ValidationPool.prepare`
raises :class:`ValidatorUnavailable` and the caller validates in its own process.

Wire format (one ``socketpair`` per child): frames of ``<II`` (request id, length) + pickle.
A request is ``(did, body, now)``; a reply is ``(kind, payload)``: ``0`` a PendingCommit as
a tuple of plain values (:func:`_flatten`; pickling the dataclasses themselves costs the
serving process several times more), ``3`` a SubmitResult (already stored), ``1`` a
:class:`PlcError` as (class, message, attributes), ``2`` an unexpected failure (its class
name; the serving process then validates the op itself). Request id 0 is the child's
"ready" frame. Only our own processes are at either end.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
import signal
import socket
import struct
from datetime import datetime
from typing import Any

from plc.errors import PlcError
from plc.operation import Operation
from plc.policy import PolicySettings
from plc.rules import PreparedOperation
from plc.store.sql import PendingCommit, SqlStore

log = logging.getLogger("plc.validation")

_HEADER = struct.Struct("<II")
_READY = 0
_PENDING, _PLC_ERROR, _FAILURE, _STORED = 0, 1, 2, 3


class ValidatorUnavailable(Exception):
    """No child can take the request (starting, gone, or the pool is closed)."""


def child_main(
    sock: socket.socket,
    database_url: str,
    policy: PolicySettings,
    busy_timeout_ms: int,
    log_level: str = "info",
) -> None:
    """A child's loop: validate requests from ``sock`` until it closes (the parent is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    from plc.logging_setup import configure_logging
    from plc.service import Directory, decode_json_body
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
            prepared = directory.prepare(did, decode_json_body(body), json_text=body)
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
        pending.expected_head,
        pending.data,
        pending.document,
    )


def _unflatten(values: tuple[Any, ...]) -> PendingCommit:
    """The PendingCommit :func:`_flatten` took apart."""
    did, data, cid, signed, canonical, created_at, prev, nullified, key_index, *rest = values
    operation = Operation(data=data, cid=cid, _cache={"signed": signed, "json": canonical})
    prepared = PreparedOperation(did, operation, created_at, prev, nullified, key_index)
    return PendingCommit(prepared, *rest)


def _rebuild_error(cls: type[PlcError], message: str, attributes: dict[str, Any]) -> PlcError:
    """The PlcError a child raised (subclasses with extra constructor arguments included)."""
    exc = cls.__new__(cls)
    PlcError.__init__(exc, message)
    exc.__dict__.update(attributes)
    return exc


class _Child:
    """One child process and the parent's end of its socket."""

    def __init__(self, process: Any, reader: asyncio.StreamReader, writer: Any) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.ready = False
        self.alive = True
        self.next_id = 1
        self.pending: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self.pump: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Read replies until the child's end closes; then fail what is still pending."""
        try:
            while True:
                header = await self.reader.readexactly(_HEADER.size)
                request_id, length = _HEADER.unpack(header)
                if request_id == _READY:
                    self.ready = True
                    continue
                payload = await self.reader.readexactly(length) if length else b""
                future = self.pending.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result(pickle.loads(payload))
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            if self.alive:
                log.error("validation process gone: %s", type(exc).__name__)
        finally:
            self.alive = False
            pending, self.pending = self.pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(ValidatorUnavailable("validation process gone"))


class ValidationPool:
    """Child processes that run :meth:`plc.service.Directory.prepare` for the serving process.

    Args:
        database_url: the SQLite file database the server uses (already migrated).
        policy: the admission limits.
        busy_timeout_ms: SQLite busy timeout of the children's read connections.
        processes: how many children (each validates one op at a time).
        log_level: the children's log level (they log JSON lines on stderr, as the server).
    """

    def __init__(
        self,
        database_url: str,
        policy: PolicySettings,
        busy_timeout_ms: int,
        processes: int,
        log_level: str = "info",
    ) -> None:
        self.database_url = database_url
        self.log_level = log_level
        self.policy = policy
        self.busy_timeout_ms = busy_timeout_ms
        self.processes = processes
        self._children: list[_Child] = []

    async def start(self) -> None:
        """Start the children; each is used once it reports ready (about a second)."""
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        for _ in range(self.processes):
            parent_end, child_end = socket.socketpair()
            process = context.Process(
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
            await asyncio.to_thread(process.start)
            child_end.close()
            reader, writer = await asyncio.open_connection(sock=parent_end)
            child = _Child(process, reader, writer)
            child.pump = asyncio.get_running_loop().create_task(child.run())
            self._children.append(child)

    @property
    def available(self) -> bool:
        """True when a child is ready to take a request."""
        return any(child.ready and child.alive for child in self._children)

    async def prepare(self, did: str, body: bytes, now: datetime) -> Any:
        """``Directory.prepare(did, decode_json_body(body), json_text=body)`` with the clock
        reading ``now``, in the least busy ready child.

        Returns what ``prepare`` returns (a PendingCommit or a SubmitResult).

        Raises:
            PlcError: as ``prepare`` (or the body is not JSON).
            ValidatorUnavailable: no child ready, it went away meanwhile, or it hit an
                unexpected error (not a PlcError): validate here, for the answer the
                serving process would give.
        """
        ready = [child for child in self._children if child.ready and child.alive]
        if not ready:
            raise ValidatorUnavailable("no validation process ready")
        child = min(ready, key=lambda c: len(c.pending))
        request_id = child.next_id
        child.next_id = request_id % 0xFFFFFFFF + 1
        future: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        child.pending[request_id] = future
        data = pickle.dumps((did, body, now), protocol=pickle.HIGHEST_PROTOCOL)
        child.writer.transport.write(_HEADER.pack(request_id, len(data)) + data)
        kind, payload = await future
        if kind == _PENDING:
            return _unflatten(payload)
        if kind == _STORED:
            from plc.service import SubmitResult

            return SubmitResult(*payload)
        if kind == _PLC_ERROR:
            raise _rebuild_error(*payload)
        log.warning("validation process failed (%s); validating in-process", payload)
        raise ValidatorUnavailable(str(payload))

    async def close(self) -> None:
        """Stop the children (they exit when their socket closes) and wait for them."""
        children, self._children = self._children, []
        for child in children:
            child.alive = False
            child.writer.close()
        for child in children:
            if child.pump is not None:
                await child.pump
            await asyncio.to_thread(child.process.join, 5)
            if child.process.is_alive():
                child.process.kill()
