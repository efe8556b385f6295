"""``sync --follow`` against streams that differ from ``/export``: messages with another key
order (the reference server's), with other content, a ``ConsumerTooSlow`` on every
handshake, and a stream that stays open and sends nothing (the watchdog). Real fake
directories over HTTP and WebSocket; only module timings are shortened."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditor import follow, streambytes
from auditor.audit import AuditOptions, sync_directory

from .conftest import assert_evidence_consistent, serve, state_meta, stored_findings
from .corpus import Corpus
from .fakedir import FakeLog, grow_later

OPTIONS: dict[str, Any] = {"workers": 0, "progress": False, "spot_checks": 2, "seed": 1}
REFERENCE_ORDER = ("seq", "type", "did", "operation", "cid", "createdAt")
"""Key order of the reference server's stream messages (plc-spec-notes.md §4.2)."""


def _reference_order(line: bytes) -> bytes:
    value = orjson.loads(line)
    return orjson.dumps({key: value[key] for key in REFERENCE_ORDER})


def _grow_when_following(log: FakeLog, lines: list[bytes], path: Path) -> threading.Thread:
    """Append ``lines`` in groups once the state holds every line served so far."""
    first = len(log.lines)

    def following() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if state_meta(path, "cursor_seq") >= first:
                    break
            except Exception:  # noqa: BLE001 - not created yet
                pass
            time.sleep(0.02)
        time.sleep(0.3)  # the stream is connected

    return grow_later(log, lines, following)


def _follow(log: FakeLog, grow: list[bytes], path: Path, seconds: float, **options: Any) -> None:
    with serve(log) as url:
        grower = _grow_when_following(log, grow, path)
        run = AuditOptions(**{**OPTIONS, **options}, follow=True, follow_seconds=seconds)
        sync_directory(url, path, run)
        grower.join()
        sync_directory(url, path, AuditOptions(**OPTIONS))  # re-reads all of /export


def test_stream_messages_in_another_key_order_are_replayed_as_export_lines(
    corpus: Corpus, tmp_path: Path
) -> None:
    """A directory without /tlog/ whose stream encodes ops with the reference server's key
    order: the leaves are the /export bytes, so the next run's byte-for-byte re-read of
    /export finds nothing."""
    log = FakeLog(list(corpus.lines[:1000]), None, stream_rewrite=_reference_order)
    path = tmp_path / "state.sqlite3"
    _follow(log, list(corpus.lines[1000:2000]), path, 4.0)
    assert stored_findings(path) == []
    assert state_meta(path, "tree_size") == state_meta(path, "cursor_seq") == 2000


def test_a_stream_message_with_other_content_than_export_is_export_rewritten(
    corpus: Corpus, tmp_path: Path
) -> None:
    changed_seq = 1500

    def rewrite(line: bytes) -> bytes:
        value = orjson.loads(line)
        if value["seq"] == changed_seq:  # one millisecond later than /export says
            stamp = value["createdAt"]
            millis = int(stamp[20:23]) + 1 if stamp[20:23] != "999" else 998
            value["createdAt"] = f"{stamp[:20]}{millis:03d}Z"
        return _reference_order(orjson.dumps(value))

    log = FakeLog(list(corpus.lines[:1000]), None, stream_rewrite=rewrite)
    path = tmp_path / "state.sqlite3"
    _follow(log, list(corpus.lines[1000:2000]), path, 4.0)
    findings = stored_findings(path)
    assert [(f.cls, f.seq, f.evidence["kind"]) for f in findings] == [
        ("export-rewritten", changed_seq, "changed")
    ]
    assert findings[0].evidence["served_line"] == corpus.lines[changed_seq - 1].decode()
    assert_evidence_consistent(findings, "export-rewritten")


def test_consumer_too_slow_without_new_lines_backs_off_and_says_so(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = FakeLog(list(corpus.lines[:500]), None, stream_close_reason="ConsumerTooSlow")
    with serve(log) as url:
        options = AuditOptions(**OPTIONS, follow=True, follow_seconds=3.0)
        sync_directory(url, tmp_path / "state.sqlite3", options)
    # The pauses double from RETRY_FIRST_S: handshakes at about 0, 0.4, 1.2 and 2.8 s fit in
    # the 3 s (reconnecting at once after each close made 219).
    starts = itertools.accumulate(follow.RETRY_FIRST_S * 2**i for i in range(10))
    fit = 1 + sum(1 for start in starts if start < 3.0)
    assert log.stream_handshakes <= fit, log.stream_handshakes
    said = capsys.readouterr().err.count(
        "closed (ConsumerTooSlow) without sending a new line; retrying in"
    )
    assert said >= 1 and log.stream_handshakes - said in (0, 1), (said, log.stream_handshakes)


@pytest.mark.parametrize("tlog", [True, False], ids=["tlog", "no-tlog"])
def test_a_stream_that_stays_open_and_silent_is_noticed(
    corpus: Corpus,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tlog: bool,
) -> None:
    """The stream accepts and answers pings but never sends: with /tlog/ the checkpoints run
    ahead of the entries read, without it nothing arrives for ``stream_silence_s``; either
    way the run reads the new entries from /export and says so."""
    monkeypatch.setattr(follow, "TICK_EVERY_S", 0.2)
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer if tlog else None, stream_silent=True)
    path = tmp_path / "state.sqlite3"
    with serve(log) as url:
        grower = _grow_when_following(log, list(corpus.lines[1000:2000]), path)
        options = AuditOptions(
            **OPTIONS,
            follow=True,
            follow_seconds=5.0,
            stream_silence_s=0.5,
            verifiers=(corpus.signer.verifier,) if tlog else (),
        )
        sync_directory(url, path, options)
        grower.join()
    assert state_meta(path, "cursor_seq") == 2000
    assert stored_findings(path) == []
    err = capsys.readouterr().err
    said = "stayed ahead of the" if tlog else "no message for 0.5 s"
    assert said in err and "reconnecting" in err, err


def _lift_export_lag(log: FakeLog, total: int, after_s: float) -> threading.Thread:
    """Serve every op on /export ``after_s`` seconds after the log holds ``total`` lines."""

    def lift() -> None:
        deadline = time.monotonic() + 30
        while len(log.lines) < total and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(after_s)
        log.export_upto = None

    thread = threading.Thread(target=lift, daemon=True)
    thread.start()
    return thread


def test_stream_messages_export_does_not_serve_yet_are_read_again_until_it_does(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/export lags the stream (a replica behind the primary) for a second and a half: the
    messages it does not serve yet are read again from the stream until it does, so their
    leaves are the export's bytes. Kept as sent, each would be a false export-rewritten in
    the next run's byte-for-byte re-read (the stream's key order differs)."""
    log = FakeLog(
        list(corpus.lines[:1000]), None, stream_rewrite=_reference_order, export_upto=1000
    )
    path = tmp_path / "state.sqlite3"
    lifter = _lift_export_lag(log, 2000, 1.5)
    _follow(log, list(corpus.lines[1000:2000]), path, 6.0)
    lifter.join()
    assert stored_findings(path) == []
    assert state_meta(path, "tree_size") == state_meta(path, "cursor_seq") == 2000
    told = capsys.readouterr().err
    assert "/export does not serve seq 1001 yet; reading the stream again" in told
    assert told.count("does not serve seq 1001 yet") == 1  # said once, not at every re-read


def test_a_streamed_op_export_never_serves_is_kept_as_sent_and_reported_missing(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past EXPORT_LAG_S a message /export still does not serve is replayed as sent, and
    the next run's re-read of /export reports the op missing from it."""
    monkeypatch.setattr(streambytes, "EXPORT_LAG_S", 0.5)
    log = FakeLog(list(corpus.lines[:1000]), None, export_upto=1000)
    path = tmp_path / "state.sqlite3"
    _follow(log, list(corpus.lines[1000:1100]), path, 3.0)
    findings = stored_findings(path)
    assert state_meta(path, "tree_size") == 1100
    assert findings and {(f.cls, f.evidence["kind"]) for f in findings} == {
        ("export-rewritten", "missing")
    }
    assert {f.seq for f in findings} <= set(range(1001, 1101))


def test_stream_batches_are_looked_up_in_export_at_most_once_a_second(
    corpus: Corpus, tmp_path: Path
) -> None:
    """Ops streamed without a pause (a group every 20 ms for 2 s) from a directory without
    /tlog/: each batch costs an /export look-up, and batches close at most once a second
    (plc.directory allows 500 requests in 5 minutes; half-second batches made 600)."""
    log = FakeLog(list(corpus.lines[:1000]), None, stream_rewrite=_reference_order)
    path = tmp_path / "state.sqlite3"
    growing: list[float] = []

    def when_following() -> None:
        _grow_when_following(log, [], path).join()
        growing.append(time.monotonic())

    with serve(log) as url:
        grower = grow_later(
            log, list(corpus.lines[1000:2000]), when_following, group=10, pause_s=0.02
        )
        run = AuditOptions(**{**OPTIONS, "spot_checks": 0}, follow=True, follow_seconds=5.0)
        sync_directory(url, path, run)
        grower.join()
    assert state_meta(path, "tree_size") == 2000
    # While the ops come (2 s), not the run's own requests when following ends (5 s).
    look_ups = [when for when, _ in log.export_requests if 0 < when - growing[0] < 3.5]
    assert len(look_ups) >= 2
    gaps = [b - a for a, b in itertools.pairwise(look_ups)]
    assert min(gaps) >= 0.9, gaps
