"""The committed OpenAPI document matches the app (regenerate with `make openapi`)."""

from __future__ import annotations

from plc.api.openapi_export import render

from ..conftest import REPO


def test_openapi_file_matches_app() -> None:
    committed = (REPO / "openapi" / "plc-directory.json").read_bytes()
    assert committed == render(), "openapi/plc-directory.json is stale: run `make openapi`"


def test_openapi_lists_real_statuses_and_content_types() -> None:
    import orjson

    spec = orjson.loads(render())
    post = spec["paths"]["/{did}"]["post"]
    assert {"200", "400", "409", "413", "429", "503"} <= set(post["responses"])
    get = spec["paths"]["/{did}"]["get"]
    assert "application/did+ld+json" in get["responses"]["200"]["content"]
    assert "application/jsonlines" in spec["paths"]["/export"]["get"]["responses"]["200"]["content"]
