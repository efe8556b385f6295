"""Log checks: signed checkpoints against each other and against the entries read.

For every checkpoint the directory serves (C2SP tlog-checkpoint signed note):

1. Signature: with verifier keys (``--vkey``) the note must verify with the key named
   after its origin (:func:`plc.tlog.checkpoint.open_log_checkpoint`; a witness's key given
   too does not count), else ``checkpoint-signature-invalid``; without keys it is parsed
   unverified and recorded as such (not an error).
2. Consistency with the checkpoints kept for the same origin: the new one is settled
   (:mod:`auditor.checkpointpairs`: equal sizes, size 0, else a consistency proof, RFC 9162
   §2.1.4.2, from the entries read, the directory's ``/tlog/proof/consistency`` or its C2SP
   tiles) against its neighbours in size — the largest kept checkpoint not larger than it and
   the smallest larger one — not only against the last one seen: a smaller checkpoint served
   in between (a true prefix of a rewritten tree) must not hide that the new one contradicts
   a larger one kept before. A pair proven inconsistent is ``inconsistent-checkpoints``, with
   both notes, the root at the smaller size and the proof as evidence anyone can check with
   the log's key. A proof that is refused or does not verify against the larger root
   settles nothing and is never a finding: the pair is then settled by the root checks (3.)
   when the entries reach the checkpoints (a checkpoint whose root the entries give is
   consistent with every other such one), across runs if need be.
3. Root: once the entries read reach its tree size, the root recomputed from them
   (:class:`auditor.treestore.TreeStore`) must equal the checkpoint's. A checkpoint larger
   than what was read stays ``pending`` (also across runs) and is checked when the entries
   arrive, never reported early — unless the export already went past its size (the
   largest ``seq`` read is at least its size) with fewer entries: its entries were withheld
   and can no longer arrive in order (``checkpoint-entries-withheld``, naming the first
   ``seq`` never read). A mismatch is ``checkpoint-root-mismatch``; when the
   directory serves proofs, the first differing leaf is located by binary search over
   consistency proofs and proven with an inclusion proof (from ``/tlog/proof/inclusion``, or
   computed from the C2SP tiles if that answer does not verify), next to the line the
   auditor read with that leaf's ``seq`` (fetched again, and left out unless it still has
   the stored leaf hash: the directory cannot swap it; a ``seq`` never read is named
   instead). A checkpoint the entries contradict is also paired with the nearest ones of its
   origin that they give, on each side: the smallest at least as large (that checkpoint's
   tree is the entries', so they prove the two ``inconsistent-checkpoints``) and the largest
   smaller one (settled like 2., from the directory's proof or tiles of the bad one's tree).

Every checkpoint seen is kept in the state's ``checkpoints`` table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from auditor import state
from auditor.checkpointpairs import PairSettler, Signed, b64_list
from auditor.client import DirectoryClient, ProofUnavailable
from auditor.errors import DirectoryUnreachable
from auditor.findings import Finding
from auditor.sources import LineFetcher
from auditor.treestore import TreeStore, leaves_of_seq, verified_line
from plc.errors import PlcError, VerificationError, echo
from plc.tlog.checkpoint import Checkpoint, open_log_checkpoint, parse_checkpoint_unsafe
from plc.tlog.encoding import encode_b64
from plc.tlog.hashing import leaf_hash
from plc.tlog.note import Verifier
from plc.tlog.proof import (
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from plc.tlog.tiles import TileHashReader
from plc.tlog.tree import stored_hash_index


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A row of the ``checkpoints`` table."""

    id: int
    origin: str
    tree_size: int
    root_hash: bytes
    note: str
    signature: str
    status: str


def stored_checkpoints(conn: sqlite3.Connection) -> list[StoredCheckpoint]:
    """Every checkpoint kept, in the order first seen."""
    rows = conn.execute(
        "SELECT id, origin, tree_size, root_hash, note, signature, status FROM checkpoints "
        "ORDER BY id"
    ).fetchall()
    return [
        StoredCheckpoint(int(r[0]), str(r[1]), int(r[2]), bytes(r[3]), str(r[4]), r[5], r[6])
        for r in rows
    ]


def _neighbours(kept: Sequence[Signed], size: int) -> list[Signed]:
    """Of ``kept`` (in the order first seen), the largest checkpoint of at most ``size``
    leaves and the smallest larger one, the latest seen of a size (none, one or two)."""
    below = [cp for cp in kept if cp.size <= size]
    above = [cp for cp in kept if cp.size > size]
    found: list[Signed] = []
    if below:
        top = max(cp.size for cp in below)
        found.append([cp for cp in below if cp.size == top][-1])
    if above:
        bottom = min(cp.size for cp in above)
        found.append([cp for cp in above if cp.size == bottom][-1])
    return found


class TlogChecker:
    """Applies the checks of the module docstring, writing to the state connection.

    Args:
        conn: the state (the coordinator's connection; callers commit).
        tree: the entries' tree.
        verifiers: the log's verifier keys; empty = record signatures as unverified.
        client: the directory, for proofs (None for offline files).
        fetcher: fetches entry lines again for evidence.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        tree: TreeStore,
        verifiers: Sequence[Verifier],
        client: DirectoryClient | None,
        fetcher: LineFetcher | None,
    ) -> None:
        self._conn = conn
        self._tree = tree
        self._verifiers = list(verifiers)
        self._client = client
        self._fetcher = fetcher
        self._pairs = PairSettler(tree, client)

    def foreign_key_names(self, note: str) -> str | None:
        """Why ``--vkey`` cannot be this log's key, or None: a usage error, not the
        directory's misbehaviour. Said when the note parses, its origin names none of the
        verifier keys, and no checkpoint of an origin the keys name was ever kept (a log that
        was audited under these keys and then serves another origin is a finding instead)."""
        if not self._verifiers:
            return None
        try:
            origin = parse_checkpoint_unsafe(note).origin
        except PlcError:  # not a checkpoint: the signature check reports it
            return None
        names = sorted({v.name for v in self._verifiers})
        if origin in names:
            return None
        marks = ",".join("?" * len(names))
        row = self._conn.execute(
            f"SELECT 1 FROM checkpoints WHERE origin IN ({marks}) LIMIT 1", names
        ).fetchone()
        if row is not None:
            return None
        return (
            f"--vkey is for the log {', '.join(names)}, but the directory's checkpoints are "
            f"of the log {echo(origin)}: give that log's verifier key (plc serve prints it)"
        )

    def verify_stored(self) -> list[Finding]:
        """With verifier keys: check the signatures of checkpoints kept unverified by earlier
        runs (marking them ``verified``); a failure is ``checkpoint-signature-invalid``."""
        if not self._verifiers:
            return []
        findings: list[Finding] = []
        for cp in stored_checkpoints(self._conn):
            if cp.signature != "unverified":
                continue
            try:
                open_log_checkpoint(cp.note, self._verifiers)
            except VerificationError as exc:
                findings.append(self._bad_signature(cp.note, exc))
                continue
            self._conn.execute(
                "UPDATE checkpoints SET signature = 'verified' WHERE id = ?", (cp.id,)
            )
        return findings

    def _bad_signature(self, note: str, exc: VerificationError) -> Finding:
        return Finding(
            "checkpoint-signature-invalid",
            f"checkpoint does not verify: {exc.message}",
            {
                "checkpoint": note,
                "vkey": [v.key_text for v in self._verifiers],
                "error": exc.message,
            },
            scope=note,
        )

    def observe(self, note: str) -> list[Finding]:
        """Check and keep a checkpoint note the directory served (steps 1 and 2).

        A consistency proof the directory refuses or serves wrongly is never a finding by
        itself (see the module docstring): nothing is raised for it.
        """
        known = self._conn.execute("SELECT 1 FROM checkpoints WHERE note = ?", (note,)).fetchone()
        if known is not None:
            return []
        signature = "verified" if self._verifiers else "unverified"
        try:
            if self._verifiers:
                checkpoint = open_log_checkpoint(note, self._verifiers)
            else:
                checkpoint = parse_checkpoint_unsafe(note)
        except VerificationError as exc:
            return [self._bad_signature(note, exc)]
        findings = self._consistency(note, checkpoint)
        self._conn.execute(
            "INSERT INTO checkpoints (origin, tree_size, root_hash, note, signature, status) "
            "VALUES (?, ?, ?, ?, ?, 'pending')",
            (checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash, note, signature),
        )
        return findings

    def _consistency(self, note: str, new: Checkpoint) -> list[Finding]:
        """The new checkpoint against its neighbours among those kept of its origin: the
        largest not larger than it and the smallest larger one (the latest seen of a size).
        Not only the last one seen: a smaller, honest-looking checkpoint served in between
        must not launder an inconsistency with a larger one kept before. Kept checkpoints
        that agree form one chain of prefixes, so agreeing with both neighbours is agreeing
        with all of them."""
        rows = self._conn.execute(
            "SELECT note, tree_size, root_hash FROM checkpoints WHERE origin = ? ORDER BY id",
            (new.origin,),
        ).fetchall()
        kept = [Signed(str(r[0]), int(r[1]), bytes(r[2])) for r in rows]
        fresh = Signed(note, new.tree_size, new.root_hash)
        findings: list[Finding] = []
        for old in _neighbours(kept, new.tree_size):
            findings += self._pairs.settle(old, fresh)
        return findings

    def check_pending(self, tree_size: int, last_seq: int = 0) -> list[Finding]:
        """Compare every pending checkpoint of at most ``tree_size`` leaves with the root of
        the entries read; mark it ``matched`` or ``mismatch``. A larger pending checkpoint
        whose size ``last_seq`` (the largest ``seq`` the committed entries reached) already
        reaches is settled too (``mismatch``, ``checkpoint-entries-withheld``): its leaves are
        the lines with ``seq`` 1 to its size, all of which were due before ``last_seq``, yet
        fewer were read; no later line can supply them in order (a lower ``seq`` after
        ``last_seq`` is a regression), so waiting for them would leave it pending forever."""
        findings: list[Finding] = []
        settled: set[int] = set()  # ids of the checkpoints settled now
        for cp in stored_checkpoints(self._conn):
            if cp.status != "pending":
                continue
            if cp.tree_size > tree_size:
                if last_seq >= cp.tree_size:
                    self._conn.execute(
                        "UPDATE checkpoints SET status = 'mismatch' WHERE id = ?", (cp.id,)
                    )
                    findings.append(self._withheld(cp, tree_size, last_seq))
                    settled.add(cp.id)
                continue
            computed = self._tree.root(cp.tree_size)
            status = "matched" if computed == cp.root_hash else "mismatch"
            self._conn.execute("UPDATE checkpoints SET status = ? WHERE id = ?", (status, cp.id))
            if status == "mismatch":
                findings.append(self._root_mismatch(cp, computed))
            settled.add(cp.id)
        return findings + (self._pair_mismatches(settled) if settled else [])

    def _pair_mismatches(self, settled: set[int]) -> list[Finding]:
        """Each checkpoint the entries contradict against the nearest checkpoints of its
        origin whose root they give, on each side: the smallest at least as large (its tree
        is the entries', so the entries prove the pair inconsistent) and the largest smaller
        one (the bad checkpoint's own tree, from the directory's proof or tiles, may not
        extend it; this pairing retries what :meth:`_consistency` could not settle when the
        bad one was first seen, such as a refused proof). Any other checkpoint the entries
        give is a prefix of one of these two, so it adds nothing. Only pairs with a member
        in ``settled`` (ids settled by this call) are tried: the others were tried when
        their last member was settled."""
        stored = stored_checkpoints(self._conn)
        findings: list[Finding] = []
        for bad in (cp for cp in stored if cp.status == "mismatch"):
            good = [cp for cp in stored if cp.origin == bad.origin and cp.status == "matched"]
            above = [cp for cp in good if cp.tree_size >= bad.tree_size]
            below = [cp for cp in good if cp.tree_size < bad.tree_size]
            partners = []
            if above:
                partners.append(min(above, key=lambda cp: (cp.tree_size, cp.id)))
            if below:
                partners.append(max(below, key=lambda cp: (cp.tree_size, -cp.id)))
            for partner in partners:
                if bad.id not in settled and partner.id not in settled:
                    continue
                findings += self._pairs.settle(
                    Signed(bad.note, bad.tree_size, bad.root_hash),
                    Signed(partner.note, partner.tree_size, partner.root_hash),
                )
        return findings

    def _root_mismatch(self, cp: StoredCheckpoint, computed: bytes) -> Finding:
        leaf: dict[str, Any] | None = None
        if self._client is not None:
            try:
                leaf = self._locate(cp)
            except (ProofUnavailable, DirectoryUnreachable, PlcError):
                # best effort: the finding stands without the located leaf (an outage here
                # must not undo the commit it is part of, which ended a --follow run)
                leaf = None
        return Finding(
            "checkpoint-root-mismatch",
            f"the first {cp.tree_size} entries read have root {encode_b64(computed)}, the "
            f"checkpoint says {encode_b64(cp.root_hash)}",
            {"checkpoint": cp.note, "computed_root": encode_b64(computed), "leaf": leaf},
            scope=cp.note,
        )

    def _withheld(self, cp: StoredCheckpoint, tree_size: int, last_seq: int) -> Finding:
        """``checkpoint-entries-withheld``: the export went past the checkpoint's size
        without serving all its entries; names the first ``seq`` never read, with the
        checkpoint's own leaf there and its inclusion proof when the directory gives one."""
        unserved = state.first_unread_seq(self._conn, tree_size)
        leaf: dict[str, Any] | None = None
        if self._client is not None and unserved <= cp.tree_size:
            try:
                directory_leaf, inclusion = self._proven_leaf(unserved - 1, cp)
            except (ProofUnavailable, DirectoryUnreachable, PlcError):  # best effort, as above
                pass
            else:
                leaf = {
                    "leaf_index": unserved - 1,
                    "directory_leaf_hash": encode_b64(directory_leaf),
                    "inclusion_proof": b64_list(inclusion),
                }
        return Finding(
            "checkpoint-entries-withheld",
            f"the export reached seq {last_seq} with {tree_size} entries, fewer than the "
            f"{cp.tree_size} of the checkpoint; it never served seq {unserved}",
            {
                "checkpoint": cp.note,
                "entries_read": tree_size,
                "last_seq": last_seq,
                "unserved_seq": unserved,
                "leaf": leaf,
            },
            scope=cp.note,
        )

    def _proven_leaf(self, index: int, cp: StoredCheckpoint) -> tuple[bytes, list[bytes]]:
        """The checkpoint's leaf hash at ``index`` and its inclusion proof, verified against
        its root: from ``/tlog/proof/inclusion``, else computed from the C2SP tiles.

        Raises:
            ProofUnavailable, PlcError: neither source gives a proof that verifies.
        """
        assert self._client is not None
        size = cp.tree_size
        try:
            leaf, inclusion = self._client.inclusion_proof(index + 1, size)
            verify_inclusion(leaf, index, size, inclusion, cp.root_hash)
        except (ProofUnavailable, VerificationError):
            # The proof endpoint's answer does not verify: read the checkpoint's own leaf
            # and its proof from the tiles of the tree instead (C2SP tlog-tiles).
            tiles = TileHashReader(size, self._client.tile)
            leaf = tiles.read_hashes([stored_hash_index(0, index)])[0]
            inclusion = inclusion_proof(index, size, tiles)
            verify_inclusion(leaf, index, size, inclusion, cp.root_hash)
        return leaf, inclusion

    def _locate(self, cp: StoredCheckpoint) -> dict[str, Any] | None:
        """Find and prove the first leaf where the entries read differ from the checkpoint's
        tree (binary search over the directory's consistency proofs)."""
        assert self._client is not None
        size = cp.tree_size
        lo, hi = 0, size  # prefix lo agrees with the checkpoint's tree, prefix hi does not
        prefix: dict[str, Any] | None = None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            proof = self._client.consistency_proof(mid, size)
            root = self._tree.root(mid)
            try:
                verify_consistency(mid, size, root, cp.root_hash, proof)
            except VerificationError:
                hi = mid
            else:
                lo = mid
                prefix = {"tree_size": mid, "root": encode_b64(root), "proof": b64_list(proof)}
        directory_leaf, inclusion = self._proven_leaf(lo, cp)
        if directory_leaf == self._tree.leaf_hash(lo):
            return None  # the search was led astray: this leaf is not where they differ
        # Leaf lo of the log is the line with seq lo + 1; the line read as leaf lo may have
        # another seq (after a gap or a repeat), and only a line of that seq contradicts it.
        seq = lo + 1
        line, unserved = self._line_of_seq(seq, directory_leaf)
        return {
            "leaf_index": lo,
            "line": line,
            "unserved_seq": seq if unserved else None,
            "read_seq": state.seq_of_leaf(self._conn, lo),
            "stored_leaf_hash": encode_b64(self._tree.leaf_hash(lo)),
            "directory_leaf_hash": encode_b64(directory_leaf),
            "inclusion_proof": b64_list(inclusion),
            "consistent_prefix": prefix,
        }

    def _line_of_seq(self, seq: int, directory_leaf: bytes) -> tuple[str | None, bool]:
        """``(line, unserved)``: the line read with ``seq``, fetched again, when it is not the
        checkpoint's leaf ``directory_leaf`` — None unless the bytes served now are the ones
        read (:func:`auditor.treestore.verified_line`) and UTF-8; ``unserved`` is True when no
        line with ``seq`` was read at all (the export skipped it)."""
        committed = state.get_meta_int(self._conn, "tree_size")
        if not any(leaf < committed for leaf in leaves_of_seq(self._conn, seq)):
            return None, True
        if self._fetcher is None:
            return None, False
        stored = state.op_at_seq(self._conn, seq)
        line = verified_line(self._conn, self._fetcher, seq, stored[2] if stored else None)
        if line is None or leaf_hash(line) == directory_leaf:
            return None, False
        try:
            return line.decode("utf-8"), False
        except UnicodeDecodeError:
            return None, False
