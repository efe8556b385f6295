"""Which of a DID's lines a per-DID rule finding carries, in which order, and which earlier
finding it extends (the worker's side of :mod:`auditor.evidence_chain`).

The auditor judges a DID's ops in the order it reads them; the checker replays a finding's
lines with the core in the order they are written. So they must be written in an order in
which the core judges every op as the auditor did. While a DID's ops are read in ``seq``
order, that is ``seq`` order. An op read after one of its DID with a ``seq`` not lower (a
*departure*: after a seq regression, or a ``seq`` served twice) keeps ``seq`` order right
when every op read before it with a ``seq`` not lower was refused and, with this op judged
first, still is (judged again with the auditor's rules, :func:`auditor.chain.judge`): a bad
op served early changes nothing about the ops around it. Otherwise the DID's lines are
written from then on in the order read — those read before in ``seq`` order (replayed so,
they give the auditor's state), then the rest as read — marked ``"read_order": true``; the
checker replays them in that order, and since the order is the auditor's observation it
answers "unverifiable".

The order an earlier run read ops in is not in the ``ops`` table but in the tree: its leaves
are the lines in read order. ``leaf_seq`` tells which ``seq`` values an earlier run read
after a higher one (:func:`regressed_seqs`); a DID with an op at one of them is written in
read order (found from its lines' leaves) when that is not ``seq`` order.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Callable
from typing import Any

from auditor import state
from auditor.chain import OK, REFUSED, DidHistory, OpState, judge
from auditor.lines import MalformedLine, parse_entry
from auditor.treestore import leaves_of_seq, stored_leaf_hash
from plc.operation import Operation
from plc.tlog.hashing import leaf_hash

MAX_REJUDGED = 16
"""Ops read before a departure, with a ``seq`` not lower, judged again to keep ``seq``
order at most; with more, the DID's lines are written in read order."""

LineOf = Callable[[OpState], bytes | None]
"""The line read for an op of the DID (None: it can no longer be fetched as read)."""


def regressed_seqs(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    """The ``seq`` values of committed leaves read after a leaf with a ``seq`` not lower, as
    sorted, disjoint ``(first, last)`` ranges. From ``leaf_seq`` (leaf ``b + k`` of a row
    ``(b, s)`` has ``seq`` ``s + k`` until the next row; leaf ``i`` has ``i + 1`` before the
    first), so in time linear in its rows."""
    size = state.get_meta_int(conn, "tree_size")
    breaks = conn.execute(
        "SELECT leaf, seq FROM leaf_seq WHERE leaf < ? ORDER BY leaf", (size,)
    ).fetchall()
    starts = [(0, 1)] if not breaks or int(breaks[0][0]) > 0 else []
    starts += [(int(leaf), int(seq)) for leaf, seq in breaks]
    found: list[tuple[int, int]] = []
    top = 0  # the highest seq of the leaves before
    for k, (leaf, seq) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else size
        if end <= leaf:
            continue
        last = seq + end - leaf - 1
        if seq <= top:  # within one run seq rises by 1: only its start can go back
            found.append((seq, min(last, top)))
        top = max(top, last)
    merged: list[tuple[int, int]] = []
    for first, last in sorted(found):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


class RuleLines:
    """What one validator writes as the lines of its per-DID rule findings.

    Args:
        conn: the validator's state connection (read: ``leaf_seq``, the tree).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        # DID -> CIDs of its refused ops recorded by this validator whose findings hold
        # every kept op of the DID with a lower seq (in seq order) or read before them (in
        # read order): the ones a later finding may extend. A refused op stops being one
        # when an op of its DID with a seq not above its own is recorded after it (README:
        # such a finding is written inline), or when the DID's lines turn to read order.
        # An earlier run's op is never one: the first finding of a DID in a run is inline.
        self._bases: dict[str, dict[str, int]] = {}  # DID -> {CID: seq}
        self._highest: dict[str, int] = {}  # DID -> the highest seq a base of it ever had
        # DIDs written in read order -> the CIDs of their ops in the order to write them.
        self._order: dict[str, list[str]] = {}
        self._top: dict[str, int] = {}  # this batch: DID -> the highest seq of its ops
        self._regressed = regressed_seqs(conn)
        self._starts = [first for first, _ in self._regressed]
        self._checked: set[str] = set()  # DIDs whose earlier runs' order was looked up

    def new_batch(self) -> None:
        """Forget what was cached for the last batch (its histories are loaded again)."""
        self._top.clear()

    def note(self, history: DidHistory, current: OpState, op: Operation, line_of: LineOf) -> None:
        """Keep track after ``current`` (the judged ``op``) was recorded in ``history``."""
        did = history.did
        top = self._top.get(did)
        if top is None:  # once per DID and batch: an op above all is found in O(1)
            top = max((s.seq for s in history.ops.values() if s is not current), default=0)
        self._top[did] = max(top, current.seq)
        departure = current.seq <= top
        if departure or current.status == REFUSED:  # the order matters: look it up now
            self._check_earlier_runs(history, current, line_of)
        order = self._order.get(did)
        if order is not None:
            if order[-1] != current.cid:  # (there already if turned to read order just now)
                order.append(current.cid)
        elif departure and not self._keeps_seq_order(history, current, op, line_of):
            self._to_read_order(did, sorted(_kept(history, current), key=lambda s: s.seq), current)
        bases = self._bases.get(did)
        # In log order an op's seq is above every base's: nothing to drop, found in O(1).
        if bases and current.seq <= self._highest[did]:
            for cid in [c for c, seq in bases.items() if seq >= current.seq]:
                del bases[cid]
        if current.status == REFUSED:
            self._bases.setdefault(did, {})[current.cid] = current.seq
            self._highest[did] = max(self._highest.get(did, 0), current.seq)

    def evidence(self, history: DidHistory, current: OpState, line_of: LineOf) -> dict[str, Any]:
        """The evidence of ``current``'s finding (just :meth:`note`\\ d): the DID's lines up to
        it — accepted ops and earlier refused ones (their positions listed in ``refused``) —
        or, when an earlier op of the DID was refused, only the lines after it with
        ``extends`` naming its finding (:mod:`auditor.evidence_chain`), so that a DID's lines
        are written once, not once per finding; ``read_order`` when in read order."""
        self._check_earlier_runs(history, current, line_of)
        kept = [s for s in history.ops.values() if s.status in (OK, REFUSED)]
        base = max(
            (s for s in kept if s.status == REFUSED and s.seq < current.seq),
            key=lambda s: s.seq,
            default=None,
        )
        if base is not None and any(s.seq == base.seq and s is not base for s in kept):
            base = None  # two ops at its seq (duplicate-seq): which comes first is unclear
        if base is not None and base.cid not in self._bases.get(history.did, ()):
            base = None  # its finding may lack a line read after it (see _bases)
        order = self._order.get(history.did)
        if order is None:
            after = 0 if base is None else base.seq
            ordered = sorted((s for s in kept if after < s.seq <= current.seq), key=lambda s: s.seq)
        else:
            start = 0 if base is None else _last_index(order, base.cid) + 1
            base = base if start else None
            by_cid = {s.cid: s for s in kept}
            ordered = [by_cid[c] for c in order[start:] if c in by_cid]
        out: list[str | None] = []
        refused: list[int] = []
        for s in ordered:
            if s.status == REFUSED and s is not current:
                refused.append(len(out))
            line = line_of(s)
            out.append(None if line is None else line.decode("utf-8", "replace"))
        evidence: dict[str, Any] = {"lines": out, "refused": refused}
        if base is not None:
            evidence = {"extends": {"seq": base.seq, "cid": base.cid}, **evidence}
        if order is not None:
            evidence["read_order"] = True
        return evidence

    def _keeps_seq_order(
        self, history: DidHistory, current: OpState, op: Operation, line_of: LineOf
    ) -> bool:
        """True if the DID's ops replayed in ``seq`` order are still judged as the auditor
        judged them in the order read, ``current`` (a departure) included (module
        docstring). The ops before it were, or the DID would be in read order."""
        later = [s for s in _kept(history, current) if s.seq >= current.seq]
        if any(s.status == OK for s in later):
            return False
        if op.prev in {s.cid for s in later}:
            return False  # refused in seq order for another reason than the auditor's
        if current.status == REFUSED:
            return True  # the accepted ops are the same in either order
        if len(later) > MAX_REJUDGED:
            return False
        for s in sorted(later, key=lambda s: s.seq):
            line = line_of(s)
            try:
                entry = None if line is None else parse_entry(line)
            except MalformedLine:
                entry = None
            if entry is None or entry.operation.cid != s.cid:
                return False
            if judge(history, history.did, entry.operation, s.created_ms).accepted:
                return False
        return True

    def _check_earlier_runs(self, history: DidHistory, current: OpState, line_of: LineOf) -> None:
        """Turn the DID to read order if an earlier run read its ops out of ``seq`` order
        (looked up once per DID, and only for a DID with an op at a :func:`regressed_seqs`
        value)."""
        did = history.did
        if not self._regressed or did in self._checked or did in self._order:
            return
        self._checked.add(did)
        kept = _kept(history, current)
        if not any(self._regressed_seq(s.seq) for s in kept):
            return
        size = state.get_meta_int(self._conn, "tree_size")
        ranked = sorted(kept, key=lambda s: self._rank(s, line_of, size))
        if any(a.seq >= b.seq for a, b in zip(ranked, ranked[1:], strict=False)):
            self._to_read_order(did, ranked, current)

    def _to_read_order(self, did: str, before: list[OpState], current: OpState) -> None:
        self._order[did] = [s.cid for s in before] + [current.cid]
        # Findings written before are in seq order: none is a prefix of the read order.
        self._bases.pop(did, None)
        self._highest.pop(did, None)

    def _regressed_seq(self, seq: int) -> bool:
        at = bisect.bisect_right(self._starts, seq) - 1
        return at >= 0 and seq <= self._regressed[at][1]

    def _rank(self, op: OpState, line_of: LineOf, size: int) -> tuple[int, int]:
        """Where ``op``'s line was read: ``(0, its leaf)`` when committed (in the tree of
        ``size`` leaves), else ``(1, seq)`` (read in this run after every committed leaf;
        before any departure in seq order)."""
        line = line_of(op)
        for leaf in leaves_of_seq(self._conn, op.seq):
            stored = stored_leaf_hash(self._conn, leaf, size)
            if stored is not None and (line is None or stored == leaf_hash(line)):
                return 0, leaf
        return 1, op.seq


def _kept(history: DidHistory, current: OpState) -> list[OpState]:
    """The DID's accepted and refused ops other than ``current``."""
    return [s for s in history.ops.values() if s is not current and s.status in (OK, REFUSED)]


def _last_index(order: list[str], cid: str) -> int:
    """The index of ``cid`` in ``order`` (-1: none), searched from the end (a base is
    recent)."""
    for index in range(len(order) - 1, -1, -1):
        if order[index] == cid:
            return index
    return -1
