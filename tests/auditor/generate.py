"""Generated export files: many signed ops, fast, without a server (tests and benchmark).

:func:`generate_export` writes ``sequenced_op`` lines (canonical, ``seq`` 1..n, ``createdAt``
rising 1 ms per op) for accounts created in rounds: a genesis (rotation key 0 is p256 for
every third key, k256 otherwise, optionally shared by many accounts; key 1 is k256), updates
by key 0, updates by key 1 that a later op recovers with key 0 (nullifying them), and
tombstones. With ``bad_every``,
every n-th op is replaced by an update signed by a key that is not a rotation key (a
finding). Deterministic for a given ``seed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from plc.did import did_for_genesis
from plc.exportline import build_line
from plc.keys import Curve, PrivateKey
from plc.operation import parse_operation
from plc.signing import pds_services, plc_operation, sign_operation, tombstone
from plc.timestamps import format_timestamp

T0 = datetime(2025, 6, 1, tzinfo=UTC)


@dataclass
class _Account:
    did: str
    keys: list[PrivateKey]
    ops: list[tuple[dict[str, Any], str]]  # (signed op, cid)


def _curve(index: int) -> Curve:
    return Curve.P256 if index % 3 == 0 else Curve.K256


_POOL: dict[tuple[str, int], PrivateKey] = {}


def _keys(seed: str, index: int, shared_keys: int) -> list[PrivateKey]:
    """Rotation keys of account ``index``: key 0 from a pool of ``shared_keys`` keys for three
    accounts in four (a PDS's key, as on plc.directory) or the account's own; key 1 its own."""
    if shared_keys and index % 4:
        slot = index % shared_keys
        first = _POOL.get((seed, slot))
        if first is None:
            first = _POOL[(seed, slot)] = PrivateKey.from_seed(f"{seed}-pool-{slot}", _curve(slot))
    else:
        first = PrivateKey.from_seed(f"{seed}-{index}-0", _curve(index))
    return [first, PrivateKey.from_seed(f"{seed}-{index}-1")]


def signed_op(
    keys: list[PrivateKey], prev: str | None, handle: str, signer: PrivateKey
) -> dict[str, Any]:
    """A ``plc_operation`` signed by ``signer``: ``keys`` as rotation keys (index 0 most
    authority), the last one also the atproto verification method, ``handle`` its only
    ``alsoKnownAs``."""
    return sign_operation(
        plc_operation(
            rotation_keys=[k.did_key for k in keys],
            verification_methods={"atproto": keys[-1].did_key},
            also_known_as=[f"at://{handle}"],
            services=pds_services("https://pds.example.com"),
            prev=prev,
        ),
        signer,
    )


def _ops(
    count: int, seed: str, bad_every: int, shared_keys: int
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(did, signed op, cid)`` in export order."""
    made = updates = 0
    stranger = PrivateKey.from_seed(f"{seed}-stranger")
    round_size = 500
    base = 0
    while made < count:
        accounts: list[_Account] = []
        for i in range(base, base + round_size):
            keys = _keys(seed, i, shared_keys)
            genesis = signed_op(keys, None, f"u{i}.test", keys[0])
            parsed = parse_operation(genesis)
            accounts.append(_Account(did_for_genesis(parsed), keys, [(genesis, parsed.cid)]))
            yield accounts[-1].did, genesis, parsed.cid
            made += 1
            if made >= count:
                return
        for step in ("update0", "update1", "recover", "tombstone"):
            for n, a in enumerate(accounts):
                index = base + n
                if step == "update0" and index % 2 == 0:
                    signer, prev = a.keys[0], a.ops[-1][1]
                elif step == "update1" and index % 4 == 1:
                    signer, prev = a.keys[1], a.ops[-1][1]
                elif step == "recover" and index % 8 == 1:
                    signer, prev = a.keys[0], a.ops[-2][1]
                elif step == "tombstone" and index % 16 == 3:
                    op = sign_operation(tombstone(a.ops[-1][1]), a.keys[0])
                    cid = parse_operation(op).cid
                    a.ops.append((op, cid))
                    yield a.did, op, cid
                    made += 1
                    if made >= count:
                        return
                    continue
                else:
                    continue
                updates += 1
                if bad_every and updates % bad_every == 0:
                    signer = stranger
                op = signed_op(a.keys, prev, f"u{index}-{step}.test", signer)
                cid = parse_operation(op).cid
                a.ops.append((op, cid))
                yield a.did, op, cid
                made += 1
                if made >= count:
                    return
        base += round_size


def generate_export(
    path: Path, count: int, *, seed: str = "gen", bad_every: int = 0, shared_keys: int = 0
) -> Path:
    """Write ``count`` ops as an export file at ``path`` (returned)."""
    with open(path, "wb") as out:
        ops = _ops(count, seed, bad_every, shared_keys)
        for seq, (did, op, cid) in enumerate(ops, start=1):
            when = format_timestamp(T0 + timedelta(milliseconds=seq))
            json = parse_operation(op).canonical_json()
            out.write(build_line(did, cid, seq, when, json) + b"\n")
    return path
