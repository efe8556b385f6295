"""What ``--state``, ``--directory`` and ``--findings`` may do to files (real processes):
a file that is not this source's auditor state is never changed or deleted, a URL that
cannot be one leaves nothing behind, an unwritable findings path fails before the run, and
a state in use by one run is refused to a second."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from auditor import state
from auditor.statelock import lock_path, state_lock
from tests.helpers import VALID_LOGS

from .conftest import plc_audit
from .test_cli import export_file

CLOSED = "http://127.0.0.1:9"
"""A directory URL nothing answers (the discard port)."""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _foreign_db(path: Path) -> Path:
    """Someone's own SQLite database (rollback journal, one table with a row)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('keep me')")
    conn.commit()
    conn.close()
    return path


def _one_line(stderr: str) -> None:
    assert "Traceback" not in stderr and "audit failed" in stderr, stderr
    assert len(stderr.strip().splitlines()) <= 3, stderr  # one message (rich may wrap it)


@pytest.mark.parametrize(
    "args",
    [
        ("sync", "-d", CLOSED, "--fresh"),
        ("sync", "-d", CLOSED),
        ("verify", "EXPORT", "--resume"),
        ("verify", "EXPORT"),
    ],
    ids=["sync-fresh", "sync", "verify-resume", "verify"],
)
def test_a_foreign_sqlite_database_is_never_changed_or_deleted(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    db = _foreign_db(tmp_path / "my.db")
    before = _digest(db)
    export = export_file(tmp_path, VALID_LOGS[0])
    argv = [str(export) if a == "EXPORT" else a for a in args]
    done = plc_audit(*argv, "--state", str(db), "--workers", "0", "--findings", "-", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    _one_line(done.stderr)
    assert db.exists() and _digest(db) == before
    assert not Path(str(db) + "-wal").exists()  # not switched to WAL either


def test_an_empty_state_of_another_source_survives_a_fresh_sync(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    conn = state.connect(path)
    state.set_meta(conn, "source", "http://127.0.0.1:8")  # bound, nothing stored yet
    conn.close()
    done = plc_audit("sync", "-d", CLOSED, "--state", str(path), "--fresh", cwd=tmp_path)
    assert done.returncode == 1 and "is the state of" in " ".join(done.stderr.split())
    assert state.bound_source(path) == "http://127.0.0.1:8"


def test_a_newer_schema_state_is_refused_before_any_table_is_added(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2'), ('source', ?)", (CLOSED,))
    conn.commit()
    conn.close()
    before = _digest(path)
    done = plc_audit("sync", "-d", CLOSED, "--state", str(path), cwd=tmp_path)
    assert done.returncode == 1 and "schema version 2" in " ".join(done.stderr.split())
    assert _digest(path) == before


def test_an_invalid_url_fails_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    for url in ("http://[::1", "ftp://127.0.0.1", "127.0.0.1:9"):
        done = plc_audit("sync", "-d", url, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        _one_line(done.stderr)
        assert "invalid directory URL" in " ".join(done.stderr.split())
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_findings_path_fails_before_the_run(tmp_path: Path) -> None:
    export = export_file(tmp_path, VALID_LOGS[0])
    state_path = tmp_path / "s.sqlite3"
    bad = tmp_path / "no-such-dir" / "f.jsonl"
    done = plc_audit(
        "verify", str(export), "--state", str(state_path), "--findings", str(bad), cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    _one_line(done.stderr)
    assert "--findings" in done.stderr
    assert not state_path.exists()  # nothing was replayed
    done = plc_audit("sync", "-d", CLOSED, "--findings", str(bad), cwd=tmp_path)
    assert done.returncode == 1 and "--findings" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [export.name, "s.sqlite3"][:1]


def test_a_second_run_on_a_state_in_use_is_refused(tmp_path: Path) -> None:
    """Two runs on one state would both replay from its cursor (ops counted twice); the
    second is refused at once while the first holds the state (here: this process)."""
    export = export_file(tmp_path, VALID_LOGS[0])
    path = tmp_path / "s.sqlite3"
    with state_lock(path):
        for args in (("verify", str(export)), ("sync", "-d", CLOSED, "--fresh")):
            done = plc_audit(*args, "--state", str(path), "--workers", "0", cwd=tmp_path)
            assert done.returncode == 1, done.stderr
            _one_line(done.stderr)
            assert "another plc-audit run is using" in " ".join(done.stderr.split())
        assert not path.exists()
    done = plc_audit("verify", str(export), "--state", str(path), "--workers", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not lock_path(path).exists()  # released and removed with the run


@pytest.mark.parametrize(
    "option",
    [
        ("--follow-seconds", "nan"),
        ("--follow-seconds", "inf"),
        ("--follow-seconds", "-1"),
        ("--request-deadline", "nan"),  # every request was "too slow" at once
        ("--request-deadline", "inf"),  # Event.wait: OverflowError, a traceback
    ],
)
def test_seconds_must_be_finite_numbers(tmp_path: Path, option: tuple[str, str]) -> None:
    done = plc_audit("sync", "-d", CLOSED, "--follow", *option, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "Invalid value for" in done.stderr and option[0] in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_state_of_this_version_gets_the_tables_added_to_it_later(tmp_path: Path) -> None:
    # leaf_seq and findings_by_op came after schema version 1 was set; connect made them
    # in older states until it stopped running the schema on an existing one
    path = tmp_path / "old.sqlite3"
    conn = state.connect(path)
    conn.execute("DROP TABLE leaf_seq")
    conn.close()
    conn = state.connect(path)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert "leaf_seq" in names
