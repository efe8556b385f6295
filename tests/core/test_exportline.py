"""The stored export line: its operation and its head (did, cid, seq, createdAt) are read
from the bytes without decoding the other part, and agree with a full decode."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from plc.exportline import build_line, line_head, operation_json, parse_line
from plc.operation import parse_operation

from ..helpers import new_did

# any text an op may hold: no lone surrogates (not UTF-8), no U+0000 (refused in ops)
_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=40,
)


@given(handle=_TEXT, seq=st.integers(min_value=1, max_value=2**63 - 1))
def test_head_and_operation_agree_with_a_full_decode(handle: str, seq: int) -> None:
    did, genesis, _ = new_did("line")
    genesis = {**genesis, "alsoKnownAs": [f"at://{handle}", '"operation":,"type"']}
    op = parse_operation(genesis)  # the schema only: the signature is not checked here
    line = build_line(did, op.cid, seq, "2026-01-02T03:04:05.678Z", op.canonical_json())
    full = parse_line(line)
    assert line_head(line) == {k: full[k] for k in ("did", "cid", "seq", "createdAt")}
    assert orjson.loads(operation_json(line)) == full["operation"]
    assert full["type"] == "sequenced_op"
