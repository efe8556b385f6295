"""``plc-audit compare STATE_A STATE_B``: find a split view two auditors could not see alone.

A directory can show one history to auditor A and another to auditor B; each history is
internally valid, so each auditor alone finds nothing. Together they can prove it:

1. Checkpoints against checkpoints: two checkpoints of the same origin and tree size with
   different roots, one kept by A and one by B, are a split view on their own — whether or
   not anyone's entries reach that size. The evidence is the two signed notes (the
   ``split-view`` shape of 2., with an empty consistency proof: equal sizes).
2. Checkpoints against the other's entries: for each checkpoint B kept (size ``m``) that A's
   entries reach, A's root at ``m`` must equal it. If it does not, and A kept a matched
   checkpoint of size ``n >= m``, the evidence is golang.org/x/mod/sumdb's: both signed
   notes and a consistency proof from ``m`` to ``n`` computed from A's entries (RFC 6962
   §2.1.2) — it shows A's checkpoint at ``m`` has a root other than B's checkpoint, so the
   directory signed two inconsistent trees. And the same with A and B swapped.
3. Entries against entries: the two roots at the smaller of the two tree sizes must be
   equal; if not, the first differing leaf is found by binary search over the roots of
   prefixes (both trees are stored), and its two leaf hashes and ops are reported.

Which log a state is of is told by its checkpoints' origins (the log's signed name). Two
states with checkpoints but no origin in common, or one with checkpoints and one without, are
not known to be of one log: their differences prove nothing, so they are not compared
(:class:`DifferentLogs`, exit code 1) rather than reported as a split view. Only checkpoints
of an origin both states kept are checked (1. and 2.). Two states without any checkpoint (a
directory without ``/tlog/``, a file verified without ``--checkpoint``) carry nothing that
names their log: their entries are compared (3.) on the user's word that they are of one
directory, and such a finding rests on the auditors' reads (``check-evidence``:
unverifiable).

Both states are only read (opened with SQLite ``mode=ro``); a file that is not an auditor
state is refused (:func:`auditor.state.open_readonly`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor import state
from auditor.errors import AuditFailed
from auditor.findings import Finding
from auditor.tlogcheck import StoredCheckpoint, stored_checkpoints
from auditor.treestore import TreeStore
from plc.tlog.encoding import encode_b64
from plc.tlog.proof import consistency_proof


class DifferentLogs(AuditFailed):
    """The two states are not known to be of one log (see the module docstring)."""


class _Side:
    """One auditor's state, opened read-only.

    Raises:
        FileNotFoundError, sqlite3.DatabaseError: see :func:`auditor.state.open_readonly`.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.conn = state.open_readonly(path)
        try:
            size = state.get_meta_int(self.conn, "tree_size")
            self.tree = TreeStore(self.conn, size, readonly=True)
            self.checkpoints = stored_checkpoints(self.conn)
            self.source = state.get_meta(self.conn, "source")
            self.origins = {cp.origin for cp in self.checkpoints}
        except BaseException:
            self.conn.close()
            raise

    def covering(self, size: int, origin: str) -> StoredCheckpoint | None:
        """The smallest matched checkpoint of ``origin`` with at least ``size`` leaves."""
        matched = [
            cp
            for cp in self.checkpoints
            if cp.status == "matched" and cp.origin == origin and cp.tree_size >= size
        ]
        return min(matched, key=lambda cp: cp.tree_size, default=None)

    def op(self, leaf: int) -> dict[str, Any] | None:
        """The op this auditor stored for leaf index ``leaf``, or None."""
        seq = state.seq_of_leaf(self.conn, leaf)
        found = state.op_at_seq(self.conn, seq)
        return None if found is None else {"seq": seq, "did": found[0], "cid": found[1]}


def _same_size(a: _Side, b: _Side, seen: set[tuple[str, str]]) -> list[Finding]:
    """Checkpoints of A and B with the same origin and tree size and different roots."""
    by_size: dict[tuple[str, int], list[StoredCheckpoint]] = {}
    for cp in b.checkpoints:
        by_size.setdefault((cp.origin, cp.tree_size), []).append(cp)
    findings: list[Finding] = []
    for mine in a.checkpoints:
        for theirs in by_size.get((mine.origin, mine.tree_size), []):
            if theirs.root_hash == mine.root_hash:
                continue
            found = _split_view(
                f"A and B were shown two checkpoints of size {mine.tree_size} with "
                f"different roots ({encode_b64(mine.root_hash)} and "
                f"{encode_b64(theirs.root_hash)})",
                (mine.note, a.source),
                (theirs.note, b.source),
                mine.root_hash,
                [],
                seen,
            )
            findings.extend(found)
    return findings


def _split_view(
    message: str,
    covering: tuple[str | None, str | None],
    other: tuple[str, str | None],
    root_at_other_size: bytes,
    proof: list[str] | None,
    seen: set[tuple[str, str]],
) -> list[Finding]:
    """One ``split-view`` finding (``covering`` and ``other``: a checkpoint note and the
    auditor it came from), or none when the same pair of notes was reported already."""
    pair = tuple(sorted((other[0], covering[0] or "")))
    if pair in seen:
        return []
    seen.add((pair[0], pair[1]))
    evidence = {
        "covering_checkpoint": covering[0],
        "other_checkpoint": other[0],
        "root_at_other_size": encode_b64(root_at_other_size),
        "consistency_proof": proof,
        "covering_auditor": covering[1],
        "other_auditor": other[1],
    }
    return [Finding("split-view", message, evidence, scope=f"{pair[0]}\x00{pair[1]}")]


def _against(mine: _Side, theirs: _Side, seen: set[tuple[str, str]]) -> list[Finding]:
    """``theirs``' checkpoints against ``mine``'s entries."""
    findings: list[Finding] = []
    for cp in theirs.checkpoints:
        if cp.tree_size == 0 or cp.tree_size > mine.tree.tree_size:
            continue
        if cp.origin not in mine.origins:
            continue  # a checkpoint of a log mine did not read: says nothing of mine's entries
        root = mine.tree.root(cp.tree_size)
        if root == cp.root_hash:
            continue
        cover = mine.covering(cp.tree_size, cp.origin)
        proof: list[str] | None = None
        if cover is not None:
            proof = [
                encode_b64(h)
                for h in (
                    []
                    if cover.tree_size == cp.tree_size
                    else consistency_proof(cp.tree_size, cover.tree_size, mine.tree)
                )
            ]
        findings.extend(
            _split_view(
                f"{theirs.name}'s checkpoint of size {cp.tree_size} is not the tree "
                f"{mine.name} read (root {encode_b64(root)})",
                (None if cover is None else cover.note, mine.source),
                (cp.note, theirs.source),
                root,
                proof,
                seen,
            )
        )
    return findings


def _entries(a: _Side, b: _Side) -> list[Finding]:
    size = min(a.tree.tree_size, b.tree.tree_size)
    if size == 0 or a.tree.root(size) == b.tree.root(size):
        return []
    lo, hi = 0, size  # roots agree at lo, differ at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a.tree.root(mid) == b.tree.root(mid):
            lo = mid
        else:
            hi = mid
    leaf = lo
    return [
        Finding(
            "split-view",
            f"the two auditors read different entries from leaf {leaf} "
            f"(seq {state.seq_of_leaf(a.conn, leaf)}) on",
            {
                "leaf_index": leaf,
                "tree_size": size,
                "leaf_hash_a": encode_b64(a.tree.leaf_hash(leaf)),
                "leaf_hash_b": encode_b64(b.tree.leaf_hash(leaf)),
                "root_a": encode_b64(a.tree.root(size)),
                "root_b": encode_b64(b.tree.root(size)),
                "op_a": a.op(leaf),
                "op_b": b.op(leaf),
                "auditor_a": a.source,
                "auditor_b": b.source,
            },
            seq=state.seq_of_leaf(a.conn, leaf),
            scope="entries",
        )
    ]


def _same_log(a: _Side, b: _Side) -> None:
    """Refuse two states not known to be of one log (module docstring).

    Raises:
        DifferentLogs: no checkpoint origin in common, or only one side has checkpoints.
    """
    if (not a.origins and not b.origins) or a.origins & b.origins:
        return

    def kept(side: _Side) -> str:
        if not side.origins:
            return f"{side.name} kept no checkpoint"
        return f"{side.name} kept checkpoints of " + ", ".join(sorted(side.origins))

    hint = ""
    if not a.origins or not b.origins:
        hint = (
            "; a file of the same log can be compared once verified with a checkpoint of it "
            "(plc-audit verify FILE --checkpoint NOTE)"
        )
    raise DifferentLogs(
        f"cannot compare: the states are of different logs ({kept(a)}; {kept(b)}), so their "
        f"differences are no split view{hint}"
    )


def compare_states(path_a: Path, path_b: Path) -> list[Finding]:
    """Compare two auditors' state files: the ``split-view`` findings of the module
    docstring (empty: no split view).

    Raises:
        FileNotFoundError: a state file does not exist.
        sqlite3.DatabaseError: not a state file (neither file is changed).
        DifferentLogs: the states are not known to be of one log (nothing is compared).
    """
    a = _Side(path_a, "A")
    try:
        b = _Side(path_b, "B")
    except BaseException:
        a.conn.close()
        raise
    try:
        _same_log(a, b)
        seen: set[tuple[str, str]] = set()
        same = _same_size(a, b, seen)
        return same + _against(a, b, seen) + _against(b, a, seen) + _entries(a, b)
    finally:
        a.conn.close()
        b.conn.close()
