"""The ``sequenced_op`` export line: built once at commit, stored and served as bytes.

Shape (design.md decision 5; plc-spec-notes.md §4.1): compact UTF-8 JSON, keys in the order
``did, cid, seq, createdAt, operation, type`` with ``"type":"sequenced_op"`` last, and the
operation's maps in DAG-CBOR key order. Because ``did``, ``cid`` and ``createdAt`` are plain
ASCII and ``type`` is fixed, the operation's JSON is an exact slice of the line: the op log and
audit log are served from the same stored bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from plc.tlog.checkpoint import MAX_TREE_SIZE

_OP_KEY = b'"operation":'
_TAIL = b',"type":"sequenced_op"}'

MAX_LINE_BYTES = 0xFFFF
"""The longest export line the log can hold: a line (without its newline) is a leaf of the
transparency log, and C2SP tlog-tiles entry bundles prefix each entry with a big-endian uint16
length."""


def build_line(did: str, cid: str, seq: int, created_at: str, operation_json: bytes) -> bytes:
    """The export line of one op.

    Args:
        did, cid: the op's DID and CID.
        seq: its sequence number (1-based).
        created_at: ``YYYY-MM-DDTHH:MM:SS.sssZ``.
        operation_json: the op's canonical compact JSON (``Operation.canonical_json()``).
    """
    return orjson.dumps(
        {
            "did": did,
            "cid": cid,
            "seq": seq,
            "createdAt": created_at,
            "operation": orjson.Fragment(operation_json),
            "type": "sequenced_op",
        }
    )


def longest_line(did: str, cid: str, operation_json: bytes) -> int:
    """The length in bytes of the op's export line at the largest ``seq`` a log can reach
    (``MAX_TREE_SIZE``, 2**63 - 1, the largest tree a checkpoint can describe): an upper
    bound known before the op is sequenced."""
    return _FIXED_BYTES + len(orjson.dumps(did)) + len(orjson.dumps(cid)) + len(operation_json)


_FIXED_BYTES = len(build_line("", "", MAX_TREE_SIZE, "0000-00-00T00:00:00.000Z", b"")) - 4


def operation_json(line: bytes) -> bytes:
    """The operation's JSON bytes inside a stored export line (no parsing, a slice)."""
    start = line.index(_OP_KEY) + len(_OP_KEY)
    return line[start : len(line) - len(_TAIL)]


def line_head(line: bytes) -> dict[str, Any]:
    """``{did, cid, seq, createdAt}`` of a stored export line, decoded without its operation
    (the keys before it are plain ASCII values, so the line up to ``"operation"`` is an
    object of its own)."""
    head: dict[str, Any] = orjson.loads(line[: line.index(_OP_KEY) - 1] + b"}")
    return head


def parse_line(line: bytes | str) -> dict[str, Any]:
    """Decode an export line to a dict (``orjson``; raises ``orjson.JSONDecodeError``)."""
    value = orjson.loads(line)
    if not isinstance(value, dict):
        raise ValueError("export line is not a JSON object")
    return value
