"""One line of a did:plc export, read for import (pure; no I/O).

Both export forms are read (plc-spec-notes.md §4.1): ``sequenced_op`` lines
(``{"did","cid","seq","createdAt","operation","type":"sequenced_op"}``) and the legacy form
without ``seq`` (``{"did","operation","cid","nullified","createdAt"}``). ``nullified`` is
ignored: an importer derives it by replaying the rules, as every mirror must (a legacy line
carries the flag as of its fetch, a ``sequenced_op`` line none).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson

from plc.codec import has_bad_unicode
from plc.errors import InvalidInput, echo
from plc.timestamps import parse_timestamp

MAX_FUTURE = timedelta(minutes=10)
"""How far past the importer's clock a ``createdAt`` may be (clocks differ a little). The
stamp is not signed: a later one is a source's error or forgery, and would hold the DID back
until then (each op must be later than its ``prev``)."""


class BadLine(InvalidInput):
    """The line is not an export line (not JSON, or a field missing or of the wrong type)."""


class ImportItem(NamedTuple):
    """An op to import, as its line gives it.

    Attributes:
        did: the DID (not yet checked: the rules do that).
        operation: the decoded ``operation`` object.
        created_at: ``createdAt``, aware UTC, millisecond precision.
        cid: the CID the line claims (None when it gives none); compared with the computed one.
        source_seq: the source's ``seq`` (None for a legacy line).
    """

    did: str
    operation: dict[str, Any]
    created_at: datetime
    cid: str | None
    source_seq: int | None


def parse_import_line(line: bytes, not_after: datetime | None = None) -> ImportItem:
    """Read one export line (without its newline); ``not_after`` (aware UTC), when given, is
    the latest ``createdAt`` taken.

    Raises:
        BadLine: not a JSON object; ``did`` or ``createdAt`` not a string; ``createdAt`` not
            ``YYYY-MM-DDTHH:MM:SS.sssZ``; ``operation`` not an object; ``cid`` present and not a
            string; ``seq`` present and not a non-negative integer; ``type`` present and not
            ``sequenced_op``; ``createdAt`` later than ``not_after``.
    """
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadLine(f"not JSON: {str(exc)[:120]}") from exc
    if not isinstance(value, dict):
        raise BadLine("not a JSON object")
    did, operation, created = value.get("did"), value.get("operation"), value.get("createdAt")
    if not isinstance(did, str):
        raise BadLine("did is missing or not a string")
    if has_bad_unicode(did):  # PostgreSQL refuses NUL in text: refused before any query
        raise BadLine("did holds a NUL character")
    if not isinstance(operation, dict):
        raise BadLine("operation is missing or not an object")
    if not isinstance(created, str):
        raise BadLine("createdAt is missing or not a string")
    try:
        created_at = parse_timestamp(created)
    except InvalidInput as exc:
        raise BadLine(f"createdAt is not YYYY-MM-DDTHH:MM:SS.sssZ: {echo(created)}") from exc
    if not_after is not None and created_at > not_after:
        raise BadLine(f"createdAt is in the future: {echo(created)}")
    cid = value.get("cid")
    if cid is not None and not isinstance(cid, str):
        raise BadLine("cid is not a string")
    seq = value.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise BadLine(f"seq is not a non-negative integer: {echo(seq)}")
    kind = value.get("type")
    if kind is not None and kind != "sequenced_op":
        raise BadLine(f"type is not sequenced_op: {echo(kind)}")
    return ImportItem(did, operation, created_at, cid, seq)
