"""The test corpus: real operations posted to our directory, then read back from it.

:func:`build_corpus` starts the real server (SQLite, a known log signing key, a settable
clock), posts ~3,000 signed operations through ``POST /{did}`` — geneses (k256 and p256
rotation keys), updates by either rotation key, recoveries that nullify an update signed by
the lower-authority key, tombstones — and saves what the directory then publishes: every
``/export`` line and its signed checkpoint. Tests serve these bytes (tampered or not) from
:mod:`tests.auditor.fakedir`. The accounts' keys are deterministic (seeded), so tests can sign
new, rule-breaking ops for them.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from plc.keys import Curve, PrivateKey
from plc.signing import (
    cid_of,
    create_did,
    sign_operation,
    tombstone,
    update_operation,
)
from plc.tlog.note import Signer, parse_signer_key

ACCOUNTS = 1500
ORIGIN = "corpus.test/log"


def account_keys(index: int) -> list[PrivateKey]:
    """Rotation keys of account ``index``, most authority first."""
    curve = Curve.P256 if index % 3 == 0 else Curve.K256
    return [
        PrivateKey.from_seed(f"acct{index}-rot0", curve),
        PrivateKey.from_seed(f"acct{index}-rot1"),
    ]


@dataclass
class Account:
    """One DID of the corpus: its keys and its accepted ops (signed dicts, oldest first)."""

    index: int
    did: str
    ops: list[dict[str, Any]]
    signers: list[int]
    nullified: list[bool]

    @property
    def keys(self) -> list[PrivateKey]:
        return account_keys(self.index)


@dataclass
class Corpus:
    """What the directory published for the posted ops."""

    lines: list[bytes]
    checkpoint: str
    signer: Signer
    accounts: list[Account]

    def account(self, predicate: Callable[[Account], bool]) -> Account:
        return next(a for a in self.accounts if predicate(a))


def _update(prev: dict[str, Any], signer: PrivateKey, handle: str) -> dict[str, Any]:
    return update_operation(prev, signer, also_known_as=[f"at://{handle}"])


def _post(client: httpx.Client, did: str, op: dict[str, Any]) -> None:
    response = client.post(
        f"/{did}", content=orjson.dumps(op), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


def build_corpus(directory: Path) -> Corpus:
    """Post the corpus to a fresh server and save what it publishes (``corpus.json``)."""
    from plc.api.app import create_app
    from plc.config import Settings
    from tests.conftest import Clock, LiveServer

    signer = Signer.generate(ORIGIN)
    clock = Clock()
    settings = Settings(
        database_url=f"sqlite:///{directory / 'corpus.sqlite3'}",
        log_signing_key=signer.key_text,
        log_origin=ORIGIN,
        checkpoint_interval_ms=50,
        policy_enabled=False,
        validation_process=True,  # the first ops are validated in-process, the rest in a child
    )
    accounts: list[Account] = []
    for i in range(ACCOUNTS):
        keys = account_keys(i)
        did, genesis = create_did(keys, handle=f"acct{i}.test")
        accounts.append(Account(i, did, [genesis], [0], [False]))
    with LiveServer(create_app(settings, clock=clock)) as server:
        client = httpx.Client(base_url=server.url, timeout=30)
        with ThreadPoolExecutor(8) as pool:

            def phase(step: Callable[[Account], None]) -> None:
                list(pool.map(step, accounts))
                clock.advance(timedelta(minutes=10))

            phase(lambda a: _post(client, a.did, a.ops[0]))

            def append(a: Account, signer_index: int, handle: str) -> None:
                op = _update(a.ops[-1], a.keys[signer_index], handle)
                _post(client, a.did, op)
                a.ops.append(op)
                a.signers.append(signer_index)
                a.nullified.append(False)

            phase(lambda a: append(a, 0, f"acct{a.index}-b.test") if a.index % 2 == 0 else None)
            phase(lambda a: append(a, 1, f"acct{a.index}-c.test") if a.index % 5 == 0 else None)

            def recover(a: Account) -> None:
                if a.index % 10 != 0:
                    return
                op = _update(a.ops[-2], a.keys[0], f"acct{a.index}-r.test")
                _post(client, a.did, op)
                a.nullified[-1] = True
                a.ops.append(op)
                a.signers.append(0)
                a.nullified.append(False)

            phase(recover)
            phase(lambda a: append(a, 0, f"acct{a.index}-d.test") if a.index % 7 == 3 else None)

            def bury(a: Account) -> None:
                if a.index % 15 != 7:
                    return
                op = sign_operation(tombstone(cid_of(a.ops[-1])), a.keys[0])
                _post(client, a.did, op)
                a.ops.append(op)
                a.signers.append(0)
                a.nullified.append(False)

            phase(bury)
        lines: list[bytes] = []
        while True:
            after = orjson.loads(lines[-1])["seq"] if lines else 0
            body = client.get("/export", params={"after": after, "count": 1000}).content
            if not body:
                break
            lines.extend(body.split(b"\n"))
        deadline = time.monotonic() + 10
        while True:
            note = client.get("/tlog/checkpoint").text
            if note.split("\n")[1] == str(len(lines)) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        client.close()
    corpus = Corpus(lines, note, signer, accounts)
    (directory / "corpus.json").write_bytes(
        orjson.dumps(
            {
                "lines": [x.decode("utf-8") for x in lines],
                "checkpoint": note,
                "signer": signer.key_text,
                "accounts": [
                    {
                        "index": a.index,
                        "did": a.did,
                        "ops": a.ops,
                        "signers": a.signers,
                        "nullified": a.nullified,
                    }
                    for a in accounts
                ],
            }
        )
    )
    return corpus


def load_corpus(directory: Path) -> Corpus:
    """The corpus in ``directory``, building it first if needed (one builder across pytest
    workers: an exclusive lock on ``directory/lock``)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = directory / "corpus.json"
        if not saved.exists():
            build_corpus(directory)
        data = orjson.loads(saved.read_bytes())
    return Corpus(
        [x.encode("utf-8") for x in data["lines"]],
        data["checkpoint"],
        parse_signer_key(data["signer"]),
        [Account(**a) for a in data["accounts"]],
    )
