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
from auditor.findings import Finding
from auditor.lines import ExportEntry, MalformedLine, parse_entry
from auditor.sources import LineFetcher
from auditor.treestore import verified_line
from plc.codec import canonical_cid
from plc.document import format_data, format_did_document
from plc.operation import normalize


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


class SpotChecker:
    """Runs the checks of the module docstring against one directory."""

    def __init__(
        self, conn: sqlite3.Connection, client: DirectoryClient, fetcher: LineFetcher
    ) -> None:
        self._conn = conn
        self._client = client
        self._fetcher = fetcher
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
        entries: list[ExportEntry] = []
        lines: list[str] = []
        for r in accepted:
            line = verified_line(self._conn, self._fetcher, int(r[1]), r[4])
            try:
                entry = None if line is None else parse_entry(line)
            except MalformedLine:
                entry = None
            if line is None or entry is None or entry.operation.cid != r[0]:
                self.unserved.append(did)  # not fetched as it was read: no check
                return []
            entries.append(entry)
            lines.append(line.decode("utf-8"))
        if not entries:
            return []
        expected_log = [{"cid": str(r[0]), "nullified": bool(r[2])} for r in accepted]
        findings = self._audit_log(did, expected_log, lines)
        pairs = zip(reversed(entries), reversed(accepted), strict=True)
        head = next(entry for entry, row in pairs if not row[2])
        data = normalize(head.operation)
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
        shown = (
            [
                {"cid": e.get("cid"), "nullified": e.get("nullified")}
                for e in served
                if isinstance(e, dict)
            ]
            if isinstance(served, list)
            else None
        )
        evidence = {"url": self._client.base_url + path, "served": served, "lines": lines}
        if shown != expected:
            findings.append(
                Finding(
                    "served-state-mismatch",
                    f"{path} differs from the replayed audit log",
                    {**evidence, "expected": expected},
                    did=did,
                    scope=path + _digest(response.content),
                )
            )
        if isinstance(served, list):
            children: dict[str, int] = {}
            for e in served:
                op = e.get("operation") if isinstance(e, dict) else None
                if (
                    isinstance(op, dict)
                    and isinstance(op.get("prev"), str)
                    and not e.get("nullified")
                ):
                    prev = canonical_cid(op["prev"])  # the same op may be named in any base
                    children[prev] = children.get(prev, 0) + 1
            forked = sorted(prev for prev, n in children.items() if n > 1)
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
