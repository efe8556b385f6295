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
the export would report it; one ``/export`` does not serve (yet) is kept as sent, for the
next run's re-read to check.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def as_exported(client: DirectoryClient, batch: Sequence[RawLine]) -> list[RawLine]:
    """``batch`` (stream messages) with each message replaced by the ``/export`` line of its
    ``seq`` when both are the same JSON value; a message whose export line differs in
    content keeps its bytes and carries that line in :attr:`RawLine.reread`.

    Raises:
        AuditFailed: an ``/export`` request failed (nothing of ``batch`` may be used then:
            the stream sends it again after reconnecting from the last ``seq`` read).
    """
    values = [_value(raw.line) for raw in batch]
    seqs = {s for s in (_seq_of(v) for v in values) if s is not None}
    if not seqs:
        return list(batch)
    served = _served(client, seqs)
    out: list[RawLine] = []
    for raw, value in zip(batch, values, strict=True):
        seq = _seq_of(value)
        line = None if seq is None else served.get(seq)
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
