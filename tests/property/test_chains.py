"""Properties: random valid chains built by our own signing code are accepted and round-trip
through every read endpoint; any single-field mutation of a signed op is refused."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from plc.api.app import create_app
from plc.config import Settings
from plc.errors import PlcError
from plc.keys import Curve, PrivateKey
from plc.operation import parse_operation
from plc.rules import LogEntry, validate_next_op
from plc.signing import cid_of, create_did, pds_services, sign_operation, tombstone

from ..conftest import Clock

KEYS = [PrivateKey.from_seed(f"prop{i}", Curve.K256 if i % 2 else Curve.P256) for i in range(6)]

handles = st.from_regex(r"[a-z][a-z0-9]{0,10}\.test", fullmatch=True)
step = st.one_of(
    st.tuples(st.just("handle"), handles),
    st.tuples(st.just("pds"), st.from_regex(r"https://[a-z]{1,8}\.example", fullmatch=True)),
    st.tuples(st.just("rotate"), st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("signing"), st.integers(0, 5)),
)


def _apply(state: dict[str, Any], action: tuple[str, Any]) -> dict[str, Any]:
    kind, value = action
    state = dict(state)
    if kind == "handle":
        state["alsoKnownAs"] = [f"at://{value}"]
    elif kind == "pds":
        state["services"] = pds_services(value)
    elif kind == "rotate":
        state["rotationKeys"] = [KEYS[i].did_key for i in value]
    else:
        state["verificationMethods"] = {"atproto": KEYS[value].did_key}
    return state


@settings(max_examples=15)
@given(
    steps=st.lists(step, min_size=1, max_size=6),
    signer_choice=st.lists(st.integers(0, 2), min_size=6, max_size=6),
    end_with_tombstone=st.booleans(),
)
def test_random_chain_round_trips(
    steps: list[tuple[str, Any]], signer_choice: list[int], end_with_tombstone: bool
) -> None:
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'p.sqlite3'}"
        with TestClient(create_app(Settings(database_url=url), clock=clock)) as client:
            rotation = [KEYS[0], KEYS[1]]
            did, genesis = create_did(rotation, handle="start.test")
            assert client.post(f"/{did}", json=genesis).status_code == 200
            ops = [genesis]
            current_keys = rotation
            for i, action in enumerate(steps):
                clock.advance(timedelta(hours=2))
                state = {k: v for k, v in ops[-1].items() if k not in ("sig",)}
                state = _apply(state, action)
                state["prev"] = cid_of(ops[-1])
                signer = current_keys[signer_choice[i] % len(current_keys)]
                op = sign_operation(state, signer)
                response = client.post(f"/{did}", json=op)
                assert response.status_code == 200, response.text
                ops.append(op)
                current_keys = [k for k in KEYS if k.did_key in op["rotationKeys"]]
            assert client.get(f"/{did}/log").json() == ops
            assert client.get(f"/{did}/log/last").json() == ops[-1]
            data = client.get(f"/{did}/data").json()
            assert data["rotationKeys"] == ops[-1]["rotationKeys"]
            assert data["alsoKnownAs"] == ops[-1]["alsoKnownAs"]
            doc = client.get(f"/{did}").json()
            assert (
                doc["service"][0]["serviceEndpoint"]
                == ops[-1]["services"]["atproto_pds"]["endpoint"]
            )
            audit = client.get(f"/{did}/log/audit").json()
            assert [a["cid"] for a in audit] == [cid_of(o) for o in ops]
            exported = client.get("/export?after=0").text.split("\n")
            assert len(exported) == len(ops)
            if end_with_tombstone:
                clock.advance(timedelta(hours=2))
                tomb = sign_operation(tombstone(cid_of(ops[-1])), current_keys[0])
                assert client.post(f"/{did}", json=tomb).status_code == 200
                assert client.get(f"/{did}").status_code == 404


def _mutations(op: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for field, value in op.items():
        if isinstance(value, str):
            out.append({**op, field: value[:-1] + ("A" if value[-1] != "A" else "B")})
        elif isinstance(value, list) and value:
            out.append({**op, field: value[:-1]})
            out.append({**op, field: [*value, value[0] + "x"]})
        elif isinstance(value, dict):
            out.append(
                {
                    **op,
                    field: {
                        **value,
                        "added": {"type": "t", "endpoint": "e"}
                        if field == "services"
                        else "did:key:zQ3x",
                    },
                }
            )
        out.append({k: v for k, v in op.items() if k != field})
    out.append({**op, "prev": "bafyreigp6shzy6dlcxuowwoxz7u5nemdrkad2my5zwzpwilcnhih7bw6zm"})
    return out


@settings(max_examples=10)
@given(seed=st.text(min_size=1, max_size=8), curve=st.sampled_from([Curve.K256, Curve.P256]))
def test_single_field_mutations_are_refused(seed: str, curve: Curve) -> None:
    from datetime import UTC, datetime

    keys = [PrivateKey.from_seed(seed + "a", curve), PrivateKey.from_seed(seed + "b", curve)]
    did, genesis = create_did(keys, handle="m.test")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    history = [LogEntry(did, parse_operation(genesis), t0)]
    base = {k: v for k, v in genesis.items() if k != "sig"}
    update = sign_operation(
        {**base, "alsoKnownAs": ["at://n.test"], "prev": cid_of(genesis)}, keys[1]
    )
    validate_next_op(history, did, parse_operation(update), t0 + timedelta(hours=1))
    for mutated in _mutations(update):
        try:
            validate_next_op(history, did, parse_operation(mutated), t0 + timedelta(hours=1))
        except PlcError:
            continue
        raise AssertionError(f"mutation accepted: {mutated}")
    for mutated in _mutations(genesis):
        try:
            validate_next_op([], did, parse_operation(mutated), t0)
        except PlcError:
            continue
        raise AssertionError(f"mutation accepted: {mutated}")
