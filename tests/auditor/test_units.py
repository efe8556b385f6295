"""Unit tests of the auditor's building blocks: tree storage, file reading, seq checks,
removal lists, strict line parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor import state
from auditor.errors import AuditFailed
from auditor.lines import MalformedLine, parse_entry, parse_header
from auditor.removals import load_removed_cids
from auditor.sequence import SeqTracker
from auditor.sources import FileSource
from auditor.treestore import TreeStore
from plc.codec import cid_for_cbor
from plc.tlog.hashing import leaf_hash
from plc.tlog.memory import MemoryHashStore
from plc.tlog.proof import consistency_proof
from plc.tlog.tree import stored_hash_index
from tests.helpers import VALID_LOGS, load_log

from .conftest import line_for


@pytest.mark.parametrize("sizes", [[1], [255, 1, 3], [256, 256], [700, 13, 600]])
def test_tree_store_matches_the_memory_tree(tmp_path: Path, sizes: list[int]) -> None:
    conn = state.connect(tmp_path / "s.sqlite3")
    tree = TreeStore(conn, 0)
    memory = MemoryHashStore()
    n = 0
    for size in sizes:
        leaves = [leaf_hash(str(n + i).encode()) for i in range(size)]
        tree.append(leaves)
        memory.append(leaves)
        n += size
        tree.flush()
    for probe in (1, 2, 255, 256, 257, n // 2, n):
        if probe <= n:
            assert tree.root(probe) == memory.root_hash(probe)
    assert tree.leaf_hash(n - 1) == memory.read_hashes([stored_hash_index(0, n - 1)])[0]
    assert consistency_proof(1, n, tree) == consistency_proof(1, n, memory)
    # Reopened at a smaller committed size: rows written beyond it are dropped, and
    # appending again gives the same tree as appending to the smaller tree.
    cut = max(1, n - 5)
    reopened = TreeStore(conn, cut)
    assert reopened.root() == memory.root_hash(cut)
    reopened.append([leaf_hash(b"x")])
    shorter = MemoryHashStore()
    shorter.append([leaf_hash(str(i).encode()) for i in range(cut)] + [leaf_hash(b"x")])
    assert reopened.root() == shorter.root_hash()


def test_file_source_positions_blank_lines_and_last_line(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a":1}\n\n  \n{"b":2}\n{"c":3}')
    source = FileSource(path)
    batches = list(source.batches(2))
    assert [[r.line for r in b] for b in batches] == [[b'{"a":1}', b'{"b":2}'], [b'{"c":3}']]
    assert [r.position for b in batches for r in b] == [0, 12, 20]
    assert source.offset == path.stat().st_size
    source.close()
    resumed = FileSource(path, 12)
    assert [r.line for b in resumed.batches(10) for r in b] == [b'{"b":2}', b'{"c":3}']
    resumed.close()


def test_seq_tracker_gaps_repeats_regressions_and_redelivery() -> None:
    tracker = SeqTracker()
    assert tracker.observe(1, b"1") == (True, [])
    keep, found = tracker.observe(3, b"3")
    assert keep and [f.cls for f in found] == ["seq-gap"] and found[0].severity == "misbehaviour"
    assert found[0].evidence["missing"] == [2, 2]
    assert [f.cls for f in tracker.observe(3, b"3x")[1]] == ["duplicate-seq"]
    assert [f.cls for f in tracker.observe(2, b"2")[1]] == ["seq-regression"]
    lenient = SeqTracker(allow_gaps=True, dedup_redelivery=True)
    lenient.observe(1, b"1")
    assert lenient.observe(5, b"5")[1][0].severity == "info"
    assert lenient.observe(5, b"5") == (False, [])  # redelivered: dropped silently
    assert lenient.observe(5, b"other")[1][0].cls == "duplicate-seq"


def test_removal_lists_json_and_text(tmp_path: Path) -> None:
    a, b, c = (cid_for_cbor(bytes([i])) for i in range(3))
    (tmp_path / "a.json").write_text(f'["{a}", "{b}"]')
    (tmp_path / "b.txt").write_text(f"# removed\n{c}\n\n{a}  # again\n")
    assert load_removed_cids([tmp_path / "a.json", tmp_path / "b.txt"]) == {a, b, c}
    (tmp_path / "bad.json").write_text('{"x": 1}')
    with pytest.raises(AuditFailed):
        load_removed_cids([tmp_path / "bad.json"])
    (tmp_path / "typo.txt").write_text(f"{a}\nbafyTypo\n")
    with pytest.raises(AuditFailed, match="Invalid CID"):
        load_removed_cids([tmp_path / "typo.txt"])


def test_a_list_of_dids_is_not_taken_for_a_list_of_cids() -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "go-didplc" / "testdata"
    with pytest.raises(AuditFailed, match="a list of op CIDs"):
        load_removed_cids([shared / "known_bad_dids.json"])


def test_known_bad_cids_list_loads() -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "go-didplc" / "testdata"
    cids = load_removed_cids([shared / "known_bad_cids.json"])
    assert len(cids) == 6027 and all(c.startswith("bafyrei") for c in cids)


def test_strict_line_parsing() -> None:
    entry = load_log(VALID_LOGS[0])[0]
    line = line_for(entry["did"], entry["operation"], 7, entry["createdAt"])
    parsed = parse_entry(line)
    assert (parsed.seq, parsed.did, parsed.claimed_cid) == (7, entry["did"], entry["cid"])
    assert parse_header(line).seq == 7
    for bad in (
        line.replace(b'"type":"sequenced_op"', b'"type":"indexed_op"'),
        line.replace(b'"seq":7', b'"seq":"7"'),
        line.replace(b'"seq":7', b'"seq":0'),
        line[:-1] + b',"extra":1}',
        line.replace(b".000Z", b"Z") if b".000Z" in line else line.replace(b'"did":"', b'"did":"x'),
        b"[1,2]",
        b"not json",
        # U+0000 (an escape in JSON text) and lone surrogates are refused in any op string;
        # the fast path looks for the escape in the line instead of re-encoding the op.
        line.replace(b'"at://', b'"\\u0000at://', 1),
        line.replace(b'"at://', b'"\\\\\\u0000at://', 1),
        line.replace(b'"at://', b'"\\ud800at://', 1),
        line.replace(b'"at://', b'"\xed\xa0\x80at://', 1),
        line.replace(b'"createdAt":"2', b'"createdAt":"\xd9\xa2', 1),
    ):
        assert bad != line
        with pytest.raises(MalformedLine):
            parse_entry(bad)
    # An escaped backslash followed by "u0000" is text, not U+0000: accepted by the schema.
    text = line.replace(b'"at://', b'"\\\\u0000at://', 1)
    assert parse_entry(text).operation.data["alsoKnownAs"][0].startswith("\\u0000")


def test_a_resumed_progress_bar_starts_where_the_last_run_stopped() -> None:
    from auditor.progress import ReplayProgress

    bar = ReplayProgress("sync", 1000, enabled=True, start=600)
    try:
        assert bar._progress is not None
        assert bar._progress.tasks[0].completed == 600  # the ETA covers the 400 left
        bar.advance(100)
        assert bar._progress.tasks[0].completed == 700 and bar.ops == 100
    finally:
        bar.close()


def test_the_progress_total_follows_the_log_and_what_was_read() -> None:
    """The bar's total is the newest checkpoint's size, never below what was read (a bar
    stuck at 100 % while following)."""
    from auditor.progress import ReplayProgress

    bar = ReplayProgress("sync", 100, enabled=False, start=40)
    bar.advance(100)  # 140 read: past the checkpoint the run started with
    assert bar.total == 140
    bar.set_total(300)  # a newer checkpoint
    assert bar.total == 300
    bar.set_total(100)  # an older one: not below what was read
    assert bar.total == 140
    bar.close()


def test_the_websockets_log_prints_nothing() -> None:
    """The library logs a keepalive timeout with its traceback; the follower reports each
    stream failure itself, in one line, so that log is not printed. (In a process of its
    own: pytest's log capture would hide what Python prints with no handler set up.)"""
    import subprocess
    import sys

    code = (
        "import logging, auditor.follow\n"
        "try:\n    raise TimeoutError('keepalive ping timeout')\n"
        "except TimeoutError:\n"
        "    logging.getLogger('websockets.client').error('keepalive failed', exc_info=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
