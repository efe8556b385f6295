"""``plc resolve`` (run_resolve / resolve_command) and HttpPlcDocumentSource, against the local
HTTP server standing in for a PLC directory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from plc.cli import app as plc_app
from plc.errors import DidNotAvailable, DidNotRegistered, Unavailable
from plc.resolve import HttpPlcDocumentSource, IdentityResolver
from plc.resolve.cli import resolve_command, run_resolve
from tests.resolve.conftest import (
    DID_A,
    DID_B,
    DID_T,
    MemoryPlcSource,
    SettingsFactory,
    plc_document,
)
from tests.resolve.servers import LocalDns, LocalHttp


@pytest.fixture
def directory(http: LocalHttp, dns: LocalDns) -> str:
    """The HTTP server acting as a PLC directory at http://127.0.0.1:<port>."""
    http.route(
        "127.0.0.1",
        f"/{DID_A}",
        body=orjson.dumps(plc_document(DID_A, "alice.test")),
        headers={"Content-Type": "application/did+ld+json; charset=utf-8"},
    )
    http.route("127.0.0.1", f"/{DID_B}", body=orjson.dumps(plc_document(DID_B, "bob.test")))
    http.route(
        "127.0.0.1",
        f"/{DID_T}",
        status=404,
        body=orjson.dumps({"message": f"DID not available: {DID_T}"}),
    )
    dns.zone.txt("_atproto.alice.test", f"did={DID_A}")
    dns.zone.txt("_atproto.mallory.test", f"did={DID_A}")
    return f"http://127.0.0.1:{http.port}"


def test_plc_source_maps_answers(directory: str, http: LocalHttp) -> None:
    source = HttpPlcDocumentSource(directory)
    assert asyncio.run(source.get_document(DID_A))["id"] == DID_A
    with pytest.raises(DidNotAvailable, match="DID not available"):
        asyncio.run(source.get_document(DID_T))
    with pytest.raises(DidNotRegistered):
        asyncio.run(source.get_document("did:plc:" + "z" * 24))
    http.route("127.0.0.1", "/did:plc:gone", status=410, body=b"")
    with pytest.raises(DidNotAvailable):
        asyncio.run(source.get_document("did:plc:gone"))
    http.route("127.0.0.1", "/did:plc:err", status=500, body=b"oops")
    with pytest.raises(Unavailable):
        asyncio.run(source.get_document("did:plc:err"))
    http.route("127.0.0.1", "/did:plc:big", body=b"[" + b"1," * 1000 + b"1]")
    with pytest.raises(Unavailable):
        asyncio.run(
            HttpPlcDocumentSource(directory, max_body_bytes=100).get_document("did:plc:big")
        )
    with pytest.raises(Unavailable):
        asyncio.run(HttpPlcDocumentSource("http://127.0.0.1:9").get_document(DID_A))


def test_cli_prints_verified_identity(
    directory: str, make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_resolve("alice.test", directory, settings=make_settings()) == 0
    printed = orjson.loads(capsys.readouterr().out)
    assert printed["did"] == DID_A and printed["handle"] == "alice.test"
    assert printed["didDoc"]["id"] == DID_A
    assert run_resolve(DID_A, directory, settings=make_settings()) == 0
    assert orjson.loads(capsys.readouterr().out)["handle"] == "alice.test"


def test_cli_exit_codes(
    directory: str, make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    assert run_resolve("nobody.test", directory, settings=settings) == 1
    err = orjson.loads(capsys.readouterr().err)
    assert err["error"] == "HandleNotFound" and "reason" in err
    assert run_resolve(DID_T, directory, settings=settings) == 1
    assert orjson.loads(capsys.readouterr().err)["error"] == "DidDeactivated"
    assert run_resolve("not a handle", directory, settings=settings) == 1
    assert orjson.loads(capsys.readouterr().err)["error"] == "InvalidRequest"
    # a handle whose document does not claim it: identity printed, but not resolved
    assert run_resolve("mallory.test", directory, settings=settings) == 1
    assert orjson.loads(capsys.readouterr().out)["handle"] == "handle.invalid"
    # a DID whose handle does not verify still resolves
    assert run_resolve(DID_B, directory, settings=settings) == 0
    assert orjson.loads(capsys.readouterr().out)["handle"] == "handle.invalid"
    assert run_resolve(DID_A, "http://127.0.0.1:9", settings=settings) == 1
    assert orjson.loads(capsys.readouterr().err)["error"] == "Unavailable"


def test_registered_as_typer_command(
    directory: str, dns: LocalDns, http: LocalHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLC_RESOLVE_DNS_NAMESERVERS", "127.0.0.1")
    monkeypatch.setenv("PLC_RESOLVE_DNS_PORT", str(dns.port))
    monkeypatch.setenv("PLC_RESOLVE_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("PLC_RESOLVE_HANDLE_HTTP_SCHEME", "http")
    monkeypatch.setenv("PLC_RESOLVE_HANDLE_HTTP_PORT", str(http.port))
    app = typer.Typer()
    app.command("resolve")(resolve_command)

    @app.command("other")
    def other() -> None:  # a second command keeps "resolve" a subcommand
        pass

    runner = CliRunner()
    ok = runner.invoke(app, ["resolve", "alice.test", "--plc-url", directory, "--timeout", "2"])
    assert ok.exit_code == 0, ok.output
    assert orjson.loads(ok.stdout)["did"] == DID_A
    missing = runner.invoke(app, ["resolve", "nobody.test", "--plc-url", directory])
    assert missing.exit_code == 1


# -- the time budget bounds the did:plc fetch ------------------------------------------------


def test_timeout_bounds_the_did_plc_fetch(
    directory: str,
    http: LocalHttp,
    make_settings: SettingsFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The reviewer's reproduction: the directory answers after 4.5 s, ``--timeout 1``."""
    document = orjson.dumps(plc_document(DID_A, "alice.test"))
    http.route("127.0.0.1", f"/{DID_A}", body=document, delay_s=4.5)
    started = time.monotonic()
    assert run_resolve(DID_A, directory, timeout_s=1.0, settings=make_settings()) == 1
    assert time.monotonic() - started < 2.0
    error = orjson.loads(capsys.readouterr().err)
    assert error == {"error": "Unavailable", "message": "PLC directory did not answer in time"}


def test_a_slowly_sent_answer_is_bounded_as_a_whole(
    directory: str, http: LocalHttp, make_settings: SettingsFactory, plc_source: MemoryPlcSource
) -> None:
    """Ten pieces 0.3 s apart: no single read waits long, the whole takes 3 s. Both the
    source's own timeout and the resolver's deadline end it."""
    document = orjson.dumps(plc_document(DID_A, "alice.test"))
    http.route("127.0.0.1", f"/{DID_A}", body=document, drip_s=0.3)

    async def timed(call: Awaitable[object]) -> float:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="did not answer in time"):
            await call
        return time.monotonic() - started

    alone = HttpPlcDocumentSource(directory, timeout_s=1.0)
    assert asyncio.run(timed(alone.get_document(DID_A))) < 2.0
    patient = HttpPlcDocumentSource(directory, timeout_s=30.0)
    resolver = IdentityResolver(make_settings(time_budget_s=1.0), patient)
    assert asyncio.run(timed(resolver.resolve_did(DID_A))) < 2.0
    # control: the same answer, sent at once, resolves
    http.route("127.0.0.1", f"/{DID_A}", body=document)
    assert asyncio.run(resolver.resolve_did(DID_A))["id"] == DID_A


@pytest.mark.anyio
async def test_the_servers_own_store_is_read_outside_the_budget(
    make_settings: SettingsFactory,
) -> None:
    """A source without a deadline (the server's store, a local read) is not cut off."""

    class SlowStore(MemoryPlcSource):
        async def get_document(self, did: str, deadline: float | None = None) -> dict[str, Any]:
            await asyncio.sleep(0.5)
            return await super().get_document(did)

    store = SlowStore()
    store.add(DID_A)
    resolver = IdentityResolver(make_settings(time_budget_s=0.2), store)
    assert (await resolver.resolve_did(DID_A))["id"] == DID_A


# -- settings refused in one line ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            [],
            {"PLC_RESOLVE_TIME_BUDGET_S": "abc"},
            "error: invalid setting PLC_RESOLVE_TIME_BUDGET_S: Input should be a valid number, "
            "unable to parse string as a number\n",
        ),
        (
            ["--timeout", "100"],
            {},
            "error: invalid setting --timeout (PLC_RESOLVE_TIME_BUDGET_S): Input should be less "
            "than or equal to 60\n",
        ),
        (
            ["--timeout", "2"],
            {"PLC_RESOLVE_DNS_PORT": "99999"},
            "error: invalid setting PLC_RESOLVE_DNS_PORT: Input should be less than or equal to "
            "65535\n",
        ),
    ],
    ids=["env-not-a-number", "timeout-over-limit", "other-setting-with-timeout"],
)
def test_a_bad_setting_is_one_line_without_its_value(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(plc_app, ["resolve", "x.com", *args])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr == expected
    assert result.stdout == ""
    for value in [*env.values(), *args[1:]]:
        assert value not in result.stderr
