"""``seq`` checks over one export read (file, pages or stream), in read order.

Within one export (did:plc spec v0.3 "Export"; design.md decision 4):

- ``seq`` starts at 1 and rises by exactly 1. A skipped value is ``seq-gap``: misbehaviour
  for files and for directories that serve ``/tlog/`` (their log has no gaps), information
  with ``allow_gaps`` (plc.directory's ``seq`` may skip).
- The same ``seq`` again is ``duplicate-seq``; a lower one is ``seq-regression``.
- On the stream (``dedup_redelivery``), a message whose ``seq`` was already read and whose
  bytes are identical to a line read with that ``seq`` is a redelivery: dropped silently,
  never a leaf of the tree. Lines of this run still in flight are remembered (the last
  :data:`_RECENT`); older ones, and those of earlier runs, are looked up among the committed
  leaves (``committed``, :func:`auditor.treestore.check_line`), so a redelivery is
  recognised however far back it reaches.
- A ``seq`` above :data:`MAX_SEQ` is no ``seq`` at all (:func:`seq_out_of_range`,
  ``malformed-entry``): no log can hold it (a directory ordering by ``seq`` serves it after
  everything else, after any cursor), so the line is reported and dropped — not a leaf, the
  tracker does not move to it, no worker sees it — and reading it again in a later run
  changes nothing (the same finding, stored once).

Repeated ``(did, cid)`` and ops before their ``prev`` are per-DID checks (workers).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from auditor.findings import INFO, MISBEHAVIOUR, Finding, line_text
from plc.tlog.checkpoint import MAX_TREE_SIZE

_RECENT = 4096

MAX_SEQ = MAX_TREE_SIZE
"""The largest ``seq`` there can be: a log's largest tree size (C2SP tlog-checkpoint), a
PostgreSQL ``bigint`` and an SQLite INTEGER."""


def seq_out_of_range(seq: int, line: bytes) -> Finding:
    """The ``malformed-entry`` finding of a line whose ``seq`` is above :data:`MAX_SEQ`."""
    error = f"seq {seq} is larger than 2^63-1, the largest seq there can be"
    return Finding("malformed-entry", error, {**line_text(line), "error": error}, seq=seq)


class SeqTracker:
    """Follows ``seq`` across lines read.

    Args:
        last_seq: the largest ``seq`` read before (0 for a fresh read).
        last_line: the line that had it (None if unknown).
        allow_gaps: report gaps as information, not misbehaviour.
        dedup_redelivery: drop identical re-sent lines (stream mode).
        committed: ``(seq, line)`` -> True if ``line`` is a committed leaf read with
            ``seq`` (asked only for a ``seq`` at or below the last one, with
            ``dedup_redelivery``); None: only the lines remembered are compared.
    """

    def __init__(
        self,
        last_seq: int = 0,
        last_line: bytes | None = None,
        *,
        allow_gaps: bool = False,
        dedup_redelivery: bool = False,
        committed: Callable[[int, bytes], bool | None] | None = None,
    ) -> None:
        self.last_seq = last_seq
        self.last_line = last_line
        self.allow_gaps = allow_gaps
        self.dedup_redelivery = dedup_redelivery
        self.committed = committed
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        if last_line is not None and last_seq:
            self._recent[last_seq] = last_line

    def observe(self, seq: int, line: bytes) -> tuple[bool, list[Finding]]:
        """Check the next line's ``seq``.

        Returns:
            ``(keep, findings)``: ``keep`` is False for a stream redelivery and for a ``seq``
            above :data:`MAX_SEQ` (with its finding).
        """
        if seq > MAX_SEQ:
            return False, [seq_out_of_range(seq, line)]
        findings: list[Finding] = []
        previous = self._recent.get(seq)
        if seq <= self.last_seq:
            if self.dedup_redelivery and (
                previous == line or (self.committed is not None and self.committed(seq, line))
            ):
                return False, []
            last = self.last_line
            before = {"previous_line": last.decode("utf-8", "replace")} if last else {}
            if seq == self.last_seq:
                cls, what = "duplicate-seq", f"seq {seq} appears again"
            else:
                cls, what = "seq-regression", f"seq {seq} after seq {self.last_seq}"
            findings.append(
                Finding(
                    cls,
                    what,
                    {**before, **line_text(line)},
                    seq=seq,
                    scope=f"after:{self.last_seq}",
                )
            )
            self._remember(seq, line)
            return True, findings
        if seq != self.last_seq + 1:
            missing = [self.last_seq + 1, seq - 1]
            evidence = {"missing": missing, **line_text(line)}
            if self.last_line is not None:
                evidence["previous_line"] = self.last_line.decode("utf-8", "replace")
            findings.append(
                Finding(
                    "seq-gap",
                    f"seq {missing[0]}..{missing[1]} missing",
                    evidence,
                    seq=seq,
                    severity=INFO if self.allow_gaps else MISBEHAVIOUR,
                )
            )
        self.last_seq = seq
        self.last_line = line
        self._remember(seq, line)
        return True, findings

    def _remember(self, seq: int, line: bytes) -> None:
        self._recent[seq] = line
        self._recent.move_to_end(seq)
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
