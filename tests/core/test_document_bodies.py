"""The one-pass body builder (``state_bodies``, ``operation_state_bodies``) against the
reference shapes (``format_data`` / ``format_did_document``), byte for byte."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from plc.document import (
    format_data,
    format_did_document,
    operation_state_bodies,
    state_bodies,
)
from plc.keys import Curve
from plc.operation import DocumentData, normalize, trusted_operation

from ..helpers import VALID_LOGS, key, load_log

DID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
_KEYS = [
    key("doc-k").did_key,
    key("doc-p", Curve.P256).did_key,
    "did:key:z6MkjwbBXZnFqL8su24wGL2Fdjti6GSLv9SWdYGswfazUPm9",  # ed25519: no suite context
    "did:key:zBogus",
    "not a did:key",
]
_names = st.text(min_size=0, max_size=6)  # non-ASCII names sort by UTF-8 length, then bytes
_service = st.fixed_dictionaries({"type": st.text(max_size=8), "endpoint": st.text(max_size=8)})


def _reference(did: str, state: DocumentData) -> tuple[bytes, bytes]:
    return orjson.dumps(format_data(did, state)), orjson.dumps(format_did_document(did, state))


@settings(max_examples=300, deadline=None)
@given(
    rotation=st.lists(st.sampled_from(_KEYS), max_size=5),
    methods=st.dictionaries(_names, st.sampled_from(_KEYS), max_size=5),
    aka=st.lists(st.text(max_size=8), max_size=4),
    services=st.dictionaries(_names, _service, max_size=5),
    endpoint_first=st.booleans(),
)
def test_state_bodies_equal_the_reference_shapes(
    rotation: list[str],
    methods: dict[str, str],
    aka: list[str],
    services: dict[str, dict[str, str]],
    endpoint_first: bool,
) -> None:
    if endpoint_first:  # the wire may give a service's fields in any order
        services = {k: {"endpoint": v["endpoint"], "type": v["type"]} for k, v in services.items()}
    state = DocumentData(tuple(rotation), methods, tuple(aka), services)
    assert state_bodies(DID, state) == _reference(DID, state)
    op = trusted_operation(
        {
            "type": "plc_operation",
            "rotationKeys": rotation,
            "verificationMethods": methods,
            "alsoKnownAs": aka,
            "services": services,
            "prev": None,
            "sig": "x",
        },
        "bafy",
    )
    assert operation_state_bodies(DID, op) == _reference(DID, state)


def test_operation_state_bodies_of_real_logs() -> None:
    """Every op of the interop logs (legacy ``create`` and tombstones included)."""
    seen = set()
    for path in VALID_LOGS:
        for entry in load_log(path):
            op_data: dict[str, Any] = entry["operation"]
            op = trusted_operation(op_data, entry["cid"])
            state = normalize(op)
            expected = None if state is None else _reference(entry["did"], state)
            assert operation_state_bodies(entry["did"], op) == expected
            seen.add(op_data["type"])
    assert seen == {"create", "plc_operation", "plc_tombstone"}
