"""``GET /export``: the whole directory as JSON Lines, by ``seq`` or (legacy) by time."""

from __future__ import annotations

import re

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from plc.api.deps import DirectoryDep
from plc.api.etag import tagged_response
from plc.api.responses import JSONLINES, NOT_MODIFIED, error_responses, query_parameter
from plc.errors import InvalidInput
from plc.timestamps import parse_timestamp_lenient

router = APIRouter()

MAX_COUNT = 1000
_DIGITS = re.compile(r"[0-9]{1,18}")
_SEQ_LIKE = re.compile(r"[0-9]+")
_LONGEST_CURSOR = 100
"""Digits of an ``after`` read as a ``seq`` past every op (the reference reads any number;
the stream's cursor likewise); a longer one is refused."""
_LONGEST_SEQ_DIGITS = 18


def seq_or_past(digits: str) -> int | None:
    """The ``seq`` a string of ASCII digits names (leading zeros count for nothing), or None
    when it has more than 18 significant digits: past any ``seq`` this log will reach (the
    reference reads any number). Used by ``/export``'s ``after`` and the stream's cursor."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _LONGEST_SEQ_DIGITS else None


def parse_count(count: str | None) -> int:
    """``count``: an integer 1–1000, default 1000. Raises InvalidInput otherwise."""
    if count is None:
        return MAX_COUNT
    if not _DIGITS.fullmatch(count) or not 1 <= int(count) <= MAX_COUNT:
        raise InvalidInput("Invalid count parameter")
    return int(count)


@router.get(
    "/export",
    summary="Export operations as JSON Lines",
    description=(
        "Integer `after` (or `after=0`): `sequenced_op` lines with `seq > after`, in `seq` "
        "order. Any other `after` is a timestamp: legacy lines `{did, cid, createdAt, "
        "operation, nullified}` with `createdAt > after`. `count` is 1–1000 (default 1000). "
        "Lines are joined by `\\n` with no trailing newline."
    ),
    response_class=Response,
    responses={
        200: {"description": "JSON Lines", "content": {JSONLINES: {}}},
        **NOT_MODIFIED,
        **error_responses(400),
    },
    openapi_extra={
        "parameters": [
            query_parameter(
                "after",
                {"type": "string"},
                "Digits: a `seq` (up to 100 digits; more is 400), for `sequenced_op` lines "
                "with a higher `seq`. Anything else: an ISO 8601 date-time, date or "
                "`YYYY-MM` (no zone: UTC), or an RFC 2822 date-time (`Wed, 01 Jan 2025 "
                "00:00:00 GMT`), for legacy lines created after it. Absent or empty: legacy "
                "lines from the first.",
            ),
            query_parameter(
                "count",
                {"type": "integer", "minimum": 1, "maximum": MAX_COUNT, "default": MAX_COUNT},
                "Most lines in the answer.",
            ),
        ]
    },
)
async def export(
    request: Request,
    directory: DirectoryDep,
    after: str | None = Query(default=None, include_in_schema=False),
    count: str | None = Query(default=None, include_in_schema=False),
) -> Response:
    page = parse_count(count)
    if after is not None and _SEQ_LIKE.fullmatch(after):
        if len(after) > _LONGEST_CURSOR:
            raise InvalidInput("Invalid after parameter")
        seq = seq_or_past(after)
        if seq is None:  # nothing after it
            body = b""
        else:
            body = await directory.run(directory.export_after_seq, seq, page)
    elif after:
        try:
            moment = parse_timestamp_lenient(after)
        except InvalidInput as exc:
            raise InvalidInput("Invalid after parameter") from exc
        body = await directory.run(directory.export_after_time, moment, page)
    else:
        body = await directory.run(directory.export_after_time, None, page)
    return tagged_response(request, body, JSONLINES)
