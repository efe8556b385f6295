"""The ``createdAt`` tracker reads a canonical line's ``createdAt`` from its head and parses
the envelope only when the outcome depends on it (:mod:`auditor.backdating`, "Cost"): it must
decide every line exactly as parsing every line did, hostile and malformed lines included.
The reference here is that tracker, kept as it was."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from auditor.backdating import CreatedAtTracker
from auditor.findings import Finding
from auditor.lines import Header, MalformedLine, parse_header, read_head
from plc.keys import PrivateKey
from plc.timestamps import format_timestamp, from_ms, to_ms

from .conftest import line_for
from .generate import T0, signed_op


class ReferenceTracker(CreatedAtTracker):
    """The tracker as it was before the head was read: every line's envelope parsed (its
    parse path, which tests/auditor/test_backdated.py pins, taken for every line)."""

    def observe(self, seq: int, line: bytes, header: Header | None = None) -> Finding | None:
        return self._observe_parsed(seq, line)


_KEYS = [PrivateKey.from_seed("lazy-0"), PrivateKey.from_seed("lazy-1")]
_OPS = [signed_op(_KEYS, None, f"lazy{i}.test", _KEYS[0]) for i in range(3)]
_DID = "did:plc:" + "a" * 24
NOW = T0 + timedelta(days=30)


def _line(seq: int, created_at: str, op: int = 0) -> bytes:
    return line_for(_DID, _OPS[op], seq, created_at)


def _text(moment: datetime) -> str:
    return format_timestamp(moment)


def _before_type(line: bytes, extra: bytes) -> bytes:
    """``line`` with ``extra`` (``,"key":value``) inserted before its ``type`` key."""
    cut = line.rindex(b',"type":')
    return line[:cut] + extra + line[cut:]


MUTATIONS: dict[str, Callable[[bytes, str], bytes]] = {
    # Hostile: the head says one createdAt (or seq), a later duplicate key another; orjson
    # keeps the last, so the envelope is valid with the later value.
    "duplicate createdAt": lambda line, other: _before_type(
        line, b',"createdAt":"' + other.encode() + b'"'
    ),
    "escaped duplicate createdAt": lambda line, other: _before_type(
        line, b',"created\\u0041t":"' + other.encode() + b'"'
    ),
    "duplicate seq": lambda line, _: _before_type(line, b',"seq":1'),
    # Envelopes that do not parse, with a strict-shaped createdAt in the head.
    "extra key": lambda line, _: _before_type(line, b',"x":1'),
    "wrong type": lambda line, _: line.replace(b'"sequenced_op"', b'"indexed_op"'),
    "not JSON": lambda line, _: line[:-1],
    "calendar": lambda line, _: _recreated(line, "2025-02-30T00:00:00.000Z"),
    "hour 24": lambda line, _: _recreated(line, "2025-06-03T24:00:00.000Z"),
    # createdAt not of the strict form: the head does not say it, the parse refuses it.
    "no milliseconds": lambda line, _: _recreated(line, _created(line)[:-5] + "Z"),
    "offset": lambda line, _: _recreated(line, _created(line)[:-1] + "+00:00"),
    "not a string": lambda line, _: line.replace(
        b'"createdAt":"' + _created(line).encode() + b'"', b'"createdAt":1'
    ),
    # The envelope parses, the op does not: no finding, but a mark.
    "op without sig": lambda line, _: line.replace(b'"sig":', b'"sag":'),
    # Keys in another order: no canonical head, the line is parsed.
    "reordered": lambda line, _: orjson.dumps(
        dict(sorted(orjson.loads(line).items(), key=lambda kv: kv[0] != "createdAt"))
    ),
}


def _created(line: bytes) -> str:
    return str(orjson.loads(line)["createdAt"])


def _recreated(line: bytes, created_at: str) -> bytes:
    return line.replace(
        f'"createdAt":"{_created(line)}"'.encode(), f'"createdAt":"{created_at}"'.encode()
    )


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_mutated_line_is_judged_as_by_a_parse(mutation: str) -> None:
    """In a rising run, after it, as the last line of it, and as a regression."""
    honest = [_line(i, _text(T0 + timedelta(seconds=10 * i))) for i in range(1, 7)]
    far_back = _text(T0 - timedelta(days=3))
    for at in (2, 6):
        for other in (far_back, _text(T0 + timedelta(seconds=10 * at + 5))):
            lines = list(honest)
            lines[at - 1] = MUTATIONS[mutation](lines[at - 1], other)
            _same_decisions(list(enumerate(lines, 1)), 60_000, to_ms(NOW), check_every=1)
            _same_decisions(list(enumerate(lines, 1)), 60_000, to_ms(NOW), check_every=0)


def test_the_head_does_not_vouch_for_a_line_a_later_key_can_change() -> None:
    line = _line(3, "2025-06-01T00:00:00.000Z")
    head = read_head(line)
    assert head is not None and head == parse_header(line)
    assert head.created_at == b"2025-06-01T00:00:00.000Z"
    for mutation in ("duplicate createdAt", "escaped duplicate createdAt"):
        head = read_head(MUTATIONS[mutation](line, "2020-01-01T00:00:00.000Z"))
        assert head is not None and head.seq == 3 and head.created_at is None, mutation
    # A later seq is no matter for the head: the tracker parses a line before it is a mark.
    head = read_head(MUTATIONS["duplicate seq"](line, ""))
    assert head is not None and head.seq == 3 and head.created_at is not None
    head = read_head(MUTATIONS["reordered"](line, ""))
    assert head is None


def test_a_duplicate_created_at_key_is_compared_by_its_last_value() -> None:
    """The head says the line is the newest; orjson (and the reference) reads the later
    duplicate, four days back: backdated-op, as before."""
    first = _line(1, _text(T0 + timedelta(days=4)))
    hostile = MUTATIONS["duplicate createdAt"](_line(2, _text(T0 + timedelta(days=5))), _text(T0))
    tracker = CreatedAtTracker(60_000, now_ms=lambda: to_ms(NOW))
    assert tracker.observe(1, first) is None
    found = tracker.observe(2, hostile)
    assert found is not None and found.cls == "backdated-op" and found.seq == 2
    assert tracker.mark is not None and tracker.mark.line == first


def test_an_invalid_newest_line_leaves_the_mark_on_the_last_valid_one() -> None:
    lines = [_line(i, _text(T0 + timedelta(seconds=i))) for i in range(1, 5)]
    lines[3] = MUTATIONS["calendar"](lines[3], "")
    tracker = CreatedAtTracker(60_000, now_ms=lambda: to_ms(NOW))
    for seq, line in enumerate(lines, 1):
        assert tracker.observe(seq, line, parse_header(line)) is None
    assert tracker.mark is not None and tracker.mark.line == lines[2]


def _same_decisions(
    reads: list[tuple[int, bytes]], tolerance_ms: int, now_ms: int, *, check_every: int
) -> None:
    """Feed ``reads`` to both trackers; the findings must be equal line by line, the marks
    every ``check_every`` lines (0: at the end only; reading the mark settles the tracker,
    so it is read sparingly to let candidates pile up)."""
    reference = ReferenceTracker(tolerance_ms, now_ms=lambda: now_ms)
    tracker = CreatedAtTracker(tolerance_ms, now_ms=lambda: now_ms)
    for n, (seq, line) in enumerate(reads, 1):
        try:
            header = parse_header(line) if n % 2 else None
        except MalformedLine:
            header = None
        expected = reference.observe(seq, line)
        assert tracker.observe(seq, line, header) == expected, (n, seq, line)
        if check_every and n % check_every == 0:
            assert tracker.mark == reference.mark, (n, seq)
    assert tracker.mark == reference.mark


@pytest.mark.parametrize("seed", range(40))
def test_random_logs_are_judged_as_by_parsing_every_line(seed: int) -> None:
    rng = random.Random(seed)
    tolerance_ms = rng.choice([0, 1, 1_000, 60_000])
    moment = to_ms(T0)
    seq = 0
    reads: list[tuple[int, bytes]] = []
    for _ in range(300):
        step = rng.random()
        if step < 0.55:
            moment += rng.randint(1, 5_000)
        elif step < 0.65:
            pass  # the same millisecond
        elif step < 0.8:
            moment -= rng.randint(0, 2 * tolerance_ms + 2)
        elif step < 0.9:
            moment -= rng.randint(1, 10 * 86_400_000)
        created_ms = moment
        if rng.random() < 0.05:
            created_ms = to_ms(NOW) + rng.randint(-tolerance_ms - 2, tolerance_ms + 86_400_000)
        kind = rng.random()
        if kind < 0.8:
            seq += 1
        elif kind < 0.85:
            seq += rng.randint(2, 5)  # a gap
        elif kind < 0.92:
            seq = max(1, seq - rng.randint(0, 5))  # a repeat or a regression
        line = _line(max(seq, 1), format_timestamp(from_ms(created_ms)), rng.randrange(3))
        if rng.random() < 0.15:
            other = format_timestamp(from_ms(created_ms + rng.randint(-86_400_000, 86_400_000)))
            line = MUTATIONS[rng.choice(sorted(MUTATIONS))](line, other)
        read_as = seq if rng.random() < 0.97 else seq + 1  # read with another seq
        reads.append((max(read_as, 1), line))
    _same_decisions(reads, tolerance_ms, to_ms(NOW), check_every=rng.choice([0, 7, 50]))


def test_the_clock_is_read_per_line() -> None:
    """A clock that moves: a line is future-dated by the clock when it is read."""
    clock = [to_ms(T0)]
    tracker = CreatedAtTracker(0, now_ms=lambda: clock[0])
    lines = [_line(i, _text(T0 + timedelta(seconds=i))) for i in range(1, 4)]
    found: list[Any] = []
    for seq, line in enumerate(lines, 1):
        clock[0] = to_ms(T0) + 1_000 * seq - (1 if seq == 2 else 0)
        found.append(tracker.observe(seq, line))
    assert [f is not None and f.cls for f in found] == [False, "future-dated-op", False]
    assert tracker.mark is not None and tracker.mark.seq == 3


def test_a_clock_past_year_9999_future_dates_nothing() -> None:
    tracker = CreatedAtTracker(0, now_ms=lambda: 400 * 365 * 86_400_000 * 100)
    assert tracker.observe(1, _line(1, "9999-12-31T23:59:59.999Z")) is None
    assert tracker.mark is not None and tracker.mark.seq == 1


def test_a_later_run_keeps_the_same_mark_as_the_reference() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    high = _line(5, _text(start))
    tracker = CreatedAtTracker(60_000, high, now_ms=lambda: to_ms(NOW))
    assert tracker.observe(5, _line(5, _text(start + timedelta(days=1)))) is None
    assert tracker.observe(6, _line(6, _text(start - timedelta(seconds=59)))) is None
    found = tracker.observe(7, _line(7, _text(start - timedelta(seconds=61))))
    assert found is not None and found.evidence["high_water_line"] == high.decode()
