"""What an audit run is told (:class:`AuditOptions`) and what it reports back
(:class:`AuditOutcome`); :mod:`auditor.audit` runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from plc.tlog.note import Verifier

BATCH_LINES = 2000
"""Lines of a file handed to the workers at once (the unit of commit and resume). On a quiet
machine, 2000 and 8000 replay a 100k-op file at the same speed (within 5 %), and 2000 keeps
the coordinator smaller (95 vs 123 MiB peak): PIPELINE_DEPTH batches of lines are in flight."""


@dataclass(frozen=True)
class AuditOptions:
    """Options of a run (see ``plc-audit sync --help`` for the user-facing text)."""

    workers: int = 2
    allow_seq_gaps: bool = False
    removed_cids: frozenset[str] = frozenset()
    canonical_lines: bool | None = None
    verifiers: tuple[Verifier, ...] = ()
    checkpoint_notes: tuple[str, ...] = ()
    spot_checks: int = 10
    recheck: str = "full"
    follow: bool = False
    follow_seconds: float | None = None
    progress: bool | None = None
    seed: int | None = None
    batch_lines: int = BATCH_LINES


@dataclass
class AuditOutcome:
    """What one run did; the full picture is in the state file (:mod:`auditor.report`)."""

    state_path: Path
    first_finding_id: int
    ops: int = 0
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
