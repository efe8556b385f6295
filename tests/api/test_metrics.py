"""``GET /metrics``: what the write path counts, on SQLite (group commit on the event loop)
and PostgreSQL (the committer thread); content negotiation; the setting that turns it off."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Callable
from datetime import timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from plc.errors import RateLimited, Unavailable
from plc.metrics import BODY_REFUSALS, DirectoryMetrics

from ..conftest import REPO, Clock
from ..helpers import new_did, update


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET /metrics``: (name, sorted labels) → value."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_commits_and_refusals_are_counted(client: TestClient, clock: Clock) -> None:
    did, genesis, keys = new_did("metrics")
    assert client.post(f"/{did}", json=genesis).status_code == 200
    clock.advance(timedelta(seconds=1))
    op1 = update(genesis, keys[0], also_known_as=["at://metrics2.example.com"])
    assert client.post(f"/{did}", json=op1).status_code == 200
    before = scrape(client)
    assert before[("plc_ops_committed_total", ())] == 2
    assert before[("plc_log_tree_size", ())] == 2
    assert before[("plc_commit_batch_ops_sum", ())] == 2
    assert before[("plc_commit_batch_ops_count", ())] == 2  # one POST after the other
    assert before[("plc_commit_seconds_count", ())] == 2
    assert before[("plc_commit_seconds_sum", ())] > 0
    assert not [k for k in before if k[0] == "plc_ops_refused_total"]

    # Signed by a key that is not a rotation key: refused, nothing stored.
    clock.advance(timedelta(seconds=1))
    forged = update(op1, new_did("someone-else")[2][0], also_known_as=["at://x.example.com"])
    assert client.post(f"/{did}", json=forged).status_code == 400
    # A prev that is none of this DID's ops.
    stranger = update(new_did("stranger")[1], keys[0], also_known_as=["at://y.example.com"])
    assert client.post(f"/{did}", json=stranger).status_code == 400
    after = scrape(client)
    assert after[("plc_ops_refused_total", (("reason", "InvalidSignature"),))] == 1
    assert after[("plc_ops_refused_total", (("reason", "MisorderedOperation"),))] == 1
    assert after[("plc_ops_committed_total", ())] == 2
    assert after[("plc_log_tree_size", ())] == 2
    assert after[("plc_ops_failed_total", ())] == 0
    if sys.platform == "linux":  # the process collector reads /proc
        assert after[("process_cpu_seconds_total", ())] > 0


def refused_help(client: TestClient) -> str:
    """The HELP text of ``plc_ops_refused`` as a scrape shows it."""
    text = client.get("/metrics").text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "plc_ops_refused"]
    return family.documentation


def test_bodies_refused_before_their_op_is_read_are_counted(client: TestClient) -> None:
    did, genesis, _ = new_did("metrics-bodies")
    json = {"content-type": "application/json"}
    utf16 = {"content-type": "application/json; charset=utf-16"}
    refused = [
        (client.post(f"/{did}", content=b"{}", headers={"content-type": "text/plain"}), 400),
        (client.post(f"/{did}", content=b"x" * 200_000, headers=json), 413),
        (client.post(f"/{did}", content=b"{}", headers={**json, "content-encoding": "br"}), 415),
        (client.post(f"/{did}", content=b"{}", headers={**json, "content-encoding": "gzip"}), 400),
        (
            client.post(
                f"/{did}",
                json=genesis,
                headers={**json, "content-type": f"{json['content-type']}; charset=latin1"},
            ),
            415,
        ),
        (client.post(f"/{did}", content=b"{\x00\x00", headers=utf16), 400),  # odd length
        (client.post(f"/{did}", content=b"not json", headers=json), 400),
    ]
    assert [r.status_code for r, _ in refused] == [status for _, status in refused]
    samples = scrape(client)
    for reason in (
        "UnsupportedContentType",
        "BodyTooLarge",
        "UnsupportedEncoding",
        "CorruptEncoding",
        "UnsupportedCharset",
        "MalformedCharset",
        "InvalidInput",
    ):
        assert samples[("plc_ops_refused_total", (("reason", reason),))] == 1, reason
    assert samples[("plc_ops_committed_total", ())] == 0
    # What a dashboard reads the reasons from names every one counted here.
    named = set(re.findall(r"\w+", refused_help(client)))
    counted = {
        dict(labels)["reason"] for name, labels in samples if name == "plc_ops_refused_total"
    }
    assert len(counted) == 7 and counted <= named, counted - named


def test_every_reason_a_body_is_refused_for_is_in_the_help(client: TestClient) -> None:
    # bodies.py names each reason where it refuses (Refusal(status, message, headers,
    # reason)); one it names that the HELP text leaves out is a count no one can read.
    tree = ast.parse((REPO / "plc" / "api" / "bodies.py").read_text())
    given = {
        call.args[3].value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "Refusal"
        and isinstance(call.args[3], ast.Constant)
    }
    assert len(given) >= 7 and all(isinstance(reason, str) for reason in given)
    assert given == set(BODY_REFUSALS)
    described = refused_help(client)
    for reason in given:
        assert f" {reason} (" in described, reason


def test_a_database_failure_is_not_a_refusal() -> None:
    metrics = DirectoryMetrics()
    metrics.refused(Unavailable("Database unavailable, try again"))
    metrics.refused(RateLimited("Too many operations", retry_after_s=60))
    text = metrics.exposition()[0].decode()
    assert "plc_ops_failed_total 1.0" in text
    assert 'plc_ops_refused_total{reason="RateLimited"} 1.0' in text
    assert 'reason="Unavailable"' not in text


def test_tree_size_is_nan_when_the_database_does_not_answer() -> None:
    def broken() -> int:
        raise Unavailable("Database unavailable, try again")

    text = DirectoryMetrics(broken).exposition()[0].decode()
    assert "plc_log_tree_size NaN" in text


def test_re_submission_is_not_a_refusal(client: TestClient) -> None:
    did, genesis, _ = new_did("metrics-again")
    assert client.post(f"/{did}", json=genesis).status_code == 200
    assert client.post(f"/{did}", json=genesis).status_code == 200
    samples = scrape(client)
    assert samples[("plc_ops_committed_total", ())] == 1
    assert not [k for k in samples if k[0] == "plc_ops_refused_total"]


def test_tree_size_is_read_at_start(app_factory: Callable[..., FastAPI]) -> None:
    with TestClient(app_factory()) as first:
        for seed in ("start-a", "start-b"):
            did, genesis, _ = new_did(seed)
            assert first.post(f"/{did}", json=genesis).status_code == 200
    with TestClient(app_factory()) as second:
        samples = scrape(second)
    assert samples[("plc_log_tree_size", ())] == 2
    assert samples[("plc_ops_committed_total", ())] == 0  # counters are per process


def test_an_accept_header_it_cannot_read_gets_text(client: TestClient) -> None:
    for accept in ("text/plain; version=abc", "application/openmetrics-text; version=abc"):
        response = client.get("/metrics", headers={"accept": accept})
        assert response.status_code == 200, accept
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "plc_ops_committed_total 0.0" in response.text


def test_openmetrics_when_asked(client: TestClient) -> None:
    response = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert "plc_ops_committed_total 0.0" in response.text


def test_metrics_off(app_factory: Callable[..., FastAPI]) -> None:
    with TestClient(app_factory(metrics=False)) as client:
        did, genesis, _ = new_did("metrics-off")
        assert client.post(f"/{did}", json=genesis).status_code == 200
        response = client.get("/metrics")
    assert response.status_code == 404  # no such route: /metrics is read as a DID path
    assert "message" in response.json()
    assert "plc_" not in response.text
