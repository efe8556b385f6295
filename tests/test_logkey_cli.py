"""``plc log-key`` prints the log's verifier key from its database without changing it;
``plc keygen`` makes a signing key that ``plc serve`` accepts and that signs under the
verifier key it prints."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plc.checkpoints import Checkpointer, load_or_create_signer
from plc.store.engine import make_engine
from plc.store.migrate import upgrade
from plc.store.sql import SqlStore
from plc.store.tlog_store import TlogStore
from plc.tlog.note import open_note, parse_signer_key, parse_verifier_key, sign_note

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_log_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLC_LOG_SIGNING_KEY", raising=False)


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    from plc.cli import app

    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_log_key_prints_the_stored_verifier_key(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    signer = load_or_create_signer(TlogStore(SqlStore(engine)), origin="example.test/tlog")
    engine.dispose()
    code, out, _ = _run("log-key", "--database-url", db_url)
    assert code == 0
    assert out == f"verifier key: {signer.verifier.key_text}\n"
    # DATABASE_URL is read as plc serve reads it
    assert _run("log-key", env={"DATABASE_URL": db_url})[1] == out


def test_log_key_changes_nothing_where_there_is_no_log(tmp_path: Path, pg_url: str) -> None:
    missing = tmp_path / "missing.sqlite3"
    code, out, err = _run("log-key", "--database-url", f"sqlite:///{missing}")
    assert (code, out) == (1, "")
    assert err.strip() == f"error: no database at sqlite:///{missing}"
    assert not missing.exists()  # not created
    code, _, err = _run("log-key", "--database-url", pg_url)  # a schema with no tables
    assert code == 1 and "no log in" in err
    engine = make_engine(pg_url)
    upgrade(engine)  # the tables, but no key yet
    engine.dispose()
    code, _, err = _run("log-key", "--database-url", pg_url)
    assert code == 1 and "no log key stored" in err


def test_keygen_gives_a_key_serve_accepts(tmp_path: Path) -> None:
    code, out, _ = _run("keygen", "plc.example.com/tlog")
    assert code == 0
    first, second = out.splitlines()
    signer_key = first.removeprefix("PLC_LOG_SIGNING_KEY=")
    verifier = parse_verifier_key(second.removeprefix("verifier key: "))
    signer = parse_signer_key(signer_key)
    assert signer.name == verifier.name == "plc.example.com/tlog"
    assert open_note(sign_note("a checkpoint\n", signer), verifier).text == "a checkpoint\n"
    # the log of a database started with that key has it (nothing of it is stored)
    url = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    tlog = TlogStore(SqlStore(engine))
    Checkpointer(tlog, load_or_create_signer(tlog, signer_key), lambda: NOW).sign_if_grown()
    engine.dispose()
    env = {**os.environ, "PLC_LOG_SIGNING_KEY": signer_key}
    assert _run("log-key", "--database-url", url, env=env)[1] == second + "\n"
    # a key plc serve would refuse for this log is refused here too, not printed
    other_key, _ = _run("keygen", "plc.example.com/tlog")[1].splitlines()
    env["PLC_LOG_SIGNING_KEY"] = other_key.removeprefix("PLC_LOG_SIGNING_KEY=")
    code, out, err = _run("log-key", "--database-url", url, env=env)
    assert (code, out) == (1, "") and "a log keeps its key" in err
    code, out, err = _run("keygen", "bad origin")
    assert (code, out) == (1, "")
    assert "may only hold the characters" in err
