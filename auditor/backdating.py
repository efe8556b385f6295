"""``createdAt`` against log order: the ``backdated-op`` check (in the coordinator).

A directory stamps ``createdAt`` when it accepts an op and gives it the next ``seq`` in the
same commit (design.md decisions 3 and 4), so along ``seq`` the stamps never go back by more
than the interleaving of concurrent writers. The per-DID rules only compare an op with its
own DID's ops: a recovery stamped earlier than the moment the directory really took it, to
fit inside the 72 h window, and appended at the end of the log, passes them. Comparing every
op's ``createdAt`` with the highest one of the lines before it in ``seq`` (the *high-water
mark*) catches it.

- The high-water mark is the line with the largest ``createdAt`` among the lines read so
  far whose envelope parses strictly (:func:`envelope`: the six keys, ``type``
  ``sequenced_op``, a did:plc, a ``seq`` and a ``createdAt`` of the strict form); it is kept
  in the state between runs (``meta.created_at_high_water``) and on the stream alike.
- A line with a larger ``seq`` whose ``createdAt`` is earlier than the mark's by more than
  the tolerance (milliseconds; ``plc-audit --created-at-tolerance``, seconds) is
  ``backdated-op``, reported against the mark's line, if its op parses (a line that does
  not is ``malformed-entry``, the workers' finding). It does not move the mark.
- A line whose ``seq`` is not above the mark's ``seq`` (one re-read, or a ``seq-regression``
  or ``duplicate-seq`` below the mark, reported as such) is not compared: which of the two
  came first is what is in question. A regression whose ``seq`` is still above the mark's
  is compared, and can become the mark.
- ``backdated-op`` is misbehaviour unless the operator says the log holds history imported
  out of ``createdAt`` order (``plc-audit --allow-backdated``: a mirror that ran ``plc
  import`` beside live writes, or imported several sources one after the other, keeps each
  op's original ``createdAt``); it is then reported as information.
- A state written before this check existed has no high-water line: the last line it read
  (``meta.last_line``) is taken as the mark, so the first line of the resumed run is compared
  too.
- A line whose ``createdAt`` is later than the auditor's clock when it reads the line, by
  more than the tolerance, is ``future-dated-op`` and is no mark either: otherwise one op
  stamped a year ahead (or a directory clock that jumped forward) would make every later op
  a ``backdated-op`` until real time caught up. Its evidence is the line and the auditor's
  clock, so it is only as good as that clock (``check-evidence`` says "unverifiable").

The tolerance exists because real directories assign ``createdAt`` before ``seq`` and
concurrent writers interleave by milliseconds; imported histories keep their source's times.

Cost: replay calls :meth:`CreatedAtTracker.observe` for every line, and decoding each line's
JSON here made the whole replay about 7 % slower. A canonical line's ``createdAt`` is read
from its head instead (:func:`auditor.lines.read_head`, which the coordinator runs anyway),
compared as text (the strict form orders as its moments do), and the envelope is parsed only
where its outcome depends on it: a line whose ``createdAt`` rises along ``seq`` becomes the
mark if its envelope parses and is skipped if not, so the tracker keeps such lines as
*candidates* and parses them, newest first, only when the mark is next needed (once per batch
in replay); every other line is decided as before, parse first, or needs no parse because
every outcome is "no finding, no new mark" (a ``createdAt`` within the tolerance behind the
mark's). Findings, marks and the state are what the parse-every-line tracker gave.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from auditor import state
from auditor.findings import INFO, MISBEHAVIOUR, Finding
from auditor.lines import Header, MalformedLine, parse_entry, parse_envelope, read_head
from auditor.sequence import MAX_SEQ
from plc.errors import PlcError
from plc.timestamps import format_timestamp, from_ms, parse_timestamp_ms, to_ms

DEFAULT_TOLERANCE_MS: Final = 60_000
"""How far ``createdAt`` may go back along ``seq`` before it is ``backdated-op`` (60 s)."""

HIGH_WATER_KEY: Final = "created_at_high_water"
"""``meta`` key of the high-water line (its text), kept between runs."""


@dataclass(frozen=True, slots=True)
class Mark:
    """A line whose envelope parsed: its ``seq``, ``createdAt`` and bytes.

    Attributes:
        seq: the line's ``seq``.
        created_at: the ``createdAt`` text.
        created_ms: the same, milliseconds since the Unix epoch.
        line: the exact line bytes.
    """

    seq: int
    created_at: str
    created_ms: int
    line: bytes


def envelope(line: bytes) -> Mark | None:
    """The :class:`Mark` of a line whose envelope is a strict ``sequenced_op`` line
    (:func:`auditor.lines.parse_envelope`, the shape ``plc-audit check-evidence`` requires of
    evidence lines; the op is not parsed) with a ``seq`` a log can have, or None. Never
    raises."""
    try:
        value, created_ms = parse_envelope(line)
    except MalformedLine:
        return None
    if value["seq"] > MAX_SEQ:
        return None
    return Mark(value["seq"], value["createdAt"], created_ms, line)


_FIRST_MS: Final = to_ms(datetime(1, 1, 1, tzinfo=UTC))
_AFTER_LAST_MS: Final = to_ms(datetime.max.replace(tzinfo=UTC)) + 1


def _moment_text(ms: int) -> bytes:
    """The strict ``createdAt`` text (ASCII) of ``ms``, milliseconds since the Unix epoch;
    past year 9999 a text after every strict-shaped one, before year 1 one before them all."""
    if ms >= _AFTER_LAST_MS:
        return b"~"
    if ms < _FIRST_MS:
        return b""
    return format_timestamp(from_ms(ms)).encode("ascii")


def wall_clock_ms() -> int:
    """The auditor's clock: milliseconds since the Unix epoch, UTC."""
    return time.time_ns() // 1_000_000


class CreatedAtTracker:
    """Follows the high-water ``createdAt`` along ``seq`` (see the module docstring).

    Args:
        tolerance_ms: how far back a ``createdAt`` may go, and how far ahead of ``now_ms``,
            milliseconds (>= 0).
        high_water: the high-water line kept from an earlier run, or None.
        now_ms: the auditor's clock (milliseconds since the Unix epoch), read per line.

    Raises:
        ValueError: a negative tolerance.
    """

    def __init__(
        self,
        tolerance_ms: int,
        high_water: bytes | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
        *,
        backdated_severity: str = MISBEHAVIOUR,
    ) -> None:
        if tolerance_ms < 0:
            raise ValueError("the createdAt tolerance must not be negative")
        self.tolerance_ms = tolerance_ms
        self._now_ms = now_ms
        self._severity = backdated_severity
        self._mark: Mark | None = None
        self._mark_text = b""  # the mark's createdAt, ASCII, to compare with a head's
        self._set_mark(None if high_water is None else envelope(high_water))
        # Lines read since the mark was settled, as (seq read with, createdAt text, line),
        # seq and createdAt strictly rising, every one after the mark in both and not
        # future-dated: the mark is the last of them whose envelope parses with that seq
        # (the mark if none does). Until then, a candidate's validity changes nothing.
        self._candidates: list[tuple[int, bytes, bytes]] = []
        # The clock reading of the last future-dated test and the createdAt text of that
        # reading plus the tolerance (a later text is future-dated): formatted once per ms.
        self._limit_now: int | None = None
        self._limit_text = b""

    @property
    def mark(self) -> Mark | None:
        """The high-water line (see the module docstring), or None before there is one.
        Reading it parses the pending candidates' envelopes, newest first, until one
        parses."""
        self._settle()
        return self._mark

    def observe(self, seq: int, line: bytes, header: Header | None = None) -> Finding | None:
        """Check one line read with ``seq`` (in read order); return its ``backdated-op`` or
        ``future-dated-op`` finding, if it is one.

        Args:
            seq: the ``seq`` the line was read with.
            line: the exact line bytes.
            header: :func:`auditor.lines.parse_header` of this very ``line``, when the
                caller has it (saves reading the head again); None to read it here.
        """
        head = read_head(line) if header is None else header
        created = None if head is None or head.seq != seq else head.created_at
        if created is None:
            return self._observe_parsed(seq, line)
        now_ms = self._now_ms()
        if now_ms != self._limit_now:
            self._limit_now = now_ms
            self._limit_text = _moment_text(now_ms + self.tolerance_ms)
        # For a real moment the text orders as its milliseconds do: after the limit is
        # future-dated, if the envelope parses (a non-date such as 2025-02-30 does not).
        if created > self._limit_text:
            return self._observe_parsed(seq, line)
        candidates = self._candidates
        if candidates:
            last_seq, last_created, _ = candidates[-1]
            if seq > last_seq and created > last_created:
                candidates.append((seq, created, line))
                return None
            self._settle()
        mark = self._mark
        if mark is not None and seq <= mark.seq:
            return None
        if mark is None or created > self._mark_text:
            candidates.append((seq, created, line))
            return None
        try:
            created_ms = parse_timestamp_ms(created.decode("ascii"))
        except PlcError:
            return self._observe_parsed(seq, line)
        if mark.created_ms - created_ms <= self.tolerance_ms:
            return None  # parsed or not, no finding and no new mark: nothing to parse for
        return self._observe_parsed(seq, line)

    def _settle(self) -> None:
        """Make the mark the newest candidate whose envelope parses, and drop the
        candidates."""
        candidates = self._candidates
        while candidates:
            seq, _, line = candidates.pop()
            current = envelope(line)
            # read_head made sure a parse reads the candidate's createdAt (past the mark's)
            if current is not None and current.seq == seq:
                self._set_mark(current)
                candidates.clear()

    def _set_mark(self, mark: Mark | None) -> None:
        self._mark = mark
        self._mark_text = b"" if mark is None else mark.created_at.encode("ascii")

    def _observe_parsed(self, seq: int, line: bytes) -> Finding | None:
        """:meth:`observe` by parsing the envelope: for lines whose head does not say their
        ``createdAt``, and every line that may be a finding."""
        self._settle()
        mark = self._mark
        if mark is not None and seq <= mark.seq:
            return None
        current = envelope(line)
        if current is None or current.seq != seq:
            return None
        now_ms = self._now_ms()
        if current.created_ms - now_ms > self.tolerance_ms:
            return self._future_dated(current, now_ms)
        if mark is None or current.created_ms > mark.created_ms:
            self._set_mark(current)
            return None
        gap = mark.created_ms - current.created_ms
        if gap <= self.tolerance_ms:
            return None
        try:
            entry = parse_entry(line)
        except MalformedLine:
            return None
        return Finding(
            "backdated-op",
            f"createdAt {current.created_at} is {gap} ms before {mark.created_at}, the "
            f"createdAt of seq {mark.seq} (tolerance {self.tolerance_ms} ms)",
            {
                "high_water_line": mark.line.decode("utf-8"),
                "line": line.decode("utf-8"),
                "tolerance_ms": self.tolerance_ms,
            },
            seq=seq,
            did=entry.did,
            cid=entry.operation.cid,
            severity=self._severity,
        )

    def _future_dated(self, current: Mark, now_ms: int) -> Finding | None:
        try:
            entry = parse_entry(current.line)
        except MalformedLine:
            return None
        observed_at = format_timestamp(from_ms(now_ms))
        return Finding(
            "future-dated-op",
            f"createdAt {current.created_at} is {current.created_ms - now_ms} ms after the "
            f"auditor's clock when it read the line, {observed_at} (tolerance "
            f"{self.tolerance_ms} ms)",
            {
                "line": current.line.decode("utf-8"),
                "observed_at": observed_at,
                "tolerance_ms": self.tolerance_ms,
            },
            seq=current.seq,
            did=entry.did,
            cid=entry.operation.cid,
        )


def resumed_tracker(
    conn: sqlite3.Connection, tolerance_ms: int, *, allow_backdated: bool = False
) -> CreatedAtTracker:
    """A tracker positioned where the state's last committed batch left it (in a state
    written before the check existed, at its last line read); ``allow_backdated`` reports
    ``backdated-op`` as information."""
    high_water = state.get_meta(conn, HIGH_WATER_KEY) or state.get_meta(conn, "last_line")
    return CreatedAtTracker(
        tolerance_ms,
        None if high_water is None else high_water.encode(),
        backdated_severity=INFO if allow_backdated else MISBEHAVIOUR,
    )
