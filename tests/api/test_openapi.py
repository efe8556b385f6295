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


def test_the_document_does_not_depend_on_the_callers_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLC_METRICS", "false")
    document = orjson.loads(render())
    assert "/metrics" in document["paths"]


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
    assert listed[("/export/stream", "get")] == {"101", "400", "426"}
    assert listed[("/tlog/checkpoint", "get")] == {"200", "503"}  # 503 before the first one


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


def test_the_tile_path_pattern_is_exactly_what_the_server_parses(client: TestClient) -> None:
    from plc.tlog.errors import MalformedTilePath
    from plc.tlog.tiles import parse_tile_path

    pattern = re.compile(_ecma(_parameters("/tlog/tile/{path}")["path"]["schema"]["pattern"]))

    def parses(path: str) -> bool:
        try:
            parse_tile_path("tile/" + path)
        except MalformedTilePath:
            return False
        return True

    levels = ["entries", "0", "00", "1", "9", "10", "63", "64", "99", "100", "-1", "a"]
    indexes = ["000", "005", "0000", "5", "x000/005", "x001/005", "x999/999", "x001/x000/000",
               "x1/000", "x001/", "x001/" + "x000/" * 5 + "000",
               "x001/" + "x000/" * 6 + "000"]  # fmt: skip
    widths = ["", ".p/1", ".p/0", ".p/01", ".p/255", ".p/256", ".p/999", ".p/", ".p/1/"]
    samples = [f"{lv}/{ix}{w}" for lv in levels for ix in indexes for w in widths]
    samples += ["0/000\n", "", "0", "tile/0/000"]
    for path in samples:
        assert bool(pattern.search(path)) == parses(path), path
    did, genesis, _ = new_did("openapi-tiles")
    assert client.post(f"/{did}", json=genesis).status_code == 200
    assert client.get("/tlog/tile/0/000.p/1").status_code == 200
    for path in ("0/000", "63/x001/000", "entries/000.p/2"):  # the pattern's, beyond the tree
        assert client.get(f"/tlog/tile/{path}").status_code == 404, path
    for path in ("0", "64/000", "0/000.p/256", "0/x000/005"):
        assert client.get(f"/tlog/tile/{path}").status_code == 400, path


def _ecma(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern as Python reads it: ECMA's ``$`` is the end of the
    text, Python's also matches before a final newline."""
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern


def _documented(schema: dict[str, Any], value: str) -> bool:
    """Whether ``value`` is valid under the string ``schema`` (pattern, maxLength, anyOf)."""
    if "anyOf" in schema:
        return any(_documented(option, value) for option in schema["anyOf"])
    return bool(re.search(_ecma(schema["pattern"]), value)) and len(value) <= schema["maxLength"]


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
        "x" * 64 + ".com", "a." * 126 + "co", "alice.example.com\n", "did:web:a.com\n",
    ]  # fmt: skip
    for (path, name), check in checks.items():
        schema = _parameters(path)[name]["schema"]
        for sample in samples:
            assert _documented(schema, sample) == check(sample), (name, sample)
    # And the server refuses what the pattern refuses as a request error.
    refused = client.get("/xrpc/com.atproto.identity.resolveIdentity?identifier=00")
    assert refused.json()["error"] == "InvalidRequest"
    unknown = client.get("/xrpc/com.atproto.identity.resolveDid?did=did:plc:" + "a" * 24)
    assert unknown.json()["error"] == "DidNotFound"
