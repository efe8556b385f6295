"""Readable summaries and the findings output of a state file.

- :func:`summarize` reads a state into a :class:`Summary` (counts, tree, checkpoints,
  findings by class);
- :func:`render_summary` prints it with rich (to stderr by default);
- :func:`write_findings` writes findings as JSON lines (one object per line,
  :meth:`auditor.findings.Finding.to_json`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from rich.console import Console
from rich.table import Table

from auditor import state
from auditor.evidence_chain import FindingKey, FindingsIndex, Lookup, inline_evidence, rule_key
from auditor.evidence_ops import RULE_CLASSES, EvidenceRejected
from auditor.findings import CLASSES, INFO, MISBEHAVIOUR, Finding
from auditor.tlogcheck import stored_checkpoints
from plc.tlog.encoding import encode_b64


@dataclass
class Summary:
    """Everything the summary shows about one state file."""

    source: str
    source_kind: str
    ops_read: int
    cursor_seq: int
    tree_size: int
    root_b64: str
    tlog: bool
    finished: bool
    ops_by_status: dict[str, int] = field(default_factory=dict)
    checkpoints_by_status: dict[str, int] = field(default_factory=dict)
    signatures: dict[str, int] = field(default_factory=dict)
    findings: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def misbehaviour(self) -> int:
        """Number of misbehaviour findings."""
        return sum(n for (_, sev), n in self.findings.items() if sev == MISBEHAVIOUR)

    @property
    def info(self) -> int:
        """Number of information findings."""
        return sum(n for (_, sev), n in self.findings.items() if sev == INFO)

    @property
    def exit_code(self) -> int:
        """2 if any misbehaviour was found, else 0."""
        return 2 if self.misbehaviour else 0


def summarize(conn: sqlite3.Connection) -> Summary:
    """Read the summary of a state file."""
    root_hex = state.get_meta(conn, "root_hash")
    summary = Summary(
        source=state.get_meta(conn, "source") or "?",
        source_kind=state.get_meta(conn, "source_kind") or "?",
        ops_read=state.get_meta_int(conn, "ops_read"),
        cursor_seq=state.get_meta_int(conn, "cursor_seq"),
        tree_size=state.get_meta_int(conn, "tree_size"),
        root_b64=encode_b64(bytes.fromhex(root_hex)) if root_hex else "",
        tlog=state.get_meta(conn, "tlog") == "1",
        finished=state.get_meta(conn, "finished") == "1",
    )
    for status, count in conn.execute("SELECT status, COUNT(*) FROM ops GROUP BY status"):
        summary.ops_by_status[str(status)] = int(count)
    for cp in stored_checkpoints(conn):
        by_status = summary.checkpoints_by_status
        by_status[cp.status] = by_status.get(cp.status, 0) + 1
        summary.signatures[cp.signature] = summary.signatures.get(cp.signature, 0) + 1
    for cls, severity, count in conn.execute(
        "SELECT class, severity, COUNT(*) FROM findings GROUP BY class, severity"
    ):
        summary.findings[(str(cls), str(severity))] = int(count)
    return summary


def render_summary(
    summary: Summary,
    console: Console,
    *,
    notes: Iterable[str] = (),
    run_ops: int | None = None,
    run_seconds: float | None = None,
) -> None:
    """Print the readable summary."""
    table = Table(title="plc-audit summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    kind = "directory" if summary.source_kind == "http" else "file"
    tlog = ", tlog: yes" if summary.tlog else (", tlog: no" if kind == "directory" else "")
    table.add_row("source", f"{summary.source} ({kind}{tlog})")
    read = f"{summary.ops_read:,} lines, last seq {summary.cursor_seq:,}"
    if run_ops is not None and run_seconds:
        read += f" (this run: {run_ops:,} in {run_seconds:.1f} s, {run_ops / run_seconds:,.0f}/s)"
    table.add_row("entries", read)
    statuses = ", ".join(f"{n:,} {s}" for s, n in sorted(summary.ops_by_status.items()))
    table.add_row("ops", statuses or "none")
    table.add_row("tree", f"size {summary.tree_size:,}, root {summary.root_b64 or '-'}")
    kept = sum(summary.checkpoints_by_status.values())
    if kept:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(summary.checkpoints_by_status.items()))
        if summary.signatures.get("unverified"):
            sig = "signatures NOT verified (no --vkey given)"
        else:
            sig = "signatures verified with --vkey"
        table.add_row("checkpoints", f"{kept} kept: {parts}; {sig}")
    elif kind == "directory" and not summary.tlog:
        table.add_row(
            "checkpoints",
            "none: the directory serves no transparency log (/tlog/), so no checkpoint or "
            "consistency checks were possible",
        )
    else:
        table.add_row("checkpoints", "none" if kind == "directory" else "none given")
    if summary.findings:
        lines = [f"{summary.misbehaviour} misbehaviour, {summary.info} information"]
        for (cls, severity), count in sorted(summary.findings.items()):
            lines.append(f"  {cls:<30} {count:>7,}  {severity}  ({CLASSES[cls]})")
        table.add_row("findings", "\n".join(lines))
    else:
        table.add_row("findings", "none")
    for note in notes:
        table.add_row("note", note)
    if summary.exit_code:
        table.add_row("result", "[bold red]MISBEHAVIOUR FOUND[/] (exit code 2)")
    else:
        table.add_row("result", "[bold green]clean[/] (exit code 0)")
    console.print(table)


def render_findings(findings: Iterable[Finding], console: Console, limit: int = 50) -> None:
    """Print a table of findings (at most ``limit`` rows)."""
    table = Table(title="findings", title_justify="left")
    for name in ("class", "severity", "seq", "did", "message"):
        table.add_column(name)
    shown = 0
    extra = 0
    for finding in findings:
        if shown >= limit:
            extra += 1
            continue
        table.add_row(
            finding.cls,
            finding.severity,
            "" if finding.seq is None else str(finding.seq),
            finding.did or "",
            finding.message,
        )
        shown += 1
    console.print(table)
    if extra:
        console.print(f"... and {extra} more (use --json for all)")


def state_lookup(conn: sqlite3.Connection) -> Lookup:
    """Finds a stored per-DID rule finding by ``(did, seq, cid)`` in a state file."""

    def lookup(did: str, seq: int, cid: str) -> dict[str, Any] | None:
        return state.finding_of_op(conn, RULE_CLASSES, did, seq, cid)

    return lookup


def write_findings(
    findings: Iterable[Finding], out: IO[bytes], lookup: Lookup | None = None
) -> int:
    """Write findings as JSON lines; return how many.

    A per-DID rule finding that extends an earlier finding (:mod:`auditor.evidence_chain`)
    not written before in this output — one found by an earlier run, say — is written with
    its whole line list inline, resolved with ``lookup`` (:func:`state_lookup`; without one,
    among ``findings``), so that every output checks on its own and each of a DID's lines
    is in it once.
    """
    if lookup is None:
        findings = list(findings)
        lookup = FindingsIndex(f.to_json() for f in findings).lookup
    written: set[FindingKey] = set()
    count = 0
    for finding in findings:
        obj = finding.to_json()
        key = rule_key(obj)
        if key is not None:
            extends = obj["evidence"].get("extends")
            if isinstance(extends, dict):
                if (key[0], extends.get("seq"), extends.get("cid")) not in written:
                    try:
                        obj["evidence"] = inline_evidence(obj, lookup)
                    except EvidenceRejected:
                        pass  # written as stored: the checker says what is missing
            written.add(key)
        out.write(orjson.dumps(obj) + b"\n")
        count += 1
    out.flush()
    return count
