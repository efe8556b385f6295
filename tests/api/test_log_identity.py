"""A log keeps its identity across starts (C2SP tlog-checkpoint: monitors and witnesses pin
the origin and key): `load_or_create_signer` refuses a key other than the stored one, a start
without the key that signed the newest checkpoint, and another origin; `plc serve` says so
in one line and stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plc.checkpoints import Checkpointer, load_or_create_signer, next_tick
from plc.errors import InvalidInput
from plc.store.engine import make_engine
from plc.store.migrate import upgrade
from plc.store.sql import SqlStore
from plc.store.tlog_store import TlogStore
from plc.tlog.checkpoint import open_checkpoint
from plc.tlog.note import Signer, generate_signer, parse_verifier_key

from ..conftest import REPO, Clock

PLC = str(Path(sys.executable).parent / "plc")


@pytest.fixture
def tlog(db_url: str) -> TlogStore:
    engine = make_engine(db_url)
    upgrade(engine)
    return TlogStore(SqlStore(engine))


def _sign(tlog: TlogStore, signing_key: str | None = None, origin: str | None = None) -> str:
    """Start as `plc serve` does: load the signer and sign the current tree; the verifier key."""
    signer = load_or_create_signer(tlog, signing_key, origin)
    Checkpointer(tlog, signer, Clock()).sign_if_grown()
    return signer.verifier.key_text


def test_a_generated_key_is_stored_and_used_again(tlog: TlogStore) -> None:
    first = _sign(tlog)
    assert _sign(tlog) == first
    stored = tlog.latest_checkpoint()
    assert stored is not None
    assert open_checkpoint(stored.note, parse_verifier_key(first)).tree_size == 0


def test_a_given_key_other_than_the_stored_one_is_refused(tlog: TlogStore) -> None:
    stored = _sign(tlog)
    other, _ = generate_signer(stored.split("+")[0])  # same name, another key
    with pytest.raises(InvalidInput, match="not the key stored with the log"):
        load_or_create_signer(tlog, other)
    assert _sign(tlog) == stored


def test_a_given_key_is_not_stored_and_must_be_given_again(tlog: TlogStore) -> None:
    signer_key, verifier_key = generate_signer("logs.example.org/plc")
    assert _sign(tlog, signer_key) == verifier_key
    assert tlog.signer_row() is None  # the operator's secret stays out of the database
    with pytest.raises(InvalidInput, match=r"signed by logs\.example\.org/plc\+[0-9a-f]{8}"):
        load_or_create_signer(tlog)
    assert tlog.signer_row() is None  # no new identity was made up for the log
    other_key, _ = generate_signer("logs.example.org/plc")
    with pytest.raises(InvalidInput, match="a log keeps its key"):
        load_or_create_signer(tlog, other_key)
    assert _sign(tlog, signer_key) == verifier_key


def test_a_log_without_checkpoints_may_take_any_key(tlog: TlogStore) -> None:
    first_key, _ = generate_signer("logs.example.org/a")
    second_key, second_verifier = generate_signer("logs.example.org/b")
    load_or_create_signer(tlog, first_key)  # no checkpoint signed: nothing pins the key yet
    assert _sign(tlog, second_key) == second_verifier


@pytest.mark.parametrize("name", ["bad@origin!", "ümlaut.example", "a—b"])
def test_a_given_key_whose_name_no_origin_may_have_is_refused(tlog: TlogStore, name: str) -> None:
    # PLC_LOG_ORIGIN refused these characters while a key named with them started the log
    signer_key = Signer.generate(name).key_text
    with pytest.raises(InvalidInput, match="PLC_LOG_SIGNING_KEY's name may only hold"):
        load_or_create_signer(tlog, signer_key)
    assert tlog.latest_checkpoint() is None and tlog.signer_row() is None


def test_another_origin_is_refused(tlog: TlogStore) -> None:
    stored = _sign(tlog, origin="logs.example.org/plc")
    with pytest.raises(InvalidInput, match="a log keeps its origin"):
        load_or_create_signer(tlog, origin="logs.example.org/other")
    assert _sign(tlog, origin="logs.example.org/plc") == stored


def test_plc_serve_refuses_a_new_key_for_an_existing_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    stored = _sign(TlogStore(SqlStore(engine)))
    engine.dispose()
    other, _ = generate_signer("logs.example.org/plc")
    env = {**os.environ, "DATABASE_URL": url, "PLC_LOG_SIGNING_KEY": other, "PLC_PORT": "0"}
    done = subprocess.run(
        [PLC, "serve"], cwd=REPO, env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stdout == b""  # no verifier key line: nothing was served
    lines = done.stderr.decode().strip().splitlines()
    assert lines[-1].startswith("error: PLC_LOG_SIGNING_KEY (logs.example.org/plc+")
    assert f"is not the key stored with the log ({stored})" in lines[-1]
    assert "Traceback" not in done.stderr.decode()


def test_the_signing_timer_keeps_a_fixed_rate() -> None:
    # Woken on time or a little late (the signature itself takes time): the next tick is one
    # interval after the one due, not one interval after waking, which had ticks drift apart.
    assert next_tick(10.0, 10.0, 0.5) == 10.5
    assert next_tick(10.0, 10.2, 0.5) == 10.5
    # Woken after the next tick was due (a stalled process): one interval from now, once.
    assert next_tick(10.0, 10.5, 0.5) == 11.0
    assert next_tick(10.0, 13.0, 0.5) == 13.5
