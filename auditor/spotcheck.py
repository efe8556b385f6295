"""Spot checks: does what the directory serves for a DID match the replayed state?

For a sample of DIDs (random ones, plus every DID with a refused op), compare:

- ``GET /{did}/log/audit``: the CIDs, in order, and each op's ``nullified`` flag must equal
  the replay's (accepted ops only). Two served entries that share a ``prev`` and are both
  non-nullified are a ``fork``: the directory's own state shows two branches.
- ``GET /{did}/data``: must equal the data the core builds from the replayed head op
  (:func:`plc.document.format_data`); ``GET /{did}``: must mean what the core's DID document
  (:func:`plc.document.format_did_document`) does — the same DID, ``alsoKnownAs``, method
  fragments with the same public keys and services — in the current or the legacy key form
  (:func:`auditor.documents.same_document`; ``@context`` is not compared); a tombstoned
  DID must answer 404 to both.

Differences are ``served-state-mismatch``. The evidence carries the DID's export lines, so the
expected answers can be rebuilt from signed ops with the core alone; the lines are fetched
again and kept only with the bytes read during the replay
(:func:`auditor.treestore.verified_line`), else the DID is not checked.

A live directory keeps accepting ops after the last ``/export`` page was read, so a served
answer may be newer than the replay. Before a difference is reported, the export past the
synced cursor is read (:class:`ExportTail`) and, when it holds newer ops of the DID, the
answers are fetched again and compared with the replay of the DID's stored lines followed by
those newer lines (with the core's rules, :func:`plc.rules.validate_next_op`; a newer op the
rules refuse is left out — the next sync reports it). Only a difference that persists is a
finding; its evidence then carries the newer lines too (they are not in the auditor's tree
yet). This is repeated while newer ops of the DID keep appearing, up to
:data:`RECHECK_ROUNDS` times.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from auditor.client import DirectoryClient
from auditor.documents import same_document
from auditor.errors import AuditFailed
from auditor.evidence_served import forked_prevs, served_log
from auditor.findings import Finding
from auditor.lines import ExportEntry, MalformedLine, parse_entry
from auditor.sources import LineFetcher
from auditor.treestore import verified_line
from plc.audit_log import apply_prepared
from plc.document import format_data, format_did_document
from plc.errors import PlcError
from plc.operation import Operation, normalize
from plc.rules import LogEntry, validate_next_op
from plc.timestamps import parse_timestamp

RECHECK_ROUNDS = 3
"""Times a differing DID is compared again with newer ops of the export before the
difference is reported (the directory may accept more of its ops meanwhile)."""
MAX_TAIL_PAGES = 50
"""``/export`` pages (1000 lines each) read past the synced cursor in one spot-check phase
at most: plenty for the ops a live directory accepts while the spot checks run; past it a
difference is judged with the newer ops read so far."""

Log = list[tuple[Operation, bool]]
"""A DID's accepted ops in order, each with its ``nullified`` flag."""


def sample_dids(conn: sqlite3.Connection, count: int, rng: random.Random) -> list[str]:
    """Up to ``count`` distinct DIDs with accepted ops, picked at random ``seq`` positions
    (O(log n) per pick on the ``seq`` index)."""
    row = conn.execute("SELECT MAX(seq) FROM ops").fetchone()
    highest = int(row[0]) if row and row[0] is not None else 0
    picked: dict[str, None] = {}
    for _ in range(count * 4):
        if len(picked) >= count or highest == 0:
            break
        found = conn.execute(
            "SELECT did FROM ops WHERE seq >= ? AND status = 'ok' ORDER BY seq LIMIT 1",
            (rng.randint(1, highest),),
        ).fetchone()
        if found is not None:
            picked[str(found[0])] = None
    return list(picked)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"unparseable": body.decode("utf-8", "replace")}


class ExportTail:
    """The export past the synced cursor, read on demand: each :meth:`newer` reads on from
    where the last one stopped, until an empty page (or :data:`MAX_TAIL_PAGES` in all).

    Args:
        client: the directory.
        after: the largest ``seq`` the sync read.
    """

    def __init__(self, client: DirectoryClient, after: int) -> None:
        self._client = client
        self.after = after
        self._pages = 0
        self._by_did: dict[str, list[tuple[ExportEntry, str]]] = {}

    def newer(self, did: str) -> list[tuple[ExportEntry, str]]:
        """Read the export on, then return ``(entry, line text)`` of every strictly parsed
        line of ``did`` read past the synced cursor so far, in ``seq`` order.

        Raises:
            AuditFailed: the directory did not answer ``/export``.
        """
        while self._pages < MAX_TAIL_PAGES:
            lines = self._client.export_page(self.after)
            self._pages += 1
            highest = self.after
            for line in lines:
                try:
                    entry = parse_entry(line)
                except MalformedLine:
                    continue  # the next sync reports it
                if entry.seq > self.after:
                    highest = max(highest, entry.seq)
                    self._by_did.setdefault(entry.did, []).append((entry, line.decode("utf-8")))
            if highest == self.after:  # the end (or a page that does not advance)
                break
            self.after = highest
        return sorted(self._by_did.get(did, []), key=lambda pair: pair[0].seq)


def _replay(did: str, pairs: list[tuple[ExportEntry, str]]) -> tuple[Log, list[str]]:
    """The DID's log after replaying ``pairs`` with the core's rules, and the lines of the
    ops it accepted (refused ones are left out, as an honest directory leaves them out)."""
    history: list[LogEntry] = []
    kept: list[str] = []
    for entry, line in pairs:
        try:
            created = parse_timestamp(entry.created_at)
            prepared = validate_next_op(history, did, entry.operation, created)
        except (PlcError, ValueError):
            continue
        history = apply_prepared(history, prepared)
        kept.append(line)
    return [(e.operation, e.nullified) for e in history], kept


class SpotChecker:
    """Runs the checks of the module docstring against one directory.

    Args:
        conn: the state.
        client: the directory.
        fetcher: fetches the DIDs' lines again.
        tail: the export past the synced cursor, for differences newer ops may explain
            (None: every difference is reported as it is found).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        client: DirectoryClient,
        fetcher: LineFetcher,
        tail: ExportTail | None = None,
    ) -> None:
        self._conn = conn
        self._client = client
        self._fetcher = fetcher
        self._tail = tail
        self.unserved: list[str] = []
        """DIDs skipped because a line was no longer served as it was read (a directory
        that answers the one-line re-fetch differently must not switch the checks off
        unseen: the caller reports them)."""

    def check(self, did: str) -> list[Finding]:
        """Check one DID; DIDs under an announced removal or with lines that can no longer
        be fetched as read are skipped (the latter listed in :attr:`unserved`)."""
        rows = self._conn.execute(
            "SELECT cid, seq, nullified, status, position FROM ops WHERE did = ? ORDER BY seq",
            (did,),
        ).fetchall()
        if not rows or any(r[3] == "excused" for r in rows):
            return []
        accepted = [r for r in rows if r[3] == "ok"]
        stored: list[tuple[ExportEntry, str]] = []
        for r in accepted:
            line = verified_line(self._conn, self._fetcher, int(r[1]), r[4])
            try:
                entry = None if line is None else parse_entry(line)
            except MalformedLine:
                entry = None
            if line is None or entry is None or entry.operation.cid != r[0]:
                self.unserved.append(did)  # not fetched as it was read: no check
                return []
            stored.append((entry, line.decode("utf-8")))
        if not stored:
            return []
        log = [(e.operation, bool(r[2])) for (e, _), r in zip(stored, accepted, strict=True)]
        findings = self._checks(did, log, [line for _, line in stored])
        if not findings or self._tail is None:
            return findings
        # The directory may have accepted ops of this DID after the export was read: compare
        # again with them, while more keep appearing (see the module docstring).
        seen = 0
        for _ in range(RECHECK_ROUNDS):
            newer = self._tail.newer(did)
            if len(newer) == seen:
                break  # nothing newer than the last comparison explains the difference
            seen = len(newer)
            log, lines = _replay(did, stored + newer)
            findings = self._checks(did, log, lines) if log else findings
            if not findings:
                break
        return findings

    def _checks(self, did: str, log: Log, lines: list[str]) -> list[Finding]:
        """Fetch the DID's three answers and compare them with ``log`` (``lines``: its
        export lines, the evidence)."""
        expected_log = [{"cid": op.cid, "nullified": nullified} for op, nullified in log]
        findings = self._audit_log(did, expected_log, lines)
        head = next(op for op, nullified in reversed(log) if not nullified)
        data = normalize(head)
        expected_doc = None if data is None else format_did_document(did, data)
        expected_data = None if data is None else format_data(did, data)
        findings.extend(self._compare(f"/{did}", expected_doc, lines, same_document))
        findings.extend(self._compare(f"/{did}/data", expected_data, lines, _equal))
        return findings

    def _audit_log(
        self, did: str, expected: list[dict[str, Any]], lines: list[str]
    ) -> list[Finding]:
        path = f"/{did}/log/audit"
        response = self._client.get(path)
        if response.status_code >= 500:
            raise AuditFailed(f"GET {path} answered {response.status_code}")
        served = _json(response.content) if response.status_code == 200 else None
        findings: list[Finding] = []
        evidence = {"url": self._client.base_url + path, "served": served, "lines": lines}
        # Decided by the checker's own functions: check-evidence agrees on what they show.
        if served_log(served) != expected:
            findings.append(
                Finding(
                    "served-state-mismatch",
                    f"{path} differs from the replayed audit log",
                    {**evidence, "expected": expected},
                    did=did,
                    scope=path + _digest(response.content),
                )
            )
        forked = forked_prevs(served)
        if forked:
            findings.append(
                Finding(
                    "fork",
                    f"{path} shows two non-nullified children of {forked[0]}",
                    {**evidence, "expected": expected, "forked_prev": forked},
                    did=did,
                    scope=path + _digest(response.content),
                )
            )
        return findings

    def _compare(
        self,
        path: str,
        expected: dict[str, Any] | None,
        lines: list[str],
        same: Callable[[Any, dict[str, Any]], bool],
    ) -> list[Finding]:
        response = self._client.get(path)
        if response.status_code >= 500:
            raise AuditFailed(f"GET {path} answered {response.status_code}")
        if expected is None:
            ok = response.status_code == 404
            served: Any = {"status": response.status_code, "body": _json(response.content)}
            wanted: Any = {"status": 404}
        else:
            served = (
                _json(response.content)
                if response.status_code == 200
                else {
                    "status": response.status_code,
                    "body": _json(response.content),
                }
            )
            ok = response.status_code == 200 and same(served, expected)
            wanted = expected
        if ok:
            return []
        return [
            Finding(
                "served-state-mismatch",
                f"{path} differs from the state replayed from the export",
                {
                    "url": self._client.base_url + path,
                    "served": served,
                    "expected": wanted,
                    "lines": lines,
                },
                did=path.split("/")[1],
                scope=path + _digest(response.content),
            )
        ]


def _equal(served: Any, expected: dict[str, Any]) -> bool:
    return bool(served == expected)


def _digest(body: bytes) -> str:
    return ":" + hashlib.sha256(body).hexdigest()[:16]
