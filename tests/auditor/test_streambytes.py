"""``auditor.streambytes.ExportLines`` against a fake directory whose ``/export`` lags its
stream: which messages wait, from when, and which are kept as sent (the clock injected)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from auditor.client import DirectoryClient
from auditor.sources import RawLine
from auditor.streambytes import ExportBehind, ExportLines

from .conftest import serve
from .corpus import Corpus
from .fakedir import FakeLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def _export_lines(log: FakeLog, patience_s: float) -> Iterator[tuple[ExportLines, Clock]]:
    """An ExportLines on ``log``'s fake directory, and the clock it reads."""
    clock = Clock()
    with serve(log) as url:
        client = DirectoryClient(url)
        try:
            yield ExportLines(client, patience_s=patience_s, clock=clock), clock
        finally:
            client.close()


def _raw(lines: list[bytes]) -> list[RawLine]:
    return [RawLine(line, None) for line in lines]


def test_the_batch_ends_at_the_first_op_export_lacks_and_each_waits_from_its_first_miss(
    corpus: Corpus,
) -> None:
    log = FakeLog(list(corpus.lines[:20]), None, export_upto=10)
    with _export_lines(log, 5.0) as (lines, clock):
        with pytest.raises(ExportBehind) as behind:
            lines(_raw(corpus.lines[8:14]))
        assert behind.value.seq == 11
        assert [r.line for r in behind.value.ready] == corpus.lines[8:10]
        clock.now += 3.0  # 11-14 missed 3 s ago, 15 for the first time
        with pytest.raises(ExportBehind):
            lines(_raw(corpus.lines[10:15]))
        clock.now += 2.0  # 11-14 given up on; 15 has waited 2 s
        with pytest.raises(ExportBehind) as behind:
            lines(_raw(corpus.lines[10:15]))
        assert behind.value.seq == 15
        assert [r.line for r in behind.value.ready] == corpus.lines[10:14]
        log.export_upto = None  # served at last: the waiting ends
        assert [r.line for r in lines(_raw(corpus.lines[14:16]))] == corpus.lines[14:16]


def test_a_message_given_up_on_is_kept_as_sent_each_time_it_comes_in_the_batch(
    corpus: Corpus,
) -> None:
    log = FakeLog(list(corpus.lines[:5]), None, export_upto=4)
    with _export_lines(log, 1.0) as (lines, clock):
        with pytest.raises(ExportBehind):
            lines(_raw([corpus.lines[4]]))
        clock.now += 1.0
        twice = [corpus.lines[4], corpus.lines[4]]  # a redelivery within one batch
        assert [r.line for r in lines(_raw(twice))] == twice
