"""``--removed-cids`` excuses a listed op even when the strict schema refuses it (some ops
plc.directory removed carry an extra field): the list is consulted before the line is
parsed, by the CID of the op's DAG-CBOR, and the standalone checker verifies the result."""

from __future__ import annotations

from pathlib import Path

import orjson

from auditor.evidence_check import VERIFIED, check_finding
from auditor.findings import INFO
from auditor.removals import load_removed_cids
from plc.codec import cid_for_cbor, encode_dag_cbor
from plc.exportline import build_line
from plc.signing import pds_services, plc_operation, sign_operation

from ..helpers import key
from .conftest import Audit, line_for


def _extra_field_did() -> tuple[str, str, list[bytes]]:
    """A genesis with an extra field (refused by the strict schema) and a valid update
    chained to it: ``(did, the genesis CID, the two export lines)``."""
    signer = key("extra-field")
    unsigned = plc_operation(
        rotation_keys=[signer.did_key],
        verification_methods={"atproto": signer.did_key},
        also_known_as=["at://x.example"],
        services=pds_services("https://pds.example"),
        prev=None,
    )
    genesis = sign_operation({**unsigned, "extraField": "junk"}, signer)
    cid = cid_for_cbor(encode_dag_cbor(genesis))
    update = sign_operation(
        plc_operation(
            rotation_keys=[signer.did_key],
            verification_methods={"atproto": signer.did_key},
            also_known_as=["at://y.example"],
            services=pds_services("https://pds.example"),
            prev=cid,
        ),
        signer,
    )
    did = "did:plc:" + "x" * 24  # the genesis does not hash to it: it is never judged
    first = build_line(
        did, cid, 1, "2024-01-01T00:00:00.000Z", orjson.dumps(genesis, option=orjson.OPT_SORT_KEYS)
    )
    return did, cid, [first, line_for(did, update, 2, "2024-01-01T01:00:00.000Z")]


def test_a_listed_op_that_does_not_parse_strictly_is_excused(verify: Audit, tmp_path: Path) -> None:
    did, cid, lines = _extra_field_did()
    listed = tmp_path / "removed.json"
    listed.write_bytes(orjson.dumps([cid]))
    findings = verify(lines, removed_cids=load_removed_cids([listed]))
    # Was malformed-entry for the listed op and op-before-prev for the one after it.
    assert [(f.cls, f.severity, f.seq) for f in findings] == [
        ("announced-removal", INFO, 1),
        ("announced-removal", INFO, 2),
    ]
    assert findings[0].cid == cid and findings[0].did == did
    assert check_finding(orjson.loads(findings[0].dumps())) == VERIFIED
    # Unlisted, the same lines are still what they were.
    assert {f.cls for f in verify(lines)} == {"malformed-entry", "op-before-prev"}
