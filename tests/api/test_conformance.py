"""The interop audit logs replayed through the HTTP API with their own timestamps, on SQLite
and PostgreSQL (plc-spec-notes.md §7; issue 2 "Conformance")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from plc.timestamps import parse_timestamp

from ..conftest import Clock
from ..helpers import INVALID_AT, INVALID_LOGS, VALID_LOGS, load_log

POLICY_BREAKERS = {
    "log_empty_rotation_keys.json": 1,
    "log_duplicate_rotation_keys.json": 0,
    "log_nullification.json": 1,
}


def _post_all(client: TestClient, clock: Clock, raw: list[dict[str, Any]]) -> list[int]:
    statuses = []
    for entry in raw:
        clock.set(parse_timestamp(entry["createdAt"]))
        response = client.post(f"/{entry['did']}", json=entry["operation"])
        statuses.append(response.status_code)
        if response.status_code != 200:
            assert set(response.json()) == {"message"}
            break
    return statuses


def _audit_view(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["did"], e["cid"], e["nullified"], e["createdAt"], e["operation"]) for e in entries]


@pytest.mark.parametrize(
    "path", [p for p in VALID_LOGS if "legacy" not in p.name], ids=lambda p: p.name
)
def test_valid_log_accepted_and_audit_log_identical(
    open_client: TestClient, clock: Clock, path: Path
) -> None:
    raw = load_log(path)
    assert _post_all(open_client, clock, raw) == [200] * len(raw)
    audit = open_client.get(f"/{raw[0]['did']}/log/audit")
    assert audit.status_code == 200
    assert _audit_view(audit.json()) == _audit_view(raw)
    # the operation's keys come in DAG-CBOR order (length, then bytes), as plc.directory
    # serves them from jsonb
    for served in audit.json():
        keys = list(served["operation"])
        assert keys == sorted(keys, key=lambda k: (len(k), k))
    op_log = open_client.get(f"/{raw[0]['did']}/log").json()
    assert op_log == [e["operation"] for e in raw if not e["nullified"]]
    assert open_client.get(f"/{raw[0]['did']}/log/last").json() == op_log[-1]


@pytest.mark.parametrize("path", INVALID_LOGS, ids=lambda p: p.name)
def test_invalid_log_refused_at_the_right_op_and_nothing_stored(
    open_client: TestClient, clock: Clock, path: Path
) -> None:
    raw = load_log(path)
    bad = INVALID_AT[path.name]
    statuses = _post_all(open_client, clock, raw)
    assert statuses[:bad] == [200] * bad
    assert len(statuses) == bad + 1 and 400 <= statuses[bad] < 500
    audit = open_client.get(f"/{raw[0]['did']}/log/audit")
    if bad == 0:
        assert audit.status_code == 404
    else:
        assert [e["cid"] for e in audit.json()] == [e["cid"] for e in raw[:bad]]
    exported = open_client.get("/export?after=0").text
    assert raw[bad]["cid"] not in exported


@pytest.mark.parametrize("name, at", sorted(POLICY_BREAKERS.items()))
def test_default_policy_refuses_history_that_broke_todays_limits(
    client: TestClient, clock: Clock, name: str, at: int
) -> None:
    raw = load_log(next(p for p in VALID_LOGS if p.name == name))
    statuses = _post_all(client, clock, raw)
    assert statuses == [200] * at + [400]


def test_legacy_genesis_loaded_through_the_store_and_served(
    open_client: TestClient,
) -> None:
    raw = load_log(next(p for p in VALID_LOGS if "legacy" in p.name))
    did = raw[0]["did"]
    directory = open_client.app.state.directory  # type: ignore[attr-defined]
    # POST refuses new legacy `create` ops, as the reference does
    assert open_client.post(f"/{did}", json=raw[0]["operation"]).status_code == 400
    for entry in raw:
        directory.import_op(did, entry["operation"], parse_timestamp(entry["createdAt"]))
    audit = open_client.get(f"/{did}/log/audit").json()
    assert _audit_view(audit) == _audit_view(raw)
    data = open_client.get(f"/{did}/data").json()
    assert (
        data["did"] == did and data["rotationKeys"] and data["alsoKnownAs"][0].startswith("at://")
    )
    document = open_client.get(f"/{did}").json()
    assert document["id"] == did
