"""The directory service: load history → rules → policy → commit, and the read models.

Knows nothing about HTTP. An op validated here is committed by :mod:`plc.group_commit` with the
others waiting at that moment, and its submitter answered once that commit is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import orjson

from plc.codec import has_bad_unicode
from plc.document import operation_state_bodies
from plc.errors import (
    DATABASE_UNAVAILABLE,
    HeadMismatch,
    InvalidInput,
    LogEntryTooLarge,
    MalformedDid,
    MalformedOperation,
    MisorderedOperation,
    PlcError,
    Unavailable,
)
from plc.exportline import MAX_LINE_BYTES, longest_line, operation_json
from plc.group_commit import GroupCommit
from plc.logging_setup import RepeatLimit
from plc.metrics import DirectoryMetrics
from plc.operation import Operation, parse_operation, trusted_operation
from plc.policy import (
    PolicySettings,
    validate_admission,
    validate_rate_limit,
    validate_size,
    validate_unparsed_size,
)
from plc.reads import DirectoryReads
from plc.rules import LogEntry, late_recovery, validate_next_op
from plc.store.history import NEWEST_ROWS, audit_rows_since, newest_audit_rows
from plc.store.records import CommitStatus, PendingCommit, StoredOp
from plc.store.sql import Clock, SqlStore
from plc.timestamps import ONE_MS, from_ms, to_ms, truncate_ms
from plc.validation_process import ValidationProcess, ValidatorUnavailable

log = logging.getLogger("plc.service")

HISTORY_WINDOW_MS = 8 * 24 * 3600 * 1000
"""How far back the history read to validate an op reaches (:meth:`Directory.prepare`):
longer than the recovery window and the longest rate-limit window (a week)."""

T = TypeVar("T")


def decode_json_body(body: bytes) -> Any:
    """The decoded request body. A leading UTF-8 byte order mark is skipped, as the
    reference's body parser does (iconv-lite strips it). Raises InvalidInput (400) on
    malformed JSON."""
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON body: {str(exc)[:200]}") from exc


def system_clock() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


class SubmitResult(NamedTuple):
    """Outcome of an accepted submission: its ``seq`` (None when it was already stored)."""

    cid: str
    seq: int | None
    duplicate: bool


class Directory(DirectoryReads):
    """The did:plc directory over a :class:`SqlStore`.

    Args:
        store: the storage.
        policy: admission limits for new ops.
        clock: returns the current aware UTC time (tests inject their own).
        batch_max: most ops grouped into one commit.
        inline_io: run reads and validation on the event loop instead of a worker thread.
            Right for SQLite, where a read takes ~20 µs and a thread hop costs more than the
            work; wrong for a database across a network.
        db_timeout_s: seconds a store call on a worker thread (:meth:`run`), and a
            submitter's wait for its commit, may take before :class:`Unavailable` is raised
            (a commit goes on: the op may yet be stored); None: no bound.
    """

    def __init__(
        self,
        store: SqlStore,
        policy: PolicySettings,
        clock: Clock = system_clock,
        batch_max: int = 256,
        inline_io: bool = False,
        db_timeout_s: float | None = None,
    ) -> None:
        self.store = store
        self.inline_io = inline_io
        self.db_timeout_s = db_timeout_s
        self._said = RepeatLimit()
        self.policy = policy
        self.clock = clock
        self.committer = GroupCommit(
            store,
            clock,
            batch_max,
            inline_io=inline_io,
            timeout_s=db_timeout_s,
            on_timeout=self._say_timeout,
        )
        self.validator: ValidationProcess | None = None
        """The child process that validates POST bodies (:meth:`submit_body`); None: here."""
        self.metrics: DirectoryMetrics | None = None
        """Where refusals are counted (``GET /metrics``; its commits come as a listener);
        None: nowhere."""

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the committer thread."""
        self.committer.start()

    def stop(self) -> None:
        """Finish queued commits and stop the committer thread."""
        self.committer.stop()

    # ---- writes ------------------------------------------------------------------------

    def prepare(
        self,
        did: str,
        body: Any,
        *,
        created_at: datetime | None = None,
        imported: bool = False,
        json_text: bytes | None = None,
        history: Sequence[LogEntry] | None = None,
    ) -> PendingCommit | SubmitResult:
        """Validate a submitted op against the DID's stored history (no write).

        Args:
            did: the DID from the request path (compared byte for byte).
            body: the decoded JSON body.
            created_at: import only: the op's original timestamp (else the clock's).
            imported: import of history (a mirror or a restore): admission policy is not
                applied and legacy ``create`` genesis ops are accepted.
            json_text: the request body ``body`` was decoded from with ``orjson.loads``
                (``parse_operation``'s ``json_text``: the U+0000 check is a byte search).
            history: the DID's stored ops as audit-log entries, when the caller has them
                (an import reads a batch's histories in one query and keeps a DID's between
                its ops); default: read here.

        Returns the :class:`PendingCommit` to commit, or a :class:`SubmitResult` when the very
        same op is already the DID's (non-nullified) op: re-submission is idempotent. An
        import finds a nullified op already stored too (a re-run of an import).

        Raises:
            PlcError: the op is malformed, invalid under the rules, or refused by policy.
        """
        if has_bad_unicode(did):
            raise MalformedDid("Improperly formatted did: NUL or lone surrogate in the path")
        try:
            op = parse_operation(body, json_text=json_text)
        except MalformedOperation:
            if not imported:
                validate_unparsed_size(body, self.policy)
            raise
        line_bytes = longest_line(did, op.cid, op.canonical_json())
        if line_bytes > MAX_LINE_BYTES:
            if not imported:  # the reference's refusal when its own limit is broken too
                validate_size(op, self.policy)
            raise LogEntryTooLarge(
                f"Operation too large for the transparency log: its export line would take up "
                f"to {line_bytes} bytes, at most {MAX_LINE_BYTES} (C2SP tlog-tiles entries)"
            )
        if history is None:
            history = self._deciding_history(did, op)
        for entry in history:
            if entry.cid == op.cid:
                if entry.nullified and not imported:
                    raise MisorderedOperation(
                        f"Operations not correctly ordered: {op.cid} was nullified"
                    )
                # Before admission: an op stored under older limits (or imported) is
                # still the DID's, and re-submitting it is answered as the first time.
                return SubmitResult(op.cid, None, duplicate=True)
        if not imported:
            validate_admission(op, self.policy)
        active = [e for e in history if not e.nullified]
        head = active[-1] if active else None
        if created_at is None:
            created_at = truncate_ms(self.clock())
            if head is not None and created_at <= head.created_at:
                # No later moment past the last a datetime holds (an imported stamp): the
                # clock's then, which the rules refuse as not later than the head.
                with contextlib.suppress(OverflowError):
                    created_at = head.created_at + ONE_MS
        prepared = validate_next_op(history, did, op, created_at)
        if not prepared.nullified and not imported:
            validate_rate_limit([e.created_at for e in active], created_at, self.policy)
        bodies = operation_state_bodies(did, op)
        data, document = bodies if bodies is not None else (None, None)
        return PendingCommit(
            prepared, head.cid if head else None, data, document, restamp=not imported
        )

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking store work: inline (SQLite) or in a worker thread (PostgreSQL),
        there for at most :attr:`db_timeout_s`.

        Raises:
            Unavailable: the worker thread did not finish in time (a connection that stopped
                answering; the thread is left to it).
        """
        if self.inline_io:
            return fn(*args, **kwargs)
        if self.db_timeout_s is None:
            return await asyncio.to_thread(fn, *args, **kwargs)
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), self.db_timeout_s)
        except TimeoutError:
            self._say_timeout("a database call")
            raise Unavailable(DATABASE_UNAVAILABLE) from None

    def _say_timeout(self, what: str) -> None:
        if self._said.due(what):
            log.warning(
                "%s did not finish within %g s: the database does not answer",
                what,
                self.db_timeout_s,
            )

    async def submit_body(self, did: str, body: bytes) -> SubmitResult:
        """Validate and durably append the op in a request body (JSON bytes); answers after
        its commit. Validated by the validation process when one is ready, else here. Every
        refusal is counted in :attr:`metrics`.

        Raises:
            PlcError: as :meth:`prepare` (InvalidInput, 400, when ``body`` is not JSON);
                HeadMismatch (409) when the DID's head moved between validation and commit;
                Unavailable (503) when the database is locked.
        """
        try:
            validator = self.validator
            if validator is not None and validator.available:
                try:
                    prepared = await validator.prepare(did, body, self.clock())
                except ValidatorUnavailable:
                    pass
                else:
                    return await self._append(prepared)
            return await self._append(await self.run(self.prepare_body, did, body))
        except PlcError as exc:
            if self.metrics is not None:
                self.metrics.refused(exc)
            raise

    def _deciding_history(self, did: str, op: Operation) -> list[LogEntry]:
        """The part of the DID's history that decides ``op`` as the whole would: the ops of
        the last :data:`HISTORY_WINDOW_MS` (the 72-hour recovery window and the rate limits'
        week, with a day to spare) from the newest op before them that is not nullified;
        the whole history when ``op`` repeats an older op or names an older ``prev`` (an
        old op submitted again, a recovery too late, a fork from a nullified op)."""
        rows = newest_audit_rows(self.store, did)
        if len(rows) == NEWEST_ROWS:  # perhaps not all: from the op before the window on
            since = to_ms(self.clock()) - HISTORY_WINDOW_MS
            rows = audit_rows_since(self.store, did, since, rows)
        history = history_of(did, rows)
        if not history or history[0].operation.prev is None:  # the genesis is in it: all
            return history
        if any(entry.cid == op.cid for entry in history):
            return history
        # An op stored with this prev was stored after it, so it would be in the window too:
        # a prev in the window decides alone.
        if op.prev in {entry.cid for entry in history if not entry.nullified}:
            return history
        return history_of(did, self.store.audit_rows(did))

    def prepare_body(self, did: str, body: bytes) -> PendingCommit | SubmitResult:
        """:meth:`prepare` for a request body (JSON bytes); what the validation process runs.

        Raises:
            PlcError: as :meth:`prepare`; InvalidInput (400) when ``body`` is not JSON.
        """
        if not body:  # as Express's JSON parser reads it (body-parser: an empty body is {})
            return self.prepare(did, {}, json_text=b"{}")
        return self.prepare(did, decode_json_body(body), json_text=body)

    async def _append(self, prepared: PendingCommit | SubmitResult) -> SubmitResult:
        """Commit a prepared op (group commit) and answer once it is durable."""
        if isinstance(prepared, SubmitResult):
            return prepared
        outcome = await self.committer.commit(prepared)
        cid = prepared.prepared.operation.cid
        if outcome.status is CommitStatus.CONFLICT:
            raise HeadMismatch(
                "Proposed prev does not match the most recent operation: the DID changed "
                "while this operation was validated; retry"
            )
        if outcome.status is CommitStatus.LATE:
            assert outcome.lapsed is not None
            raise late_recovery(outcome.lapsed)
        if outcome.status is CommitStatus.DUPLICATE:
            return SubmitResult(cid, None, duplicate=True)
        return SubmitResult(cid, outcome.seq, duplicate=False)

    def import_op(self, did: str, body: Any, created_at: datetime) -> SubmitResult:
        """Append a historical op with its original timestamp, synchronously (no policy;
        legacy genesis allowed; the rules still apply in full).

        Raises:
            PlcError: the op is malformed or invalid under the rules; HeadMismatch on a race.
        """
        pending = self.prepare(did, body, created_at=created_at, imported=True)
        if isinstance(pending, SubmitResult):
            return pending
        outcome = self.committer.commit_now(pending)
        if outcome.status is not CommitStatus.COMMITTED:
            raise HeadMismatch("Proposed prev does not match the most recent operation")
        return SubmitResult(pending.prepared.operation.cid, outcome.seq, duplicate=False)


def history_of(did: str, rows: Sequence[StoredOp]) -> list[LogEntry]:
    """A DID's stored ops (:meth:`SqlStore.audit_rows`) as audit-log entries, in order."""
    return [_entry(did, row) for row in rows]


def _entry(did: str, row: StoredOp) -> LogEntry:
    op_data = orjson.loads(operation_json(row.line))
    return LogEntry(
        did, trusted_operation(op_data, row.cid), from_ms(row.created_at_ms), row.nullified
    )
