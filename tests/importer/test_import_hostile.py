"""``plc import`` against sources that try to exhaust it: compressed pages decoded in bounded
steps (stacked or unknown codings refused), a page's whole answer bounded in time (its head
too), lines and pages bounded before they are parsed, stamps from the future refused, and
I/O errors said in one line. Real servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from plc.importer import sources
from plc.importer.cli import EXIT_FAILED, EXIT_REFUSED, run_import
from plc.importer.lines import MAX_FUTURE, BadLine, parse_import_line
from plc.timestamps import parse_timestamp

from ..conftest import REPO, LiveServer
from ..helpers import VALID_LOGS, dripping_head, load_log
from .test_import import sequenced_lines, write

LINES = sequenced_lines(load_log(VALID_LOGS[0]))


def _directory(
    body: bytes, encoding: str | None = None, seen: list[str] | None = None
) -> Starlette:
    """A directory whose every /export page is ``body`` (sent with ``encoding``) until
    ``after`` has passed every line of :data:`LINES`; it notes the Accept-Encoding asked."""

    async def export(request: Request) -> Response:
        if seen is not None:
            seen.append(request.headers.get("accept-encoding", ""))
        if int(request.query_params["after"]) >= len(LINES):
            return Response(b"")
        headers = {"content-encoding": encoding} if encoding else {}
        return Response(body, headers=headers, media_type="application/jsonl")

    return Starlette(routes=[Route("/export", export)])


PAGE = b"".join(line + b"\n" for line in LINES)


def test_a_gzip_page_is_read_and_only_codings_it_can_bound_are_asked_for(
    sqlite_url: str,
) -> None:
    seen: list[str] = []
    with LiveServer(_directory(gzip.compress(PAGE), "gzip", seen)) as server:  # type: ignore[arg-type]
        code = run_import(server.url, database_url=sqlite_url, interval_s=0, progress=False)
    assert code == 0
    assert seen and set(seen) == {"gzip, deflate"}  # not zstd or br, which httpx decodes whole


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (gzip.compress(gzip.compress(PAGE)), "gzip, gzip"),  # 13 kB of these took 5.6 GB
        (b"(\xb5/\xfd" + bytes(20), "zstd"),  # 32 kB of zstd took 2.2 GB
        (b"anything", "br"),
    ],
    ids=["stacked-gzip", "zstd", "brotli"],
)
def test_a_page_in_a_coding_not_asked_for_is_refused(body: bytes, encoding: str) -> None:
    with LiveServer(_directory(body, encoding)) as server:  # type: ignore[arg-type]
        pages = sources.ExportPages(server.url, interval_s=0, retries=0)
        with pytest.raises(sources.SourceError, match="unsupported content-encoding"):
            list(pages)
        pages.close()


def test_a_compressed_page_is_capped_as_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_PAGE_BYTES", 1 << 20)
    bomb = gzip.compress(b"\n" * (200 << 20), compresslevel=9)  # 200 MiB from about 200 kB
    with LiveServer(_directory(bomb, "gzip")) as server:  # type: ignore[arg-type]
        pages = sources.ExportPages(server.url, interval_s=0, retries=0)
        with pytest.raises(sources.SourceError, match=f"a page of over {1 << 20} bytes"):
            list(pages)
        pages.close()


def test_a_head_that_drips_in_is_bounded_by_the_page_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # each byte comes well within the read timeout: only the whole-answer deadline stops it
    monkeypatch.setattr(sources, "PAGE_TIMEOUT_S", 1.0)
    with dripping_head(seconds=15) as url:
        pages = sources.ExportPages(url, interval_s=0, retries=0)
        started = time.monotonic()
        with pytest.raises(sources.SourceError, match="took over 1 s; gave up"):
            list(pages)
        assert time.monotonic() - started < 10
        pages.close()


def test_a_line_too_long_is_refused_unparsed_and_a_page_of_too_many_lines_stops() -> None:
    huge = b"[" + b"[]," * 400_000 + b"[]]"  # 1.2 MB of JSON: 60 MB of it took 3.5 GB
    body = LINES[0] + b"\n" + huge + b"\n" + b"".join(line + b"\n" for line in LINES[1:])
    with LiveServer(_directory(body)) as server:  # type: ignore[arg-type]
        pages = sources.ExportPages(server.url, interval_s=0, retries=0)
        read = list(pages)
        pages.close()
    assert [line.error for line in read] == [
        None,
        f"line longer than {sources.MAX_FILE_LINE_BYTES} bytes",
        *[None] * (len(LINES) - 1),
    ]
    assert read[1].line == huge[:200] and read[1].where == "a line after seq 1"
    many = b"1\n" * 1001
    with LiveServer(_directory(many)) as server:  # type: ignore[arg-type]
        pages = sources.ExportPages(server.url, count=10, interval_s=0, retries=0)
        with pytest.raises(sources.SourceError, match="a page of more than 1000 lines"):
            list(pages)
        pages.close()


def test_a_stamp_from_the_future_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    line = orjson.loads(LINES[0])
    now = parse_timestamp("2026-12-01T00:00:00.000Z")
    line["createdAt"] = "2026-12-01T00:10:00.001Z"
    with pytest.raises(BadLine, match="createdAt is in the future"):
        parse_import_line(orjson.dumps(line), now + MAX_FUTURE)
    line["createdAt"] = "2026-12-01T00:10:00.000Z"  # within the clocks' skew
    assert parse_import_line(orjson.dumps(line), now + MAX_FUTURE).cid == line["cid"]
    # through the command, on the system clock: a genesis dated in the year 9999 (it made
    # the rules overflow, and a POST to the DID answer 500 afterwards)
    dated = [orjson.loads(raw) for raw in LINES]
    for entry in dated:
        entry["createdAt"] = "9999-12-31T23:59:59.999Z"
    source = write(tmp_path / "future.jsonl", [orjson.dumps(entry) for entry in dated])
    rejects = tmp_path / "rejects.jsonl"
    code = run_import(str(source), database_url=sqlite_url, rejects=rejects, progress=False)
    assert code == EXIT_REFUSED
    refused = [orjson.loads(raw) for raw in rejects.read_bytes().splitlines()]
    assert refused[0]["message"] == "createdAt is in the future: 9999-12-31T23:59:59.999Z"


def test_io_errors_are_said_in_one_line(sqlite_url: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "plc.cli", "import", "-", "--database-url", sqlite_url]
    closed = subprocess.run(  # standard input closed (<&-): sys.stdin is None
        command, capture_output=True, cwd=REPO, timeout=120, preexec_fn=lambda: os.close(0)
    )
    assert closed.returncode == EXIT_FAILED, closed.stderr
    assert closed.stderr.decode().strip() == "error: cannot read -: there is no standard input"
    garbage = write(tmp_path / "garbage.jsonl", [b"garbage %d" % i for i in range(2000)])
    full = subprocess.run(  # every line refused into a rejects file on a full disk
        [*command[:4], str(garbage), *command[5:], "--rejects", "/dev/full"],
        capture_output=True,
        cwd=REPO,
        timeout=120,
    )
    said = full.stderr.decode()
    assert full.returncode == EXIT_FAILED, said
    assert "Traceback" not in said
    assert "error: No space left on device" in said or "cannot write the rejects file" in said
    assert " lines: 0 imported, 0 already present, " in said  # the summary says what was done


def test_a_redirect_is_followed_without_its_body_being_read(sqlite_url: str) -> None:
    # httpx read (and decoded, zstd too) a redirect's whole body before following it
    async def moved(request: Request) -> Response:
        headers = {"location": f"/real/export?{request.url.query}", "content-encoding": "zstd"}
        return Response(b"(\xb5/\xfd" + bytes(64), status_code=302, headers=headers)

    inner = _directory(PAGE)
    app = Starlette(routes=[Route("/export", moved), Mount("/real", app=inner)])
    with LiveServer(app) as server:  # type: ignore[arg-type]
        code = run_import(server.url, database_url=sqlite_url, interval_s=0, progress=False)
    assert code == 0
