"""The committed OpenAPI document matches the app (regenerate with `make openapi`)."""

from __future__ import annotations

import re
from typing import Any, cast

import orjson
import pytest
from fastapi.testclient import TestClient

from plc.api.openapi_export import render

from ..conftest import REPO
from ..helpers import new_did


def test_openapi_file_matches_app() -> None:
    committed = (REPO / "openapi" / "plc-directory.json").read_bytes()
    assert committed == render(), "openapi/plc-directory.json is stale: run `make openapi`"


def test_openapi_lists_real_statuses_and_content_types() -> None:
    spec = orjson.loads(render())
    post = spec["paths"]["/{did}"]["post"]
    assert {"200", "400", "409", "413", "429", "503"} <= set(post["responses"])
    get = spec["paths"]["/{did}"]["get"]
    assert "application/did+ld+json" in get["responses"]["200"]["content"]
    assert "application/jsonlines" in spec["paths"]["/export"]["get"]["responses"]["200"]["content"]


def _spec() -> dict[str, Any]:
    return cast(dict[str, Any], orjson.loads(render()))


def test_no_status_the_app_never_answers() -> None:
    # FastAPI lists a 422 for every route with parameters; this app answers a request it
    # cannot validate with 400 and a message, so a 422 in the document would be a lie.
    spec = _spec()
    listed = {
        (path, method): set(operation["responses"])
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }
    assert not [key for key, statuses in listed.items() if "422" in statuses]
    assert "ValidationError" not in orjson.dumps(spec).decode()
    assert listed[("/export/stream", "get")] == {"101", "403", "426"}


def _parameters(path: str, method: str = "get") -> dict[str, dict[str, Any]]:
    operation = _spec()["paths"][path][method]
    return {p["name"]: p for p in operation.get("parameters", [])}


def test_export_count_is_refused_exactly_where_its_schema_ends(client: TestClient) -> None:
    schema = _parameters("/export")["count"]["schema"]
    assert schema == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}
    for value in (schema["minimum"], 7, schema["maximum"]):
        assert client.get(f"/export?count={value}").status_code == 200, value
    for value in (schema["minimum"] - 1, schema["maximum"] + 1, "1.5", "x", ""):
        answer = client.get(f"/export?count={value}")
        assert answer.status_code == 400, value
        assert answer.json() == {"message": "Invalid count parameter"}


@pytest.mark.parametrize(
    "path, name",
    [
        ("/xrpc/com.atproto.identity.resolveHandle", "handle"),
        ("/xrpc/com.atproto.identity.resolveDid", "did"),
        ("/xrpc/com.atproto.identity.resolveIdentity", "identifier"),
    ],
)
def test_required_xrpc_parameters_are_required(client: TestClient, path: str, name: str) -> None:
    parameter = _parameters(path)[name]
    assert parameter["required"] is True and not _documented(parameter["schema"], "")
    for query in ("", f"?{name}="):
        answer = client.get(path + query)
        assert answer.status_code == 400
        assert answer.json()["error"] == "InvalidRequest"


def test_proof_parameters_are_refused_below_their_minimum(client: TestClient) -> None:
    did, genesis, _ = new_did("openapi-proofs")
    assert client.post(f"/{did}", json=genesis).status_code == 200
    inclusion = _parameters("/tlog/proof/inclusion")
    consistency = _parameters("/tlog/proof/consistency")
    assert inclusion["seq"]["required"] and not inclusion["treeSize"]["required"]
    assert consistency["from"]["required"] and consistency["to"]["required"]
    assert inclusion["seq"]["schema"]["minimum"] == consistency["from"]["schema"]["minimum"] == 1
    assert client.get("/tlog/proof/inclusion?seq=1").status_code == 200
    assert client.get("/tlog/proof/consistency?from=1&to=1").status_code == 200
    for query in ("seq=0", "seq=1&treeSize=0", "", "seq=-1", "seq=1.0"):
        assert client.get(f"/tlog/proof/inclusion?{query}").status_code == 400, query
    for query in ("from=0&to=1", "from=1", "to=1", "from=1&to=x"):
        assert client.get(f"/tlog/proof/consistency?{query}").status_code == 400, query


def test_tile_paths_outside_the_documented_pattern_are_400(client: TestClient) -> None:
    pattern = re.compile(_parameters("/tlog/tile/{path}")["path"]["schema"]["pattern"])
    for path in ("0/000.p/1", "entries/000.p/1", "1/x001/234", "63/000"):
        assert pattern.fullmatch(path), path
    for path in ("0", "00/000", "0/0000", "0/000.p/0", "0/x000", "entries/0000"):
        assert not pattern.fullmatch(path), path
        assert client.get(f"/tlog/tile/{path}").status_code == 400, path
    did, genesis, _ = new_did("openapi-tiles")
    assert client.post(f"/{did}", json=genesis).status_code == 200
    assert client.get("/tlog/tile/0/000.p/1").status_code == 200


def _documented(schema: dict[str, Any], value: str) -> bool:
    """Whether ``value`` is valid under the string ``schema`` (pattern, maxLength, anyOf)."""
    if "anyOf" in schema:
        return any(_documented(option, value) for option in schema["anyOf"])
    return bool(re.search(schema["pattern"], value)) and len(value) <= schema["maxLength"]


def test_identifier_patterns_are_the_resolvers_syntax_checks(client: TestClient) -> None:
    from plc.resolve.syntax import is_valid_at_identifier, is_valid_did, is_valid_handle

    checks = {
        ("/xrpc/com.atproto.identity.resolveDid", "did"): is_valid_did,
        ("/xrpc/com.atproto.identity.resolveHandle", "handle"): is_valid_handle,
        ("/xrpc/com.atproto.identity.resolveIdentity", "identifier"): is_valid_at_identifier,
    }
    samples = [
        "00", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "did:web:example.com", "did:x", "DID:plc:a",
        "alice.example.com", "Alice.Example.COM", "alice", "-a.com", "a.b-", "a..b", "did:a:b:",
        "x" * 64 + ".com", "a." * 126 + "co",
    ]  # fmt: skip
    for (path, name), check in checks.items():
        schema = _parameters(path)[name]["schema"]
        for sample in samples:
            assert _documented(schema, sample) == check(sample), (name, sample)
    # And the server refuses what the pattern refuses as a request error.
    assert client.get(f"{path}?identifier=00").json()["error"] == "InvalidRequest"
    unknown = client.get("/xrpc/com.atproto.identity.resolveDid?did=did:plc:" + "a" * 24)
    assert unknown.json()["error"] == "DidNotFound"
