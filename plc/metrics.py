"""Prometheus metrics of one directory process, served as ``GET /metrics``.

What an operator watches on the write path: ops committed, ops refused by reason, the size
and duration of each group commit, and the log's tree size; requests the HTTP server refused
before the app read them (malformed HTTP, oversized heads); plus the process's own CPU, memory
and file descriptors (``prometheus_client``'s process and platform collectors). Commits are
recorded once per batch and refusals as they happen, so an accepted op costs nothing extra
(measured: within 0.3 % of the instructions per update without metrics).

Each process has its own registry: with ``PLC_WORKERS`` > 1 the counters of a scrape are
those of the worker that answered it (the tree size is read from the database, so it is the
log's). Exposition format: Prometheus text 0.0.4, or what ``prometheus_client`` negotiates
when the scraper's ``Accept`` asks for another (OpenMetrics); an ``Accept`` it cannot read
gets text 0.0.4.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder, generate_latest

from plc.errors import PlcError, Unavailable
from plc.store.sql import CommitOutcome, CommitStatus

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What a scraper that asks for nothing in particular gets."""
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text"
"""The media type of OpenMetrics (its version and parameters as negotiated)."""

HTTP_REFUSED = Counter(
    "plc_http_refused",
    "Requests the HTTP server refused before the app read them, by reason: MalformedRequest "
    "(400, the HTTP parser could not read the request) or HeadTooLarge (431, a request head "
    "over PLC_MAX_HEADER_BYTES). Each answer closes its connection.",
    ["reason"],
    registry=None,
)
"""Counted by :class:`plc.api.http_server.JsonErrorHttpProtocol`, once per process (the HTTP
server's connections are the process's, not a directory's); each :class:`DirectoryMetrics`
registry exposes it."""

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class DirectoryMetrics:
    """The metrics of one :class:`plc.service.Directory` (thread-safe: the committer thread
    and the event loop both record)."""

    def __init__(self, tree_size: Callable[[], int] | None = None) -> None:
        """``tree_size``: reads the log's tree size (the last committed ``seq``) from the
        database at scrape time; None leaves the gauge at 0."""
        self.registry = CollectorRegistry()
        self.ops_committed = Counter(
            "plc_ops_committed",
            "Operations appended to the log.",
            registry=self.registry,
        )
        self.ops_refused = Counter(
            "plc_ops_refused",
            "Submitted operations the directory refused (4xx), by reason: the error's class "
            "(InvalidSignature, MisorderedOperation, RateLimited, HeadMismatch, ...), or "
            "for a body refused before its op is read: UnsupportedContentType (400, not "
            "JSON by its Content-Type), BodyTooLarge (413), BodyTimeout (408), "
            "UnsupportedEncoding (415), CorruptEncoding (400, a gzip or deflate body that "
            "does not inflate).",
            ["reason"],
            registry=self.registry,
        )
        self.ops_failed = Counter(
            "plc_ops_failed",
            "Submitted operations answered 503 because the database was busy or failed.",
            registry=self.registry,
        )
        self.commit_batch_ops = Histogram(
            "plc_commit_batch_ops",
            "Operations per group commit (one database transaction), counting those "
            "found already stored or conflicting, which append nothing.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "plc_commit_seconds",
            "Wall time of one group commit, from writing the batch to the end of COMMIT, "
            "seconds: the fsync and any wait for a thread or the event loop included.",
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.tree_size = Gauge(
            "plc_log_tree_size",
            "Operations in the transparency log (the last committed seq), read from the "
            "database at scrape time (NaN when it does not answer).",
            registry=self.registry,
        )
        if tree_size is not None:
            self.tree_size.set_function(lambda: _or_nan(tree_size))
        self.registry.register(HTTP_REFUSED)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def committed(self, outcomes: Sequence[CommitOutcome], seconds: float) -> None:
        """Record one group commit: its outcomes (in batch order) and its wall time in s."""
        appended = sum(1 for o in outcomes if o.status is CommitStatus.COMMITTED)
        self.commit_batch_ops.observe(len(outcomes))
        self.commit_seconds.observe(seconds)
        if appended:
            self.ops_committed.inc(appended)

    def refused(self, error: PlcError) -> None:
        """Record one submitted op answered with ``error``: a refusal (its class names the
        reason), or a failure when it is :class:`Unavailable` (503)."""
        if isinstance(error, Unavailable):
            self.ops_failed.inc()
        else:
            self.ops_refused.labels(reason=type(error).__name__).inc()

    def refused_body(self, reason: str) -> None:
        """Record one POST refused before its op was read, for ``reason`` (the
        :class:`plc.api.fastpath.Refusal` reason: UnsupportedContentType, BodyTooLarge, ...)."""
        self.ops_refused.labels(reason=reason).inc()

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """``(body, content type)`` of the registry for a scrape whose ``Accept`` header is
        ``accept``: what ``prometheus_client`` negotiates (OpenMetrics when asked), and the
        Prometheus text format 0.0.4 (UTF-8) when nothing else is asked or the header cannot
        be read."""
        try:
            encoder, content_type = choose_encoder(accept)
        except (TypeError, ValueError):  # e.g. "text/plain; version=abc"
            return generate_latest(self.registry), TEXT_CONTENT_TYPE
        return encoder(self.registry), content_type


def _or_nan(read: Callable[[], int]) -> float:
    try:
        return float(read())
    except Exception:  # noqa: BLE001 - a scrape must answer while the database does not
        return float("nan")
