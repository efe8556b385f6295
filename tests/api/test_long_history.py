"""A DID's next op is validated against the ops of its last days, not its whole history
(which made every POST to a DID of thousands of ops read and parse all of them), and every
answer is still the one the whole history gives: the same scenario is run against a server
that reads the whole history each time (the window made longer than the log) and the
answers compared, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from plc import service
from plc.api.app import create_app
from plc.signing import cid_of
from plc.store import history
from plc.store.sql import SqlStore

from ..conftest import Clock, make_settings
from ..helpers import new_did, update

Answer = tuple[str, int, Any]


class _Reads:
    """Counts whole-history reads (``SqlStore.audit_rows``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = SqlStore.audit_rows

        def counted(store: SqlStore, did: str) -> Any:
            self.count += 1
            return original(store, did)

        monkeypatch.setattr(SqlStore, "audit_rows", counted)


def _scenario(client: TestClient, clock: Clock, reads: _Reads) -> list[Answer]:
    did, genesis, keys = new_did("long-history")
    recovery_key, everyday_key = keys
    answers: list[Answer] = []

    def post(name: str, op: dict[str, Any], *, whole_reads: int | None = None) -> int:
        before = reads.count
        response = client.post(f"/{did}", json=op)
        body = response.text
        answers.append((name, response.status_code, body))
        if whole_reads is not None and service.HISTORY_WINDOW_MS < 10**15:
            assert reads.count - before == whole_reads, name
        return response.status_code

    def step(delta: timedelta) -> None:
        clock.advance(delta)

    post("genesis", genesis)
    step(timedelta(hours=1))
    disputed = update(genesis, everyday_key, also_known_as=["at://disputed.test"])
    post("disputed", disputed)
    step(timedelta(hours=1))
    recovered = update(genesis, recovery_key, also_known_as=["at://recovered.test"])
    post("recovery", recovered)
    chain = [recovered]
    for i in range(12):  # 24 days of updates, two days apart
        step(timedelta(days=2))
        chain.append(update(chain[-1], everyday_key, also_known_as=[f"at://u{i}.test"]))
        post(f"update {i}", chain[-1], whole_reads=0 if i > 4 else None)
    for name, op in (
        ("old nullified op again", disputed),
        ("old op again", recovered),
        ("newest op again", chain[-1]),
        ("prev an old nullified op", update(disputed, recovery_key)),
        ("recovery from an old op, too late", update(chain[3], recovery_key)),
    ):
        step(timedelta(minutes=1))
        post(name, op)
    step(timedelta(minutes=1))
    post(
        "recovery in time",
        update(chain[-2], recovery_key, also_known_as=["at://r.test"]),
        whole_reads=0,
    )
    step(timedelta(minutes=1))
    latest = update(chain[-2], recovery_key, also_known_as=["at://r.test"])
    after = update(latest, everyday_key, also_known_as=["at://after.test"])
    post("update after it", after, whole_reads=0)
    audit = client.get(f"/{did}/log/audit").json()
    assert audit[-2]["cid"] == cid_of(latest) and audit[-3]["nullified"]
    head, before_head = after, latest
    for i in range(9):  # the hour holds two ops already: the ninth more is the eleventh
        step(timedelta(minutes=1))
        op = update(head, everyday_key, also_known_as=[f"at://burst{i}.test"])
        if post(f"burst {i}", op) == 200:
            head, before_head = op, head
    # Idle for longer than the window: the head is then the one op of the window, which
    # must still be there (a window cut one row late is empty: the DID would look new).
    step(timedelta(days=10))
    post("recovery after an idle gap", update(before_head, recovery_key), whole_reads=1)
    post("update after an idle gap", update(head, everyday_key), whole_reads=0)
    audit = client.get(f"/{did}/log/audit").json()
    answers.append(("audit log", 200, [(e["cid"], e["nullified"], e["createdAt"]) for e in audit]))
    return answers


@pytest.mark.parametrize("newest", [4, 16], ids=["read-since", "cut-from-newest"])
def test_recent_history_answers_as_the_whole_history_does(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, newest: int
) -> None:
    # Read 4 or 16 rows first instead of 128, so that this DID's few dozen ops take the
    # paths a DID of thousands takes: the newest 4 do not reach back 8 days (its updates
    # are two days apart), and the window is read from the database; the newest 16 do once
    # it has more (during the burst that meets the hourly limit), and the window is cut out
    # of them; and the fall-backs to the whole history.
    monkeypatch.setattr(history, "NEWEST_ROWS", newest)
    monkeypatch.setattr(service, "NEWEST_ROWS", newest)
    reads = _Reads(monkeypatch)
    clock = Clock()
    # a weekly limit the burst meets before the hourly one: the count then needs every op
    # of the last week, not only the newest
    with TestClient(create_app(make_settings(db_url, ops_per_week=12), clock=clock)) as client:
        recent = _scenario(client, clock, reads)
    monkeypatch.setattr(service, "HISTORY_WINDOW_MS", 10**15)  # every read is the whole
    clock = Clock()
    whole_url = f"sqlite:///{tmp_path / 'whole.sqlite3'}"
    with TestClient(create_app(make_settings(whole_url, ops_per_week=12), clock=clock)) as client:
        whole = _scenario(client, clock, reads)
    assert recent == whole
    statuses = {name: status for name, status, _ in recent}
    assert statuses["old nullified op again"] == 400 and statuses["old op again"] == 200
    assert statuses["prev an old nullified op"] == 400
    assert statuses["recovery from an old op, too late"] == 400
    assert statuses["recovery in time"] == 200 and statuses["update after it"] == 200
    bursts = [statuses[f"burst {i}"] for i in range(9)]
    assert bursts[0] == 200 and 429 in bursts
    assert statuses["recovery after an idle gap"] == 400  # too late: the head is 10 days old
    assert statuses["update after an idle gap"] == 200
