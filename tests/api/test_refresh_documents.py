"""`plc refresh-documents`: stored `/data` and DID-document bodies rendered by an earlier
version are found (``--check``, which changes nothing) and rewritten as this version renders
them; a DID whose head moves meanwhile keeps what its new op wrote; damage is reported and
left alone. SQLite and PostgreSQL."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import event, text
from typer.testing import CliRunner

from plc.api.app import create_app
from plc.cli import app
from plc.document import DOCUMENTS_VERSION, head_state
from plc.exportline import operation_json
from plc.refresh_cli import EXIT_FAILED, EXIT_FOUND, EXIT_OK, run_refresh
from plc.signing import cid_of, sign_operation, tombstone
from plc.store.documents import refresh_page, stored_documents_version
from plc.store.engine import make_engine

from ..conftest import Clock, make_settings
from ..helpers import new_did, update

_ROW = text("SELECT tombstoned, data, document FROM dids WHERE did = :did")
_HEAD_LINE = text(
    "SELECT d.head_cid, o.line FROM dids d JOIN operations o "
    "ON o.did = d.did AND o.cid = d.head_cid WHERE d.did = :did"
)


def _row(url: str, did: str) -> tuple[bool, bytes | None, bytes | None]:
    engine = make_engine(url)
    with engine.connect() as connection:
        tombstoned, data, document = connection.execute(_ROW, {"did": did}).one()
    engine.dispose()
    return (
        bool(tombstoned),
        None if data is None else bytes(data),
        None if document is None else bytes(document),
    )


def _rendered(url: str, did: str) -> tuple[bool, bytes | None, bytes | None]:
    engine = make_engine(url)
    with engine.connect() as connection:
        head_cid, line = connection.execute(_HEAD_LINE, {"did": did}).one()
    engine.dispose()
    return head_state(did, head_cid, operation_json(bytes(line)))


def _execute(url: str, sql: str, **params: Any) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(sql), params)
    engine.dispose()


def _run(url: str, **options: Any) -> tuple[int, str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, highlight=False, soft_wrap=True)
    code = run_refresh(database_url=url, progress=False, console=console, **options)
    return code, buffer.getvalue()


def _old_style_document(document: bytes) -> bytes:
    """What version 1 stored for a DID whose verification method has a k256 prefix but does
    not parse: the suite context of a key it could not read."""
    shape = orjson.loads(document)
    shape["@context"].append("https://w3id.org/security/suites/secp256k1-2019/v1")
    return orjson.dumps(shape)


def _directory(client: TestClient) -> dict[str, str]:
    """Four DIDs: two current, one tombstoned, one with two ops."""
    dids: dict[str, str] = {}
    for seed in ("plain", "other", "gone", "moved"):
        did, genesis, keys = new_did(f"refresh-{seed}")
        assert client.post(f"/{did}", json=genesis).status_code == 200
        if seed == "gone":
            tomb = sign_operation(tombstone(cid_of(genesis)), keys[0])
            assert client.post(f"/{did}", json=tomb).status_code == 200
        if seed == "moved":
            later = update(genesis, keys[0], also_known_as=["at://later.example.com"])
            assert client.post(f"/{did}", json=later).status_code == 200
        dids[seed] = did
    return dids


def test_check_finds_old_bodies_and_changes_nothing_then_the_refresh_rewrites_them(
    client: TestClient, db_url: str
) -> None:
    dids = _directory(client)
    plain, moved = dids["plain"], dids["moved"]
    tombstoned, data, document = _row(db_url, plain)
    old_document = _old_style_document(document or b"")
    _execute(db_url, "UPDATE dids SET document = :d WHERE did = :did", d=old_document, did=plain)
    _execute(db_url, "UPDATE dids SET data = :d WHERE did = :did", d=b'{"old":1}', did=moved)
    _execute(db_url, "UPDATE store_meta SET value = 1")

    code, said = _run(db_url, check=True)
    assert code == EXIT_FOUND, said
    assert "4 DIDs checked, 2 differ" in said
    assert f"differs: {plain}" in said and f"differs: {moved}" in said
    assert "marks its bodies as version 1" in said
    assert _row(db_url, plain)[2] == old_document  # --check wrote nothing
    assert _row(db_url, moved)[1] == b'{"old":1}'
    assert client.get(f"/{plain}").content == old_document

    code, said = _run(db_url)
    assert code == EXIT_OK, said
    assert "2 differed: 2 rewritten, 0 changed meanwhile" in said
    assert f"version {DOCUMENTS_VERSION} (were 1)" in said
    for did in dids.values():
        assert _row(db_url, did) == _rendered(db_url, did)
    assert _row(db_url, plain) == (tombstoned, data, document)
    assert client.get(f"/{plain}").content == document
    assert client.get(f"/{moved}/data").json()["alsoKnownAs"] == ["at://later.example.com"]
    assert _row(db_url, dids["gone"]) == (True, None, None)
    engine = make_engine(db_url)
    assert stored_documents_version(engine) == DOCUMENTS_VERSION
    engine.dispose()

    code, said = _run(db_url, check=True)
    assert (code, "4 DIDs checked, 0 differ") == (EXIT_OK, said.strip())


def test_a_tombstone_flag_that_disagrees_with_the_head_is_rewritten(
    client: TestClient, db_url: str
) -> None:
    dids = _directory(client)
    _execute(db_url, "UPDATE dids SET tombstoned = :t WHERE did = :did", t=False, did=dids["gone"])
    code, said = _run(db_url, check=True)
    assert code == EXIT_FOUND and f"differs: {dids['gone']}" in said
    assert _run(db_url)[0] == EXIT_OK
    assert _row(db_url, dids["gone"]) == (True, None, None)
    assert client.get(f"/{dids['gone']}").status_code == 404


def test_a_head_that_moves_during_the_refresh_keeps_what_its_new_op_wrote(
    client: TestClient, db_url: str
) -> None:
    did, genesis, keys = new_did("refresh-race")
    assert client.post(f"/{did}", json=genesis).status_code == 200
    _execute(db_url, "UPDATE dids SET data = :d WHERE did = :did", d=b'{"old":1}', did=did)
    newer = update(genesis, keys[0], also_known_as=["at://newer.example.com"])
    engine = make_engine(db_url)
    begun: list[int] = []

    # The refresh reads its page, then opens the transaction that rewrites it: the new op
    # is committed through the server in between, from its own connection.
    @event.listens_for(engine, "begin", insert=True)
    def _between(_connection: Any) -> None:
        begun.append(1)
        if len(begun) == 2:
            assert client.post(f"/{did}", json=newer).status_code == 200

    try:
        _, page = refresh_page(engine, "", 100, rewrite=True)
    finally:
        engine.dispose()
    assert len(begun) == 2, "the refresh did not read and write in two transactions"
    assert (page.checked, page.stale, page.rewritten, page.moved) == (1, 1, 0, 1)
    assert _row(db_url, did) == _rendered(db_url, did)
    assert client.get(f"/{did}/data").json()["alsoKnownAs"] == ["at://newer.example.com"]


def test_a_missing_head_op_is_reported_left_alone_and_keeps_the_old_mark(
    client: TestClient, db_url: str
) -> None:
    dids = _directory(client)
    _execute(db_url, "UPDATE store_meta SET value = 1")
    head = _rendered(db_url, dids["other"])
    _execute(
        db_url,
        "UPDATE dids SET head_cid = :cid WHERE did = :did",
        cid="bafyreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        did=dids["other"],
    )
    code, said = _run(db_url)
    assert code == EXIT_FOUND, said
    assert "1 DIDs have a head op that is missing" in said
    assert f"unreadable: {dids['other']}" in said
    assert _row(db_url, dids["other"]) == head  # untouched
    engine = make_engine(db_url)
    assert stored_documents_version(engine) == 1  # not every body is known to be current
    engine.dispose()


def test_pages_cover_every_did_once(client: TestClient, db_url: str) -> None:
    dids = _directory(client)
    for did in dids.values():
        _execute(db_url, "UPDATE dids SET data = :d WHERE did = :did", d=b"{}", did=did)
    code, said = _run(db_url, page_size=1)
    assert code == EXIT_OK, said
    assert "4 DIDs checked, 4 differed: 4 rewritten" in said
    assert all(f"differs: {did}" in said for did in dids.values())
    assert all(_row(db_url, did) == _rendered(db_url, did) for did in dids.values())


def test_the_command_line_and_its_failures(client: TestClient, db_url: str, tmp_path: Path) -> None:
    _directory(client)
    runner = CliRunner()
    result = runner.invoke(app, ["refresh-documents", "--check", "--database-url", db_url])
    assert result.exit_code == EXIT_OK, result.output
    assert "4 DIDs checked, 0 differ" in result.output
    missing = f"sqlite:///{tmp_path / 'nowhere.sqlite3'}"
    code, said = _run(missing)
    assert code == EXIT_FAILED and "no database at" in said
    assert not (tmp_path / "nowhere.sqlite3").exists()


def test_a_rewrite_waits_for_a_writer_holding_the_log_head(pg_url: str, clock: Clock) -> None:
    """On PostgreSQL the rewrite takes the log head first, as a writer does: rows taken in
    DID order beside a batch taking them in arrival order could deadlock (review)."""
    with TestClient(create_app(make_settings(pg_url), clock=clock)) as pg_client:
        dids = _directory(pg_client)
    _execute(pg_url, "UPDATE dids SET data = :d WHERE did = :did", d=b"{}", did=dids["plain"])
    engine = make_engine(pg_url)
    writer = engine.connect()
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(refresh_page(engine, "", 100, rewrite=True))
    )
    try:
        writer.exec_driver_sql("BEGIN")
        writer.exec_driver_sql("SELECT tree_size FROM log_head WHERE id = 1 FOR UPDATE")
        thread.start()
        thread.join(0.5)
        waited = thread.is_alive()
    finally:
        writer.exec_driver_sql("COMMIT")  # released whatever happened: the schema is dropped
        writer.close()
    thread.join(10)
    engine.dispose()
    assert waited, "the rewrite did not wait for the log head"
    assert result and result[0][1].rewritten == 1
    assert _row(pg_url, dids["plain"]) == _rendered(pg_url, dids["plain"])
