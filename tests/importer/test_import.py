"""``plc import``: the interop histories, bad lines, re-runs, and a mirror of a live directory
(issue 2: "Storage", legacy genesis loaded through the store; design.md "Independent auditors
and mirrors"). Runs on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount, Route

from plc.api.app import create_app
from plc.exportline import build_line
from plc.importer import sources
from plc.importer.cli import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, run_import
from plc.importer.importer import Importer
from plc.importer.sources import MAX_FILE_LINE_BYTES, SourceLine
from plc.operation import parse_operation
from plc.policy import PolicySettings
from plc.service import Directory
from plc.signing import cid_of
from plc.store.engine import make_engine
from plc.store.migrate import upgrade
from plc.store.sql import SqlStore
from plc.store.tlog_store import TlogStore
from plc.timestamps import parse_timestamp
from plc.tlog.hashing import leaf_hash
from plc.tlog.memory import MemoryHashStore
from plc.tlog.tree import root_hash

from ..conftest import REPO, LiveServer, make_settings
from ..helpers import INVALID_AT, INVALID_LOGS, VALID_LOGS, load_log, new_did, update


def legacy_line(entry: dict[str, Any]) -> bytes:
    """An audit-log entry as a legacy export line (the vectors' own form)."""
    return orjson.dumps(
        {k: entry[k] for k in ("did", "operation", "cid", "nullified", "createdAt")}
    )


def sequenced_lines(entries: list[dict[str, Any]]) -> list[bytes]:
    """Audit-log entries as ``sequenced_op`` lines numbered from 1."""
    return [
        build_line(
            e["did"], e["cid"], i, e["createdAt"], parse_operation(e["operation"]).canonical_json()
        )
        for i, e in enumerate(entries, 1)
    ]


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def audit_view(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["did"], e["cid"], e["nullified"], e["createdAt"], e["operation"]) for e in entries]


def rejects_of(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def stored_root(db_url: str) -> tuple[int, bytes]:
    """The tree size and root hash of the transparency log stored in ``db_url``."""
    engine = make_engine(db_url)
    store = SqlStore(engine)
    try:
        size = store.tree_size()
        return size, root_hash(size, TlogStore(store).reader)
    finally:
        store.close()
        engine.dispose()


def test_every_valid_history_is_imported_and_served_as_the_vectors_give_it(
    db_url: str, app_factory: Any, tmp_path: Path
) -> None:
    logs = [load_log(path) for path in VALID_LOGS]
    source = write(tmp_path / "export.jsonl", [legacy_line(e) for log in logs for e in log])
    rejects = tmp_path / "rejects.jsonl"
    code = run_import(str(source), database_url=db_url, rejects=rejects, progress=False)
    assert code == EXIT_OK
    assert rejects.read_bytes() == b""
    with TestClient(app_factory()) as client:
        for log in logs:
            did = log[0]["did"]
            # nullified is derived by replaying the rules, not copied from the lines
            assert audit_view(client.get(f"/{did}/log/audit").json()) == audit_view(log)
        exported = client.get("/export", params={"after": 0}).content.splitlines()
    everything = [e for log in logs for e in log]
    assert [orjson.loads(line)["cid"] for line in exported] == [e["cid"] for e in everything]
    tree = MemoryHashStore()
    tree.append([leaf_hash(line) for line in exported])
    assert stored_root(db_url) == (len(exported), tree.root_hash())


def test_importing_again_finds_everything_present_and_changes_nothing(
    db_url: str, tmp_path: Path
) -> None:
    # log_nullification holds a nullified op: present too, not "was nullified"
    logs = [load_log(path) for path in VALID_LOGS]
    source = write(tmp_path / "export.jsonl", sequenced_lines([e for log in logs for e in log]))
    assert run_import(str(source), database_url=db_url, progress=False) == EXIT_OK
    before = stored_root(db_url)
    rejects = tmp_path / "rejects.jsonl"
    assert run_import(str(source), database_url=db_url, rejects=rejects, progress=False) == 0
    assert rejects.read_bytes() == b""
    assert stored_root(db_url) == before


@pytest.mark.parametrize("path", INVALID_LOGS, ids=lambda p: p.name)
def test_an_invalid_history_is_refused_at_its_bad_op(
    path: Path, sqlite_url: str, tmp_path: Path
) -> None:
    log = load_log(path)
    bad = INVALID_AT[path.name]
    source = write(tmp_path / "export.jsonl", [legacy_line(e) for e in log])
    rejects = tmp_path / "rejects.jsonl"
    code = run_import(str(source), database_url=sqlite_url, rejects=rejects, progress=False)
    assert code == EXIT_REFUSED
    first = rejects_of(rejects)[0]
    assert first["where"] == f"line {bad + 1}"
    assert first["did"] == log[bad]["did"] and first["message"]
    assert first["cid"] == log[bad]["cid"]  # each of these ops parses: its CID is known
    assert orjson.loads(first["line"])["cid"] == log[bad]["cid"]
    engine = make_engine(sqlite_url)
    store = SqlStore(engine)
    try:
        cids = [row.cid for row in store.audit_rows(log[0]["did"])]
    finally:
        store.close()
        engine.dispose()
    assert cids[:bad] == [e["cid"] for e in log[:bad]]
    assert log[bad]["cid"] not in cids


def test_lines_that_are_not_export_lines_are_refused_with_a_reason(
    sqlite_url: str, tmp_path: Path
) -> None:
    log = load_log(next(p for p in VALID_LOGS if "nullification" in p.name))
    good = legacy_line(log[0])
    value = orjson.loads(good)
    bad = {
        b"not json": "not JSON",
        b"[1, 2]": "not a JSON object",
        orjson.dumps({**value, "did": 5}): "did is missing",
        orjson.dumps({**value, "operation": "x"}): "operation is missing",
        orjson.dumps({**value, "createdAt": "2023-01-01"}): "createdAt is not",
        orjson.dumps({**value, "seq": -1}): "seq is not",
        orjson.dumps({**value, "seq": True}): "seq is not",
        orjson.dumps({**value, "type": "other"}): "type is not",
        orjson.dumps({**value, "cid": 7}): "cid is not",
        orjson.dumps({**value, "cid": log[1]["cid"]}): "the line claims cid",
        orjson.dumps({**value, "did": "did:plc:" + "a" * 24}): "",
    }
    source = write(tmp_path / "export.jsonl", [*bad, b"", b"   ", good])
    rejects = tmp_path / "rejects.jsonl"
    code = run_import(str(source), database_url=sqlite_url, rejects=rejects, progress=False)
    assert code == EXIT_REFUSED
    found = rejects_of(rejects)
    assert [r["where"] for r in found] == [f"line {i}" for i in range(1, len(bad) + 1)]
    for record, expected in zip(found, bad.values(), strict=True):
        assert expected in record["message"]
    assert stored_root(sqlite_url)[0] == 1  # blank lines skipped, the good line imported


def test_audit_logs_are_imported_as_json_arrays_as_shipped(
    db_url: str, app_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The interop files are pretty-printed JSON arrays of audit-log entries (the shape of
    ``GET /{did}/log/audit``): read as they are, one entry per op; a compact array too."""
    logs = [load_log(path) for path in VALID_LOGS]
    for path in VALID_LOGS[:-1]:
        assert run_import(str(path), database_url=db_url, progress=False) == EXIT_OK
    compact = tmp_path / "audit.json"
    compact.write_bytes(b"\n  " + orjson.dumps(logs[-1]) + b"\n")
    assert run_import(str(compact), database_url=db_url, progress=False) == EXIT_OK
    assert f"{len(logs[-1])} imported" in capsys.readouterr().err
    with TestClient(app_factory()) as client:
        for log in logs:
            served = client.get(f"/{log[0]['did']}/log/audit").json()
            assert audit_view(served) == audit_view(log)


@pytest.mark.parametrize("path", INVALID_LOGS[:2], ids=lambda p: p.name)
def test_an_invalid_audit_log_array_is_refused_at_its_bad_entry(
    path: Path, sqlite_url: str, tmp_path: Path
) -> None:
    log = load_log(path)
    bad = INVALID_AT[path.name]
    rejects = tmp_path / "rejects.jsonl"
    code = run_import(str(path), database_url=sqlite_url, rejects=rejects, progress=False)
    assert code == EXIT_REFUSED
    first = rejects_of(rejects)[0]
    assert first["where"] == f"entry {bad + 1}" and first["cid"] == log[bad]["cid"]
    assert stored_root(sqlite_url)[0] == bad


def test_a_json_array_file_that_cannot_be_read_is_refused_with_a_reason(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = load_log(VALID_LOGS[0])
    # One value orjson refuses (a lone surrogate, an integer past 64 bits) refuses only its
    # entry, as its line of a JSON-lines file would be; the next entry is still read.
    one_bad = (
        b'[{"did": "\\ud800"}, {"n": 123456789012345678901234567890}, ' + legacy_line(log[0]) + b"]"
    )
    cases = {
        one_bad: ["entry 1", "cannot be read", "entry 2", "cannot be read"],
        b"[1, {}]": ["entry 1", "not a JSON object", "entry 2", "did is missing"],
        b"\n[" + legacy_line(log[0]) + b",": ["line 2", "not a JSON array"],
    }
    for number, (content, expected) in enumerate(cases.items()):
        source = tmp_path / f"bad{number}.json"
        source.write_bytes(content)
        rejects = tmp_path / f"rejects{number}.jsonl"
        code = run_import(str(source), database_url=sqlite_url, rejects=rejects, progress=False)
        assert code == EXIT_REFUSED
        found = [v for r in rejects_of(rejects) for v in (r["where"], r["message"])]
        assert len(found) == len(expected)
        for value, part in zip(found, expected, strict=True):
            assert part in value
    assert stored_root(sqlite_url)[0] == 1  # the good entry after the two bad ones
    monkeypatch.setattr(sources, "MAX_ARRAY_FILE_BYTES", 1000)
    source = tmp_path / "big.json"
    source.write_bytes(orjson.dumps(log))
    rejects = tmp_path / "rejects-big.jsonl"
    code = run_import(str(source), database_url=sqlite_url, rejects=rejects, progress=False)
    assert code == EXIT_REFUSED
    [record] = rejects_of(rejects)
    assert "over 1000 bytes" in record["message"] and len(record["line"]) <= 200
    assert stored_root(sqlite_url)[0] == 1


@pytest.mark.postgres
def test_a_directory_is_mirrored_byte_for_byte_and_to_the_same_root(
    sqlite_url: str, pg_url: str, tmp_path: Path
) -> None:
    """The source is a live server of ours on SQLite; the mirror is on PostgreSQL. The
    mirror's first run read a file of the first 10 lines; the second resumes after seq 10 and
    reads the rest in pages of 5."""
    logs = [load_log(path) for path in VALID_LOGS]
    lines = sequenced_lines([e for log in logs for e in log])
    assert run_import(str(write(tmp_path / "all.jsonl", lines)), database_url=sqlite_url) == 0
    head = write(tmp_path / "head.jsonl", lines[:10])
    assert run_import(str(head), database_url=pg_url, progress=False) == EXIT_OK
    with LiveServer(create_app(make_settings(sqlite_url))) as server:
        rest = run_import(
            server.url, database_url=pg_url, after=10, count=5, interval_s=0, progress=False
        )
        assert export_of(server.url) == lines
    assert rest == EXIT_OK
    assert stored_root(pg_url) == stored_root(sqlite_url)
    with LiveServer(create_app(make_settings(pg_url))) as mirror:
        assert export_of(mirror.url) == lines


def export_of(url: str) -> list[bytes]:
    return httpx.get(f"{url}/export", params={"after": 0}).content.splitlines()


def flaky_directory(lines: list[bytes], failures: int, status: int = 503) -> Starlette:
    """A directory whose /export answers ``status`` ``failures`` times, then pages of
    ``lines`` by seq (lines without one are always served, as an old server reading
    ``after=0`` as a timestamp does); other paths 404."""
    calls = {"n": 0}

    async def export(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] <= failures:
            return Response(b"busy", status_code=status)
        after, count = int(request.query_params["after"]), int(request.query_params["count"])
        page = [line for line in lines if orjson.loads(line).get("seq", after + 1) > after]
        page = page[:count]
        return Response(b"".join(line + b"\n" for line in page), media_type="application/jsonl")

    return Starlette(routes=[Route("/export", export)])


def test_a_busy_directory_is_retried(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    lines = sequenced_lines(load_log(VALID_LOGS[0]))
    with LiveServer(flaky_directory(lines, failures=1)) as server:  # type: ignore[arg-type]
        code = run_import(server.url, database_url=sqlite_url, interval_s=0, progress=False)
    assert code == EXIT_OK
    assert stored_root(sqlite_url)[0] == len(lines)
    # each retry is said, with why and when (an unreachable source was silent for a minute)
    said = capsys.readouterr().err
    assert f"{server.url}/export?after=0: HTTP 503: retrying in 1 s (6 more tries)" in said


@pytest.mark.parametrize(
    "serve, message",
    [
        (lambda lines: flaky_directory(lines, failures=1, status=404), "HTTP 404"),
        (
            lambda _: flaky_directory([legacy_line(e) for e in load_log(VALID_LOGS[0])], 0),
            "does not serve seq-mode export pages",
        ),
    ],
    ids=["not-found", "no-seq-mode"],
)
def test_a_directory_that_cannot_be_mirrored_stops_the_import(
    sqlite_url: str, serve: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = sequenced_lines(load_log(VALID_LOGS[0]))
    with LiveServer(serve(lines)) as server:
        code = run_import(server.url, database_url=sqlite_url, interval_s=0, progress=False)
    assert code == EXIT_FAILED
    assert message in capsys.readouterr().err
    with LiveServer(serve(lines)) as server:
        code = run_import(f"{server.url}/export", database_url=sqlite_url, interval_s=0)
    assert code == EXIT_FAILED
    assert "HTTP 404 (give the directory's base URL, without /export)" in (capsys.readouterr().err)


def test_a_missing_file_or_a_bad_database_url_stops_the_import(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_import(str(tmp_path / "nowhere.jsonl"), database_url=sqlite_url) == EXIT_FAILED
    said = capsys.readouterr().err
    assert "cannot read" in said
    assert "0 lines" not in said and "resume" not in said  # nothing was read: no summary
    assert run_import("127.0.0.1:2582", database_url=sqlite_url) == EXIT_FAILED
    assert "(a directory URL starts with http:// or https://)" in capsys.readouterr().err
    source = write(tmp_path / "x.jsonl", [])
    assert run_import(str(source), database_url="mysql://x") == EXIT_FAILED
    assert "--database-url (DATABASE_URL) has an unsupported scheme mysql" in (
        capsys.readouterr().err
    )


def test_the_command_reads_stdin_and_exits_3_when_it_refused_lines(
    sqlite_url: str, tmp_path: Path
) -> None:
    log = load_log(VALID_LOGS[0])
    stdin = b"".join(line + b"\n" for line in [*sequenced_lines(log), b"garbage"])
    command = [sys.executable, "-m", "plc.cli", "import", "-", "--database-url", sqlite_url]
    done = subprocess.run(command, input=stdin, capture_output=True, cwd=REPO, timeout=120)
    assert done.returncode == EXIT_REFUSED, done.stderr
    assert b"refused line" in done.stderr and f"{len(log)} imported".encode() in done.stderr
    usage = subprocess.run([*command, "--batch-size", "0"], capture_output=True, cwd=REPO)
    assert usage.returncode == 1


def test_a_long_history_is_read_once_not_once_per_op(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DID's ops follow each other: its history is kept between them (re-reading and
    re-parsing it for each op made a DID of 4,000 ops take two minutes)."""
    did, genesis, keys = new_did("long")
    ops = [genesis]
    for i in range(60):
        ops.append(update(ops[-1], keys[0], also_known_as=[f"at://long{i}.test"]))
    entries = [
        {
            "did": did,
            "operation": op,
            "cid": cid_of(op),
            "createdAt": f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
        }
        for i, op in enumerate(ops)
    ]
    source = write(tmp_path / "long.jsonl", sequenced_lines(entries))
    asked: list[str] = []
    original = SqlStore.audit_rows_of

    def counted(self: SqlStore, dids: list[str]) -> dict[str, Any]:
        asked.extend(dids)
        return original(self, dids)

    monkeypatch.setattr(SqlStore, "audit_rows_of", counted)
    assert run_import(str(source), database_url=sqlite_url, progress=False) == EXIT_OK
    assert asked == [did]
    assert stored_root(sqlite_url)[0] == len(ops)


def test_an_oversized_file_line_is_refused_without_being_held(
    sqlite_url: str, tmp_path: Path
) -> None:
    log = load_log(VALID_LOGS[0])
    huge = b'{"did":"' + b"x" * (MAX_FILE_LINE_BYTES * 2) + b'"}'
    source = write(tmp_path / "huge.jsonl", [huge, *sequenced_lines(log)])
    rejects = tmp_path / "rejects.jsonl"
    code = run_import(str(source), database_url=sqlite_url, rejects=rejects, progress=False)
    assert code == EXIT_REFUSED
    [record] = rejects_of(rejects)
    assert record["where"] == "line 1" and "longer than" in record["message"]
    assert len(record["line"]) <= 200
    assert stored_root(sqlite_url)[0] == len(log)  # the lines after it were read whole


def test_a_hostile_line_cannot_drive_the_terminal(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = b'{"did":"did:plc:\\u001b[31mRED\\u001b]0;title\\u0007","operation":{},"createdAt":"x"}'
    source = write(tmp_path / "evil.jsonl", [line])
    assert run_import(str(source), database_url=sqlite_url, progress=False) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err


def test_page_trouble_is_retried_or_reported(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = sequenced_lines(load_log(VALID_LOGS[0]))

    async def moved(request: Request) -> Response:
        return Response(status_code=301, headers={"location": f"/v2/export?{request.url.query}"})

    async def trickle(request: Request) -> StreamingResponse:
        async def body() -> Any:
            for _ in range(20):
                yield b" "
                await asyncio.sleep(0.1)

        return StreamingResponse(body())

    inner = flaky_directory(lines, failures=0)
    app = Starlette(
        routes=[
            Route("/export", moved),
            Mount("/v2", app=inner),
            Route("/slow/export", trickle),
        ]
    )
    with LiveServer(app) as server:  # type: ignore[arg-type]
        # a redirect is followed
        assert run_import(server.url, database_url=sqlite_url, interval_s=0, progress=False) == 0
        # a page that trickles in past its deadline is retried, then given up
        monkeypatch.setattr(sources, "PAGE_TIMEOUT_S", 0.3)
        pages = sources.ExportPages(f"{server.url}/slow", interval_s=0, retries=0)
        with pytest.raises(sources.SourceError, match="took over"):
            list(pages)
        pages.close()
    assert stored_root(sqlite_url)[0] == len(lines)


def test_resume_hints_and_refused_options(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = sequenced_lines(load_log(VALID_LOGS[0]))
    with LiveServer(flaky_directory(lines, failures=0)) as server:  # type: ignore[arg-type]
        after = len(lines) + 100
        code = run_import(
            server.url, database_url=sqlite_url, after=after, interval_s=0, progress=False
        )
    assert code == EXIT_OK
    assert f"resume with --after {after}" in capsys.readouterr().err  # not "--after 0"
    source = write(tmp_path / "x.jsonl", lines)
    assert run_import(str(source), database_url=sqlite_url, after=5) == EXIT_FAILED
    assert "--after applies to a directory URL" in capsys.readouterr().err
    nowhere = tmp_path / "no" / "such" / "dir" / "r.jsonl"
    assert run_import(str(source), database_url=sqlite_url, rejects=nowhere) == EXIT_FAILED
    assert "cannot write" in capsys.readouterr().err
    assert run_import("http://[::1", database_url=sqlite_url, interval_s=0) == EXIT_FAILED
    assert "error:" in capsys.readouterr().err


def test_retry_after_is_read_in_seconds_and_capped() -> None:
    def answer(status: int, value: str | None) -> float | None:
        headers = {} if value is None else {"retry-after": value}
        return sources._retry_after(httpx.Response(status, headers=headers))

    assert answer(429, "7") == 7.0
    assert answer(503, "100000") == sources.MAX_RETRY_AFTER_S
    assert answer(429, "Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert answer(500, "7") is None and answer(429, None) is None


def test_a_did_with_a_nul_is_refused_before_any_query(db_url: str, tmp_path: Path) -> None:
    """PostgreSQL refuses NUL in text: the line must be refused, not crash the batch."""
    log = load_log(VALID_LOGS[0])
    value = orjson.loads(legacy_line(log[0]))
    bad = orjson.dumps({**value, "did": "did:plc:\u0000x"})
    source = write(tmp_path / "nul.jsonl", [bad, *sequenced_lines(log)])
    rejects = tmp_path / "rejects.jsonl"
    code = run_import(str(source), database_url=db_url, rejects=rejects, progress=False)
    assert code == EXIT_REFUSED
    assert [r["message"] for r in rejects_of(rejects)] == ["did holds a NUL character"]
    assert stored_root(db_url)[0] == len(log)


def test_an_op_another_writer_added_meanwhile_is_no_reason_to_refuse_the_next(
    sqlite_url: str,
) -> None:
    """The importer keeps a DID's history between batches; when a server accepts an op of
    that DID meanwhile, the source's next op (which follows it) is checked again against the
    database, not refused against the kept history."""
    did, genesis, keys = new_did("meanwhile")
    second = update(genesis, keys[0], also_known_as=["at://second.test"])
    third = update(second, keys[0], also_known_as=["at://third.test"])
    times = ["2025-01-01T00:00:00.000Z", "2025-01-01T00:00:01.000Z", "2025-01-01T00:00:02.000Z"]
    entries = [
        {"did": did, "operation": op, "cid": cid_of(op), "createdAt": at}
        for op, at in zip((genesis, second, third), times, strict=True)
    ]
    lines = sequenced_lines(entries)
    engine = make_engine(sqlite_url)
    upgrade(engine)
    store = SqlStore(engine)
    store.leaf_hooks.append(TlogStore(store).append_in)
    directory = Directory(store, PolicySettings(), inline_io=True)
    refused: list[Any] = []
    importer = Importer(directory, on_refused=refused.append)
    try:
        importer.add(SourceLine("line 1", lines[0], 1))
        importer.flush()
        directory.import_op(did, second, parse_timestamp(times[1]))  # the other writer
        importer.add(SourceLine("line 3", lines[2], 3))
        importer.flush()
    finally:
        store.close()
        engine.dispose()
    assert refused == []
    assert importer.stats.imported == 2
    assert stored_root(sqlite_url)[0] == 3


def test_a_file_that_cannot_be_read_creates_no_database(tmp_path: Path) -> None:
    database = tmp_path / "never.sqlite3"
    out = io.StringIO()
    code = run_import(
        str(tmp_path / "no-such-export.jsonl"),
        database_url=f"sqlite:///{database}",
        progress=False,
        console=Console(file=out, width=200),
    )
    assert code == EXIT_FAILED
    assert "cannot read" in out.getvalue() and "No such file" in out.getvalue()
    assert not database.exists()  # it was created and migrated before the source was read


def test_a_retry_after_of_other_digits_is_no_number() -> None:
    # "²" is a digit to str.isdigit(); float() refused it and stopped the import
    answer = httpx.Response(429, headers=[(b"retry-after", b"\xb2")])
    assert sources._retry_after(answer) is None
