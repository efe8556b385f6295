"""``plc resolve`` as users run it: the installed console script in a subprocess, against a
live directory on loopback (``--plc-url``) and the test DNS server (``PLC_RESOLVE_*``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.resolve.servers import LocalDns, LocalHttp

from .conftest import Directory

_VENV_PLC = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "plc"
PLC = _VENV_PLC if _VENV_PLC.exists() else Path(sys.executable).with_name("plc")
UNREGISTERED = "did:plc:" + "z" * 24


def run_plc(*args: str, dns: LocalDns, http: LocalHttp) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLC_RESOLVE_")}
    env.update(
        {
            "PLC_RESOLVE_DNS_NAMESERVERS": "127.0.0.1",
            "PLC_RESOLVE_DNS_PORT": str(dns.port),
            "PLC_RESOLVE_ALLOW_PRIVATE_NETWORKS": "true",
            "PLC_RESOLVE_HANDLE_HTTP_SCHEME": "http",
            "PLC_RESOLVE_HANDLE_HTTP_PORT": str(http.port),
            "PLC_RESOLVE_TIME_BUDGET_S": "3",
        }
    )
    return subprocess.run(
        [str(PLC), "resolve", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(autouse=True)
def _needs_console_script() -> None:
    if not PLC.exists():
        pytest.skip(f"console script not installed: {PLC}")


def test_resolve_registered_did_and_handle(
    sqlite_directory: Directory, dns: LocalDns, http: LocalHttp
) -> None:
    directory = sqlite_directory
    alice = directory.register("cli-alice", "cli-alice.test")
    dns.zone.txt("_atproto.cli-alice.test", f"did={alice.did}")
    expected = {
        "did": alice.did,
        "handle": "cli-alice.test",
        "didDoc": directory.document(alice.did),
    }
    for identifier in (alice.did, "cli-alice.test"):
        done = run_plc(identifier, "--plc-url", directory.url, dns=dns, http=http)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == expected
    # the DID resolves even when its handle does not verify (exit 0, handle.invalid)
    bob = directory.register("cli-bob", "cli-bob.test")
    done = run_plc(bob.did, "--plc-url", directory.url, dns=dns, http=http)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["handle"] == "handle.invalid"


def test_unresolvable_dids_exit_non_zero(
    sqlite_directory: Directory, dns: LocalDns, http: LocalHttp
) -> None:
    directory = sqlite_directory
    gone = directory.register("cli-gone", "cli-gone.test")
    directory.tombstone(gone)
    for did, error in ((UNREGISTERED, "DidNotFound"), (gone.did, "DidDeactivated")):
        done = run_plc(did, "--plc-url", directory.url, dns=dns, http=http)
        assert done.returncode != 0
        assert done.stdout == ""
        assert json.loads(done.stderr)["error"] == error
