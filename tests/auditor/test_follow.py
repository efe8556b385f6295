"""``sync --follow``: catching up with ``/export`` pages, then following ``/export/stream``."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from auditor import follow
from auditor.findings import Finding

from ..helpers import new_did
from .conftest import Audit, assert_evidence, line_for, serve
from .corpus import Corpus
from .fakedir import FakeLog, grow_later


def test_follow_reads_new_ops_from_the_stream_and_drops_redeliveries(
    corpus: Corpus, sync: Audit, tmp_path: object
) -> None:
    log = FakeLog(list(corpus.lines[:1200]), corpus.signer, stream_redeliver=3)
    keys = (corpus.signer.verifier,)
    with serve(log) as url:
        grower = grow_later(log, list(corpus.lines[1200:]), lambda: time.sleep(0.8))
        findings = sync(url, follow=True, follow_seconds=3.0, verifiers=keys)
        grower.join()
    assert findings == []
    from auditor import state

    conn = state.connect(tmp_path / "state.sqlite3", create=False)  # type: ignore[operator]
    assert state.get_meta_int(conn, "cursor_seq") == len(corpus.lines)
    assert state.get_meta_int(conn, "tree_size") == len(corpus.lines)  # no redelivered leaf
    statuses = [r[0] for r in conn.execute("SELECT status FROM checkpoints")]
    assert statuses and set(statuses) == {"matched"}


def test_outdated_cursor_falls_back_to_export_pages(corpus: Corpus, sync: Audit) -> None:
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer, stream_close_reason="OutdatedCursor")
    with serve(log) as url:
        grower = grow_later(log, list(corpus.lines[1000:]), lambda: time.sleep(0.3))
        findings = sync(url, follow=True, follow_seconds=2.0, verifiers=(corpus.signer.verifier,))
        grower.join()
    assert findings == []


def test_directory_without_tlog_is_audited_without_log_checks(corpus: Corpus, sync: Audit) -> None:
    lines = list(corpus.lines)
    dids = [x.split(b'"did":"')[1][:32] for x in lines]
    k = next(i for i in range(100, len(lines)) if dids.count(dids[i]) == 1)
    del lines[k]  # plc.directory's seq may skip
    log = FakeLog(lines, signer=None)
    with serve(log) as url:
        findings = sync(url, allow_seq_gaps=True, spot_checks=3)
    assert [(f.cls, f.severity) for f in findings] == [("seq-gap", "info")]


def _follow_while(
    log: FakeLog, change: Callable[[], None], sync: Audit, corpus: Corpus, seconds: float
) -> list[Finding]:
    """``sync --follow`` of ``log`` for ``seconds`` while ``change`` runs beside it, with the
    retry pauses (at most 0.1 s) and the log checks (every 0.2 s) shortened: module settings,
    not network mocks."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(follow, "RETRY_MAX_S", 0.1)
        patch.setattr(follow, "TICK_EVERY_S", 0.2)
        with serve(log) as url:
            thread = threading.Thread(target=change, daemon=True)
            thread.start()
            findings = sync(
                url, follow=True, follow_seconds=seconds, verifiers=(corpus.signer.verifier,)
            )
            thread.join()
    return findings


def test_follow_outlives_a_stream_that_is_down_for_many_retries(
    corpus: Corpus, sync: Audit, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory restarting (its stream answering 503) for longer than a few retries: the
    monitor keeps retrying, says so each time, and reads what came meanwhile once it is
    back. The pauses are shortened (their cap is the module's setting) to keep this fast."""
    log = FakeLog(list(corpus.lines[:1200]), corpus.signer, stream_status=503)

    def come_back() -> None:
        # after more failed attempts than the monitor would tolerate of a future cursor
        # (counted, not timed: on a loaded machine each attempt takes longer)
        deadline = time.monotonic() + 30
        while log.stream_denials <= follow.MAX_FUTURE_CURSOR + 2:
            assert time.monotonic() < deadline, "the monitor stopped retrying"
            time.sleep(0.02)
        log.lines.extend(corpus.lines[1200:])
        log.changed()
        log.stream_status = None

    assert _follow_while(log, come_back, sync, corpus, 8.0) == []
    err = capsys.readouterr().err
    retries = [x for x in err.splitlines() if "/export/stream: cannot connect" in x]
    assert len(retries) > follow.MAX_FUTURE_CURSOR + 1, err
    assert "retrying in" in retries[0] and "connected again" in err
    from auditor import state

    conn = state.connect(tmp_path / "state.sqlite3", create=False)  # type: ignore[operator]
    assert state.get_meta_int(conn, "cursor_seq") == len(corpus.lines)


def test_follow_outlives_log_checks_that_fail_while_the_directory_restarts(
    corpus: Corpus, sync: Audit, capsys: pytest.CaptureFixture[str]
) -> None:
    """The periodic checkpoint check runs between stream messages: a 502 from it during a
    restart is retried like the stream's own failures, not the end of the monitor."""
    log = FakeLog(list(corpus.lines[:1200]), corpus.signer)

    def restart() -> None:
        time.sleep(1.0)
        log.checkpoint_status = 502
        time.sleep(4.0)  # longer than the client's own retries of one request (about 3 s)
        log.checkpoint_status = None
        log.lines.extend(corpus.lines[1200:])
        log.changed()

    assert _follow_while(log, restart, sync, corpus, 7.0) == []
    err = capsys.readouterr().err
    assert "/tlog/checkpoint answered 502; retrying in" in err, err
    assert "connected again" in err


def test_a_backdated_op_on_the_stream_is_found_against_a_mark_set_before(
    corpus: Corpus, sync: Audit, tmp_path: Path
) -> None:
    """The createdAt high-water mark of the lines read from /export carries over to the
    stream: a new DID's genesis stamped as early as the log's first op, sequenced last."""
    log = FakeLog(list(corpus.lines), corpus.signer)
    first = orjson.loads(corpus.lines[0])["createdAt"]
    did, genesis, _ = new_did("backdated-on-the-stream")
    seq = len(corpus.lines) + 1
    backdated = line_for(did, genesis, seq, first)

    def append_once_caught_up() -> None:
        # counted, not timed: once the state holds every line read from /export
        deadline = time.monotonic() + 30
        while _cursor(tmp_path / "state.sqlite3") < len(corpus.lines):
            assert time.monotonic() < deadline, "the catch-up did not finish"
            time.sleep(0.02)
        log.lines.append(backdated)
        log.changed()

    findings = _follow_while(log, append_once_caught_up, sync, corpus, 4.0)
    assert [(f.cls, f.seq) for f in findings] == [("backdated-op", seq)]
    high = max(corpus.lines, key=lambda line: orjson.loads(line)["createdAt"])
    assert findings[0].evidence["high_water_line"] == high.decode()
    assert_evidence(findings, "backdated-op")


def _cursor(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'cursor_seq'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return 0 if row is None else int(row[0])
