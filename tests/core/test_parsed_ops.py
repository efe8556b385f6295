"""ParsedOps: the memo of parsed stored ops that Directory.prepare reads history through.
History still comes from the store on every call: the memo only saves decoding an op whose
``seq`` and CID it has seen, and never decides ``nullified``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest

from plc.errors import MisorderedOperation
from plc.exportline import build_line
from plc.operation import parse_operation
from plc.policy import PolicySettings
from plc.service import Directory, ParsedOps
from plc.signing import update_operation
from plc.store.engine import make_engine
from plc.store.migrate import upgrade
from plc.store.sql import SqlStore, StoredOp
from plc.store.tlog_store import TlogStore
from plc.timestamps import format_timestamp, from_ms

from ..conftest import Clock
from ..helpers import new_did

T_MS = 1_767_225_600_000  # 2026-01-01T00:00:00.000Z


def _row(seed: str, seq: int, *, nullified: bool = False) -> tuple[str, StoredOp]:
    did, genesis, _ = new_did(seed)
    op = parse_operation(genesis)
    line = build_line(did, op.cid, seq, format_timestamp(from_ms(T_MS)), op.canonical_json())
    return did, StoredOp(seq, op.cid, T_MS, nullified, line)


def test_entry_parses_once_and_takes_nullified_from_the_row() -> None:
    parsed = ParsedOps(10)
    did, row = _row("po-a", 1)
    first = parsed.entry(did, row)
    assert first.operation.cid == row.cid and not first.nullified
    assert first.created_at == from_ms(T_MS)
    again = parsed.entry(did, row._replace(nullified=True))
    assert again.operation is first.operation  # not decoded again
    assert again.nullified  # the row says so, whatever was seen before


def test_a_different_cid_at_a_seen_seq_is_decoded() -> None:
    parsed = ParsedOps(10)
    did_a, row_a = _row("po-b", 7)
    did_b, row_b = _row("po-c", 7)  # same seq, another op (e.g. another database)
    assert parsed.entry(did_a, row_a).operation.cid == row_a.cid
    entry_b = parsed.entry(did_b, row_b)
    assert entry_b.operation.cid == row_b.cid and entry_b.did == did_b


def test_bounded_first_in_first_out() -> None:
    parsed = ParsedOps(2)
    rows = [_row(f"po-d{i}", i) for i in range(1, 4)]
    ops = [parsed.entry(did, row).operation for did, row in rows]
    assert parsed.entry(*rows[2]).operation is ops[2]
    assert parsed.entry(*rows[1]).operation is ops[1]
    assert parsed.entry(*rows[0]).operation is not ops[0]  # evicted, decoded again
    off = ParsedOps(0)
    did, row = rows[0]
    assert off.entry(did, row).operation is not off.entry(did, row).operation


@pytest.fixture
def directory(sqlite_url: str, clock: Clock) -> Iterator[Directory]:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    store = SqlStore(engine)
    store.leaf_hooks.append(TlogStore(store).append_in)
    yield Directory(store, PolicySettings(), clock, inline_io=True)
    store.close()
    engine.dispose()


def test_nullified_op_held_in_memo_is_refused_as_prev(directory: Directory, clock: Clock) -> None:
    """Op B is committed here (so the memo holds it as a plain op), then a recovery op
    nullifies it: an op built on B must be refused as building on a nullified op."""
    did, genesis, (rot0, rot1) = new_did("po-recovery")

    async def scenario() -> None:
        await directory.submit(did, genesis)
        clock.advance(timedelta(seconds=1))
        b = update_operation(genesis, rot1, also_known_as=["at://b.example.com"])
        committed = await directory.submit(did, b)
        assert committed.seq is not None
        assert directory.parsed_ops.entry(did, directory.store.audit_rows(did)[1]).cid == (
            committed.cid
        )
        clock.advance(timedelta(seconds=1))
        recovery = update_operation(genesis, rot0, also_known_as=["at://c.example.com"])
        await directory.submit(did, recovery)
        clock.advance(timedelta(seconds=1))
        on_b = update_operation(b, rot0, also_known_as=["at://d.example.com"])
        with pytest.raises(MisorderedOperation, match="nullified"):
            await directory.submit(did, on_b)

    asyncio.run(scenario())
    assert [r.nullified for r in directory.store.audit_rows(did)] == [False, True, False]
