"""The auditor's incremental per-DID rules decide exactly as the core's ``validate_next_op``.

:mod:`auditor.chain` keeps go-didplc's compact per-op state instead of whole audit logs; this
property test drives both with random op sequences for one DID (updates and tombstones by
any of four keys, chained to any earlier op, at random times, recoveries included) and
requires the same accept/refuse decision and the same nullified ops at every step.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.chain import DidHistory, judge, record
from plc.audit_log import apply_prepared
from plc.errors import PlcError
from plc.keys import PrivateKey
from plc.operation import parse_operation
from plc.rules import LogEntry, validate_next_op
from plc.signing import create_did, plc_operation, sign_operation, tombstone
from plc.timestamps import to_ms

KEYS = [PrivateKey.from_seed(f"chain-{i}") for i in range(4)]
T0 = datetime(2026, 1, 1, tzinfo=UTC)

step = st.tuples(  # (prev, key, kind, ms after the previous step, rotation keys)
    st.integers(0, 50),  # which earlier op is prev (modulo the ops so far)
    st.integers(0, 3),  # signing key (3: not a rotation key of the genesis)
    st.sampled_from(["update", "update", "update", "tombstone"]),
    st.sampled_from([-3_600_000, 0, 1, 1000, 3_600_000, 50 * 3_600_000, 80 * 3_600_000]),
    st.integers(0, 2),  # rotation keys of the new op: a prefix length offset
)


@settings(max_examples=30, deadline=None)
@given(st.lists(step, min_size=1, max_size=8))
def test_incremental_rules_match_the_core(steps: list[tuple[int, int, str, int, int]]) -> None:
    did, genesis = create_did(KEYS[:3], handle="chain.test")
    genesis_op = parse_operation(genesis)
    core: list[LogEntry] = apply_prepared([], validate_next_op([], did, genesis_op, T0))
    mine = DidHistory(did)
    verdict = judge(mine, did, genesis_op, to_ms(T0))
    record(mine, genesis_op, 1, to_ms(T0), verdict, None)
    ops = [genesis_op]
    now = T0
    for seq, (prev_pick, key, kind, later_ms, keys_pick) in enumerate(steps, start=2):
        prev = ops[prev_pick % len(ops)]
        now = now + timedelta(milliseconds=later_ms)
        if kind == "tombstone":
            unsigned = tombstone(prev.cid)
        else:
            unsigned = plc_operation(
                rotation_keys=[k.did_key for k in KEYS[keys_pick : keys_pick + 3]],
                also_known_as=[f"at://s{seq}.test"],
                prev=prev.cid,
            )
        op = parse_operation(sign_operation(unsigned, KEYS[key]))
        if op.cid in mine.ops:
            # Signatures are deterministic, so a step can rebuild an op already seen; the
            # worker reports that as ``duplicate-op`` before the rules (record() needs new CIDs).
            continue
        try:
            prepared = validate_next_op(core, did, op, now)
        except PlcError:
            prepared = None
        verdict = judge(mine, did, op, to_ms(now))
        assert verdict.accepted == (prepared is not None), (verdict, seq)
        record(mine, op, seq, to_ms(now), verdict, None)
        if prepared is not None:
            assert verdict.nullified == prepared.nullified
            assert verdict.key_index == prepared.key_index
            core = apply_prepared(core, prepared)
        ops.append(op)
        assert {e.cid for e in core if e.nullified} == {
            s.cid for s in mine.ops.values() if s.nullified
        }
