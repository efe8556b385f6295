"""Strict parsing of ``sequenced_op`` export lines.

A line (design.md decision 5; did:plc spec v0.3 "Export") is one JSON object with exactly the
keys ``did, cid, seq, createdAt, operation, type``: ``type`` is ``"sequenced_op"``, ``seq`` a
positive integer, ``did`` a did:plc identifier, ``cid`` a string, ``createdAt`` exactly
``YYYY-MM-DDTHH:MM:SS.sssZ`` and ``operation`` a signed op that passes the core's strict schema
(:func:`plc.operation.parse_operation`). The CID the line claims is *not* checked here (a wrong
CID is its own finding class); the op's CID is always recomputed.

The canonical form (keys in that order, compact UTF-8 JSON, the op's maps in DAG-CBOR key
order) is checked separately by :func:`canonical_line`, for directories that promise it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from plc.did import is_did_plc
from plc.errors import PlcError
from plc.exportline import build_line
from plc.operation import Operation, parse_operation
from plc.timestamps import parse_timestamp_ms

LINE_KEYS = frozenset({"did", "cid", "seq", "createdAt", "operation", "type"})
LEGACY_KEYS = frozenset({"did", "cid", "createdAt", "operation"})
"""Keys every line of the legacy (timestamp-cursor) export has; it has no ``seq`` or ``type``."""


class MalformedLine(ValueError):
    """A line that does not parse strictly; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Header:
    """The fields the coordinator needs to place and route a line, read before parsing it.

    Attributes:
        seq: the line's ``seq``.
        did: the line's ``did`` (not yet checked to be a did:plc).
        created_at: the ``createdAt`` text (ASCII bytes) of a canonical line's head, when it
            has the strict shape ``YYYY-MM-DDTHH:MM:SS.sssZ`` (digits only: the calendar is
            not checked) and nothing after the head can give the line another ``createdAt``
            (:func:`read_head`); else None, and only a parse tells.
    """

    seq: int
    did: str
    created_at: bytes | None = None


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """A strictly parsed export line.

    Attributes:
        seq, did: as in the line.
        claimed_cid: the ``cid`` the line states.
        created_at: the ``createdAt`` text.
        created_ms: the same as milliseconds since the Unix epoch.
        operation: the parsed op (its ``cid`` recomputed from the signed DAG-CBOR).
    """

    seq: int
    did: str
    claimed_cid: str
    created_at: str
    created_ms: int
    operation: Operation


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_CANONICAL_HEAD = re.compile(
    rb'\{"did":"(did:plc:[a-z2-7]{24})","cid":"[^"\\]*","seq":([1-9][0-9]{0,17}),'
)


_TIMED_HEAD = re.compile(
    _CANONICAL_HEAD.pattern
    + rb'(?:"createdAt":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z)",)?'
)
""":data:`_CANONICAL_HEAD` and, optionally, the ``createdAt`` that follows ``seq`` in a
canonical line: it matches exactly the lines ``_CANONICAL_HEAD`` matches."""


def read_head(line: bytes) -> Header | None:
    """The :class:`Header` of a line with a canonical head (``did``, ``cid``, ``seq`` first, in
    that order), without decoding its JSON; None for any other line. Never raises.

    ``created_at`` is set when ``createdAt`` follows ``seq`` in the strict shape and the rest
    of the line holds no backslash and no ``"createdAt"`` string: a later ``createdAt`` key
    could only be spelled that way (an escape is the only other spelling), so none overrides
    it, and any parser that accepts the line (orjson's last duplicate wins) reads this
    ``createdAt``. Whether it accepts the line at all (valid JSON, the envelope's other
    fields, the calendar) and which ``seq`` it reads (a later duplicate ``seq`` key wins) are
    left to a parse.
    """
    head = _TIMED_HEAD.match(line)
    if head is None:
        return None
    did: bytes
    seq: bytes
    created_at: bytes | None
    did, seq, created_at = head.groups()
    if created_at is not None:
        end = head.end()
        # Two C substring scans, far cheaper than decoding the line (replay reads every
        # line's head).
        if line.find(b"\\", end) >= 0 or line.find(b'"createdAt"', end) >= 0:
            created_at = None
    return Header(int(seq), did.decode("ascii"), created_at)


def parse_header(line: bytes) -> Header:
    """Read a line's ``seq`` and ``did``: from the fixed prefix of a canonical line
    (:func:`read_head`, which also reads ``createdAt`` when it can), else by decoding the JSON.
    (The workers parse the whole line and check that they read the same ``seq`` and ``did``,
    so a line that means two things to two parsers is caught.)

    Raises:
        MalformedLine: not a JSON object, or ``seq`` / ``did`` missing or of the wrong type.
    """
    head = read_head(line)
    if head is not None:
        return head
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise MalformedLine(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedLine("not a JSON object")
    seq, did = value.get("seq"), value.get("did")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise MalformedLine("seq is not a positive integer")
    if not isinstance(did, str):
        raise MalformedLine("did is not a string")
    return Header(seq, did)


def is_legacy_line(line: bytes) -> bool:
    """True if ``line`` is a line of the legacy export form: a JSON object with ``did``,
    ``cid``, ``createdAt`` and ``operation`` (usually ``nullified`` too) but no ``seq`` and no
    ``type`` — what ``/export`` serves when it has no seq mode and reads ``after`` as a
    timestamp (plc-spec-notes.md §4.1, "legacy mode"). Never raises."""
    if _CANONICAL_HEAD.match(line) is not None:
        return False
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(value, dict)
        and "seq" not in value
        and "type" not in value
        and LEGACY_KEYS <= value.keys()
    )


def parse_envelope(line: bytes) -> tuple[dict[str, Any], int]:
    """Parse a ``sequenced_op`` line strictly but for its op: the JSON object (the six keys,
    ``type`` ``sequenced_op``, a positive integer ``seq``, a did:plc, a string ``cid``) and its
    ``createdAt`` in milliseconds since the Unix epoch. The ``operation`` is not parsed.

    Raises:
        MalformedLine: any deviation from that shape.
    """
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise MalformedLine(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedLine("not a JSON object")
    if value.keys() != LINE_KEYS:
        raise MalformedLine(f"keys are {sorted(value)}, expected {sorted(LINE_KEYS)}")
    if value["type"] != "sequenced_op":
        raise MalformedLine("type is not sequenced_op")
    seq, did = value["seq"], value["did"]
    if not _is_int(seq) or seq < 1:
        raise MalformedLine("seq is not a positive integer")
    if not isinstance(did, str) or not is_did_plc(did):
        raise MalformedLine("did is not a did:plc identifier")
    if not isinstance(value["cid"], str):
        raise MalformedLine("cid is not a string")
    try:
        created_ms = parse_timestamp_ms(value["createdAt"])
    except PlcError as exc:
        raise MalformedLine(exc.message) from None
    return value, created_ms


def parse_entry(line: bytes) -> ExportEntry:
    """Parse a ``sequenced_op`` line strictly (:func:`parse_envelope`, then its op).

    Raises:
        MalformedLine: any deviation from the shape in the module docstring.
    """
    value, created_ms = parse_envelope(line)
    try:
        operation = parse_operation(value["operation"], json_text=line)
    except PlcError as exc:
        raise MalformedLine(exc.message) from None
    seq, did, cid, created_at = value["seq"], value["did"], value["cid"], value["createdAt"]
    return ExportEntry(seq, did, cid, created_at, created_ms, operation)


def canonical_line(entry: ExportEntry) -> bytes:
    """The canonical export line of ``entry`` (with the CID the line claimed), as a directory
    that stores lines at commit builds it (:func:`plc.exportline.build_line`)."""
    return build_line(
        entry.did,
        entry.claimed_cid,
        entry.seq,
        entry.created_at,
        entry.operation.canonical_json(),
    )
