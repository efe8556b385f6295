"""Stream messages as the ``/export`` lines of the same ops, for directories without ``/tlog/``.

The leaves of the entries' tree are the bytes ``/export`` serves: the next run re-reads the
export and compares it with them byte for byte (:mod:`auditor.recheck`). A directory that
serves ``/tlog/`` commits to those bytes, and ours sends the same bytes on the stream, so
there a stream message is a leaf as it is (a difference is a real one). The reference server
(plc.directory's code; plc-spec-notes.md §4.2) encodes the same op with its keys in another
order on the stream than in ``/export``, so for a directory without ``/tlog/`` each batch of
stream messages is looked up in ``/export`` (``/export?after=<first seq - 1>&count=<n>``:
one request per batch, more only when the batch's ``seq`` values are far apart) and every
message is replaced by the export line of its ``seq`` when both parse to the same JSON
value. A message whose export line holds other content stays the leaf (it was read first)
and is reported as ``export-rewritten`` (``changed``; :func:`rewritten`), as a second read of
the export would report it.

``/export`` may lag the stream (a replica behind the primary). A message whose ``seq`` it does
not serve yet ends the batch there (:class:`ExportBehind`: the lines before it are replayed,
the stream sends it again from the last ``seq`` read) for up to :data:`EXPORT_LAG_S` seconds;
stored as sent in the meantime, its stream bytes would be reported as ``export-rewritten`` by
the next run's byte-for-byte re-read. After that it is kept as sent, for the re-read to
check: an op ``/export`` never serves is reported ``missing`` there, and one it serves later
with other bytes (another key order) ``changed``: a lag over the patience is taken for
misbehaviour.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from auditor.client import EXPORT_PAGE, DirectoryClient
from auditor.findings import Finding
from auditor.recheck import export_rewritten
from auditor.sources import RawLine
from plc.tlog.hashing import leaf_hash


def _value(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _seq_of(value: Any) -> int | None:
    if not isinstance(value, dict):
        return None
    seq = value.get("seq")
    return seq if type(seq) is int and seq >= 1 else None


def _clusters(seqs: list[int]) -> list[tuple[int, int]]:
    """``(first, last)`` ranges covering sorted ``seqs``, split where two are more than a
    page apart (a redelivery reaching far back is its own range)."""
    ranges: list[tuple[int, int]] = []
    for seq in seqs:
        if ranges and seq - ranges[-1][1] <= EXPORT_PAGE:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def _served(client: DirectoryClient, seqs: set[int]) -> dict[int, bytes]:
    """The export line of each of ``seqs`` that ``/export`` serves now (the first one with
    that ``seq``).

    Raises:
        AuditFailed: a request failed (:class:`auditor.errors.DirectoryUnreachable` if it
            may pass).
    """
    found: dict[int, bytes] = {}
    for first, last in _clusters(sorted(seqs)):
        after = first - 1
        while after < last:
            page = client.export_page(after, min(EXPORT_PAGE, last - after))
            reached = after
            for line in page:
                seq = _seq_of(_value(line))
                if seq is None:
                    continue
                if seq in seqs:
                    found.setdefault(seq, line)
                reached = max(reached, seq)
            if reached <= after:  # an empty page, or one that does not advance
                break
            after = reached
    return found


EXPORT_LAG_S = 30.0
"""Seconds a stream message is read again while ``/export`` does not serve its ``seq``."""
_MAX_WAITING = 100_000
"""Most messages remembered as waiting for ``/export`` (a bound on memory, not a limit that
a healthy directory meets)."""


class ExportBehind(Exception):  # noqa: N818 - a state, not an error
    """``/export`` does not serve the ``seq`` of a message in the batch yet.

    Attributes:
        ready: the lines of the batch before that message, to be replayed; the rest of the
            batch is to be read again from the stream.
        seq: the ``seq`` not served yet.
    """

    def __init__(self, ready: list[RawLine], seq: int) -> None:
        super().__init__(f"/export does not serve seq {seq} yet")
        self.ready = ready
        self.seq = seq


class ExportLines:
    """Turns batches of stream messages into ``/export`` lines (a directory without
    ``/tlog/``): call it with a batch.

    Args:
        client: the directory's client.
        patience_s: seconds a message ``/export`` does not serve yet is read again before it
            is kept as sent (None: :data:`EXPORT_LAG_S`).
        clock: monotonic seconds (injected by tests).
    """

    def __init__(
        self,
        client: DirectoryClient,
        *,
        patience_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._patience_s = EXPORT_LAG_S if patience_s is None else patience_s
        self._clock = clock
        self._waiting: dict[int, float] = {}  # seq -> when /export first lacked it

    def __call__(self, batch: Sequence[RawLine]) -> list[RawLine]:
        """``batch`` with each message replaced by the ``/export`` line of its ``seq`` when
        both are the same JSON value; a message whose export line differs in content keeps
        its bytes and carries that line in :attr:`RawLine.reread`.

        Raises:
            ExportBehind: ``/export`` does not serve a message's ``seq`` yet, and has not
                for less than ``patience_s``.
            AuditFailed: an ``/export`` request failed (nothing of ``batch`` may be used
                then: the stream sends it again after reconnecting from the last ``seq``
                read).
        """
        values = [_value(raw.line) for raw in batch]
        seqs = {s for s in (_seq_of(v) for v in values) if s is not None}
        if not seqs:
            return list(batch)
        served = _served(self._client, seqs)
        now = self._clock()
        # Every message of the batch waits from when it was first missed, not from when
        # the ones before it were given up on.
        missed = seqs.difference(served)
        if len(self._waiting) + len(missed) > _MAX_WAITING:
            self._waiting.clear()
        given_up = {m for m in missed if now - self._waiting.setdefault(m, now) >= self._patience_s}
        out: list[RawLine] = []
        for raw, value in zip(batch, values, strict=True):
            seq = _seq_of(value)
            line = None if seq is None else served.get(seq)
            if seq is not None and line is None and seq not in given_up:
                raise ExportBehind(out, seq)
            if seq is not None:
                self._waiting.pop(seq, None)
            if line is None or line == raw.line:
                out.append(raw)
            elif _value(line) == value:
                out.append(RawLine(line, None))
            else:
                out.append(RawLine(raw.line, None, reread=line))
        return out


def rewritten(leaf_index: int, seq: int, line: bytes, served: bytes) -> Finding:
    """The ``export-rewritten`` finding of a stream message (leaf ``leaf_index``, read with
    ``seq``) whose ``seq`` ``/export`` serves with other content (``served``): the same
    finding, with the same key, that the next run's re-read of the export reports, and the
    message as it came."""
    finding = export_rewritten(
        leaf_index, seq, "changed", leaf_hash(line), served, "between the stream and /export"
    )
    finding.evidence["stream_line"] = line.decode("utf-8", "replace")
    return finding
