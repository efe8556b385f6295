"""What an audit run is told (:class:`AuditOptions`) and what it reports back
(:class:`AuditOutcome`); :mod:`auditor.audit` runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from auditor.backdating import DEFAULT_TOLERANCE_MS
from plc.tlog.note import Verifier

BATCH_LINES = 2000
"""Lines of a file handed to the workers at once (the unit of commit and resume). On a quiet
machine, 2000 and 8000 replay a 100k-op file at the same speed (within 5 %), and 2000 keeps
the coordinator smaller (95 vs 123 MiB peak): PIPELINE_DEPTH batches of lines are in flight."""


REQUEST_DEADLINE_S = 120.0
"""Longest one HTTP request to a directory may take, start to last byte, seconds (each
retry gets its own): a full ``/export`` page of 1000 ops arrives in a few seconds from
plc.directory, and even the largest possible one (1000 ops of 100 kB) in 120 s at under
1 MB/s. The per-read timeout alone lets a server that sends a byte every few seconds hold
a request forever."""
MAX_RESPONSE_BYTES = 128 << 20
"""Largest answer body read from a directory, in decoded bytes (after gzip or deflate): a
full ``/export`` page of 1000 ops of at most 100 kB each, with their line envelopes, is
about 100 MB. Bounds the memory a compressed answer can make the auditor use."""
STREAM_SILENCE_S = 60.0
"""Seconds without a stream message after which ``sync --follow`` of a directory without
``/tlog/`` asks ``/export`` for new entries (``--stream-silence``; :mod:`auditor.follow`)."""


@dataclass(frozen=True)
class HttpLimits:
    """Limits of every HTTP request to a directory (picklable, for the workers).

    Attributes:
        deadline_s: the total time of one request, seconds (:data:`REQUEST_DEADLINE_S`).
        max_body_bytes: the largest decoded answer body (:data:`MAX_RESPONSE_BYTES`).
    """

    deadline_s: float = REQUEST_DEADLINE_S
    max_body_bytes: int = MAX_RESPONSE_BYTES


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
    stream_silence_s: float = STREAM_SILENCE_S
    progress: bool | None = None
    seed: int | None = None
    batch_lines: int = BATCH_LINES
    http_limits: HttpLimits = HttpLimits()
    created_at_tolerance_ms: int = DEFAULT_TOLERANCE_MS
    allow_backdated: bool = False


@dataclass
class AuditOutcome:
    """What one run did; the full picture is in the state file (:mod:`auditor.report`)."""

    state_path: Path
    first_finding_id: int
    ops: int = 0
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
