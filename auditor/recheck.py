"""Re-reading the prefix a resumed run already verified (a second read of the export).

Before continuing, a resumed run reads the lines it verified before again and compares each
leaf hash with the one stored (same leaves ⇔ same root over the prefix). The differing
positions are then explained op by op (an op is identified by ``(did, cid)``), so that one
removal is one finding, not a shifted tail:

- ``changed``: the same op at the same position with different bytes, or a line the first
  read never had served with the ``seq`` of a position (reported at that position) — which
  includes an op that moved and whose line is not the leaf stored for it (another
  ``createdAt``, say): it is reported at the position of the ``seq`` it names, where
  ``plc-audit check-evidence`` verifies it against a signed checkpoint;
- ``missing``: an op of the first read that the second read does not serve at all;
- ``duplicated``: an op served at a second position;
- ``reordered``: an op served out of order (not on a longest order-preserving subsequence
  of the ops both reads have);
- ``inserted``: an op the first read never had, served with a ``seq`` within the prefix
  that no position it differs at has (a seq the first read skipped, or one served twice).

A position that differs only because ops before it went missing (or were added) is no
finding: the op it held is served, in order, elsewhere, with the very bytes read (the leaf
hash stored for it; or, from a directory that renumbered the ops, those bytes but for the
value of ``seq``). An op the first read never had whose
``seq`` is past the prefix is a newer op moved into the prefix's positions by such a shift;
the replay reads it after the prefix. The count of differing positions is of those that need
a finding; the shifted ones are counted apart (:attr:`RecheckResult.shifted`).

Evidence (``export-rewritten``) names the position, the stored leaf hash and the line now
served there, and — when a checkpoint the state matched covers the position — an inclusion
proof of the stored leaf under that signed checkpoint, computed from the stored tree.
At most :data:`MAX_FINDINGS` findings are reported per re-read; the summary counts the rest.
"""

from __future__ import annotations

import bisect
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from auditor import state
from auditor.findings import Finding
from auditor.tlogcheck import stored_checkpoints
from auditor.treestore import TreeStore, leaves_of_seq
from plc.tlog.encoding import encode_b64
from plc.tlog.hashing import leaf_hash
from plc.tlog.proof import inclusion_proof

MAX_FINDINGS = 100
WINDOW = 100_000
"""Most differing positions examined (and extra lines read past the prefix)."""

Identity = tuple[str, str]


@dataclass
class RecheckResult:
    """Outcome of a re-read: findings (capped), leaves compared, positions that differ (and
    need a finding), positions that differ only because ops moved (a shift after ops went
    missing or were added), and the leaf index just after the last prefix line read."""

    findings: list[Finding] = field(default_factory=list)
    compared: int = 0
    differing: int = 0
    shifted: int = 0
    read_upto: int = 0


def _object(line: bytes | None) -> dict[str, Any]:
    """A served line as a JSON object; empty when there is none or it is not one."""
    if line is None:
        return {}
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _identity(line: bytes | None) -> Identity | None:
    """``(did, cid)`` a line names, or None."""
    value = _object(line)
    did, cid = value.get("did"), value.get("cid")
    return (did, cid) if isinstance(did, str) and isinstance(cid, str) else None


def _seq(line: bytes | None) -> int | None:
    """The ``seq`` a line names, or None (not JSON, no integer ``seq``)."""
    seq = _object(line).get("seq")
    return seq if type(seq) is int else None


def _newer_tail(differ: dict[int, bytes | None], read_upto: int, last_seq: int) -> int:
    """First position of the run that ends the re-read prefix with ops newer than it (``seq``
    past ``last_seq``): where ops that follow a removal move. When ``differ`` was capped the
    run is taken to reach on past the last position it holds."""
    end = max(differ) if len(differ) >= WINDOW else read_upto - 1
    start = end + 1
    while start - 1 in differ and (_seq(differ[start - 1]) or 0) > last_seq:
        start -= 1
    return start


def _increasing(positions: list[int]) -> set[int]:
    """Indexes (into ``positions``) of one longest strictly increasing subsequence."""
    tails: list[int] = []
    tail_at: list[int] = []
    parent = [-1] * len(positions)
    for i, value in enumerate(positions):
        k = bisect.bisect_left(tails, value)
        if k == len(tails):
            tails.append(value)
            tail_at.append(i)
        else:
            tails[k] = value
            tail_at[k] = i
        parent[i] = tail_at[k - 1] if k else -1
    keep: set[int] = set()
    i = tail_at[-1] if tail_at else -1
    while i >= 0:
        keep.add(i)
        i = parent[i]
    return keep


class PrefixChecker:
    """Compares a re-read with the stored prefix (leaves ``0 .. tree.tree_size - 1``)."""

    def __init__(self, conn: sqlite3.Connection, tree: TreeStore) -> None:
        self._conn = conn
        self._tree = tree
        self._covering = sorted(
            (cp for cp in stored_checkpoints(conn) if cp.status == "matched"),
            key=lambda cp: cp.tree_size,
        )

    def check(self, lines: Iterable[tuple[int, bytes]], *, whole: bool) -> RecheckResult:
        """Compare ``(position, line)`` pairs in ascending position order.

        Args:
            lines: the re-read; pairs past the prefix (at most :data:`WINDOW`) are used only
                to recognise ops that moved.
            whole: ``lines`` started at position 0 (a full re-read): prefix positions never
                given are compared as "nothing served".
        """
        result = RecheckResult()
        differ: dict[int, bytes | None] = {}
        beyond: list[tuple[Identity, bytes]] = []  # (op, line) read past the prefix
        size = self._tree.tree_size
        for index, line in lines:
            if index >= size:
                if not differ or len(beyond) >= WINDOW:
                    break
                found = _identity(line)
                if found is not None:
                    beyond.append((found, line))
                continue
            result.read_upto = index + 1
            result.compared += 1
            if leaf_hash(line) != self._tree.leaf_hash(index) and len(differ) < WINDOW:
                differ[index] = line
        if whole:
            for index in range(result.read_upto, min(size, result.read_upto + WINDOW)):
                differ[index] = None
        explained = self._explain(differ, beyond, result.read_upto)
        result.differing = len(explained)
        result.shifted = len(differ) - len(explained)
        for index, kind, served in explained:
            if len(result.findings) < MAX_FINDINGS:
                result.findings.append(self._finding(index, kind, served))
        return result

    def _stored(self, index: int) -> Identity | None:
        row = self._conn.execute(
            "SELECT did, cid FROM ops WHERE seq = ? LIMIT 1",
            (state.seq_of_leaf(self._conn, index),),
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def _stored_seq(self, op: Identity) -> int | None:
        row = self._conn.execute("SELECT seq FROM ops WHERE did = ? AND cid = ?", op).fetchone()
        return None if row is None else int(row[0])

    def _explain(
        self,
        differ: dict[int, bytes | None],
        beyond: list[tuple[Identity, bytes]],
        read_upto: int,
    ) -> list[tuple[int, str, bytes | None]]:
        """``(position, kind, served line)`` for each differing position that needs a
        finding (``read_upto``: the position after the last prefix line re-read)."""
        positions = sorted(differ)
        stored = {i: self._stored(i) for i in positions}
        served = {i: _identity(differ[i]) for i in positions}
        stored_at = {op: i for i, op in stored.items() if op is not None}
        counts = Counter(op for op in served.values() if op is not None)
        counts.update(op for op, _ in beyond)
        kinds: dict[int, str] = {}
        lines: dict[int, bytes | None] = dict(differ)
        in_order: list[tuple[int, int]] = []  # (served position, stored position)
        first_seen: set[Identity] = set()
        size = self._tree.tree_size
        last_seq = state.seq_of_leaf(self._conn, size - 1) if size else 0
        unknown: list[int] = []  # positions serving an op the first read never had
        tail = _newer_tail(differ, read_upto, last_seq)
        for i in positions:
            op = served[i]
            if op is None:
                continue
            if op == stored[i]:
                kinds[i] = "changed"
            elif op in first_seen or (op not in stored_at and self._stored_seq(op) is not None):
                kinds[i] = "duplicated"  # served again, or also at its own (matching) position
            elif op not in stored_at:
                unknown.append(i)
            else:
                in_order.append((i, stored_at[op]))
            first_seen.add(op)
        keep = _increasing([stored_pos for _, stored_pos in in_order])
        for k, (i, _) in enumerate(in_order):
            if k not in keep:
                kinds[i] = "reordered"
        # An op that moved only moved if its line is the one read (the leaf stored where it
        # was): other bytes are a rewrite, judged like a line the first read never had (by
        # the seq it names, so that its evidence names the leaf of that seq).
        for i, j in in_order:
            if not self._moved_as_read(differ[i] or b"", j):
                self._place_unknown(i, differ[i], last_seq, i >= tail, kinds, lines)
        for op, line in beyond:
            was = stored_at.get(op)
            if was is not None and not self._moved_as_read(line, was):
                self._place_moved_out(was, line, kinds, lines)
        for i in unknown:
            self._place_unknown(i, differ[i], last_seq, i >= tail, kinds, lines)
        for i in positions:
            op = stored[i]
            if i not in kinds and (op is None or counts[op] == 0):
                kinds[i] = "missing"
        return [(i, kind, lines.get(i)) for i, kind in sorted(kinds.items())]

    def _place_unknown(
        self,
        index: int,
        line: bytes | None,
        last_seq: int,
        in_tail: bool,
        kinds: dict[int, str],
        lines: dict[int, bytes | None],
    ) -> None:
        """Classify an op the first read never had, served at ``index``, by the ``seq`` it
        names (a shift moves lines, never their ``seq``): at the seq of ``index``, or of
        another differing position not already explained, it changed that position; past
        the prefix and ``in_tail`` (the run of such ops that ends the re-read prefix) it is
        a newer op the shift moved here (no finding: read after the prefix); any other seq,
        a newer one before older ones included, is an insertion."""
        seq = _seq(line)
        if seq is None or seq == state.seq_of_leaf(self._conn, index):
            kinds[index] = "changed"
            return
        if seq > last_seq:
            if not in_tail:
                kinds[index] = "inserted"
            return
        at = [j for j in leaves_of_seq(self._conn, seq) if j < self._tree.tree_size]
        target = next((j for j in at if j in lines and j not in kinds), None)
        if target is not None:
            kinds[target] = "changed"
            lines[target] = line
        elif index not in kinds:
            kinds[index] = "inserted"

    def _moved_as_read(self, line: bytes, stored: int) -> bool:
        """True if ``line``, an op served away from its position ``stored``, is the line read
        there: its leaf hash is the stored one, or would be with the ``seq`` read there in
        place of the one it names (a directory that renumbered the ops after a removal moved
        them, it did not change them; the removal is the finding)."""
        expected = self._tree.leaf_hash(stored)
        if leaf_hash(line) == expected:
            return True
        seq, then = _seq(line), state.seq_of_leaf(self._conn, stored)
        if seq is None or seq == then:
            return False
        token = re.compile(rb'("seq"\s*:\s*)%d(?![0-9.eE])' % seq)
        for found in token.finditer(line):  # any one of them may be the top-level key
            renumbered = line[: found.end(1)] + b"%d" % then + line[found.end() :]
            if leaf_hash(renumbered) == expected:
                return True
        return False

    def _place_moved_out(
        self, stored: int, line: bytes, kinds: dict[int, str], lines: dict[int, bytes | None]
    ) -> None:
        """An op of position ``stored`` now served past the prefix with other bytes: when the
        line still names that position's ``seq`` (and nothing else explains the position),
        the position ``changed`` to it; any other ``seq`` is a newer line the replay reads
        after the prefix."""
        if stored in kinds or _seq(line) != state.seq_of_leaf(self._conn, stored):
            return
        kinds[stored] = "changed"
        lines[stored] = line

    def _finding(self, index: int, kind: str, line: bytes | None) -> Finding:
        finding = export_rewritten(
            index,
            state.seq_of_leaf(self._conn, index),
            kind,
            self._tree.leaf_hash(index),
            line,
            "on a second read of the export",
        )
        cover = next((cp for cp in self._covering if cp.tree_size > index), None)
        if cover is not None:
            proof = inclusion_proof(index, cover.tree_size, self._tree)
            finding.evidence["checkpoint"] = cover.note
            finding.evidence["inclusion_proof"] = [encode_b64(h) for h in proof]
        return finding


def export_rewritten(
    index: int, seq: int, kind: str, stored: bytes, line: bytes | None, how: str
) -> Finding:
    """The ``export-rewritten`` finding of leaf ``index`` (read with ``seq``, its hash
    ``stored``) that the directory now serves as ``line`` (None: not at all): ``kind`` is
    ``changed``, ``missing``, ``duplicated``, ``reordered`` or ``inserted``, ``how`` ends the
    message. Its key (``scope``) depends on the two leaves only, so a difference found when
    following the stream and again on the next re-read is stored once. Evidence without a
    checkpoint; the caller adds one and its inclusion proof when it has them."""
    evidence: dict[str, Any] = {
        "kind": kind,
        "leaf_index": index,
        "stored_leaf_hash": encode_b64(stored),
        "served_line": None if line is None else line.decode("utf-8", "replace"),
        "checkpoint": None,
        "inclusion_proof": None,
    }
    served = "" if line is None else encode_b64(leaf_hash(line))
    return Finding(
        "export-rewritten",
        f"position {index} (seq {seq}): {kind} {how}",
        evidence,
        seq=seq,
        scope=f"{kind}:{encode_b64(stored)}:{served}",
    )
