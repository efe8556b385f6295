"""Prometheus metrics of a directory server (one process or several workers), served as
``GET /metrics``.

What an operator watches on the write path: ops committed, ops refused by reason, the size
and duration of each group commit, and the log's tree size; requests the HTTP server refused
before the app read them (malformed HTTP, oversized heads); open ``/export/stream`` connections
and how often one fell behind the live feed; plus the process's own CPU, memory
and file descriptors (``prometheus_client``'s process and platform collectors). Commits are
recorded once per batch and refusals as they happen, so an accepted op costs nothing extra
(measured: within 0.3 % of the instructions per update without metrics).

One server process: its own registry. Several (``PLC_WORKERS`` > 1): ``plc serve`` gives the
workers a shared directory in ``PROMETHEUS_MULTIPROC_DIR`` (``prometheus_client``'s
multi-process mode), where each worker keeps its counts in files; a scrape answered by any
worker sums every worker's, dead ones' included, so the counters stay monotonic whichever
worker answers. A gauge of what is open now (``plc_stream_connections``) counts running
workers only: the files a dead worker left for it are removed when a worker starts and at
every scrape (:func:`forget_dead_workers`; a worker killed with open streams would otherwise
be counted for good). In that mode the per-process metrics (``process_*``, ``python_info``)
are left out, since they would be the answering worker's alone. The tree size is read from the
database at scrape time in both modes. Exposition format: Prometheus text 0.0.4, or what
``prometheus_client`` negotiates when the scraper's ``Accept`` asks for another
(OpenMetrics); an ``Accept`` it cannot read gets text 0.0.4.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from plc import errors
from plc.errors import PlcError, Unavailable
from plc.store.records import CommitOutcome, CommitStatus

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What a scraper that asks for nothing in particular gets."""
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text"
"""The media type of OpenMetrics (its version and parameters as negotiated)."""
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable that switches ``prometheus_client`` to multi-process mode: it must
be set before ``prometheus_client`` is first imported in the process (``plc serve`` sets it
before starting its workers)."""

HTTP_REFUSED = Counter(
    "plc_http_refused",
    "Requests and connections the HTTP server refused itself, by reason: MalformedRequest "
    "(400, the HTTP parser could not read the request), HeadTooLarge (431, a request head "
    "over PLC_MAX_HEADER_BYTES), HeadTimeout (408, a head slower than PLC_HEAD_TIMEOUT_S), "
    "UnsupportedUpgrade (400, a protocol switch it does not take), or UnreadBodyTimeout (the "
    "rest of a body whose request was answered before it was read, slower than "
    "PLC_BODY_TIMEOUT_S; no answer). Each closes its connection.",
    ["reason"],
    registry=None,
)
"""Counted by :class:`plc.api.http_server.JsonErrorHttpProtocol`, once per process (the HTTP
server's connections are the process's, not a directory's); each :class:`DirectoryMetrics`
registry exposes it."""

BODY_REFUSALS: dict[str, str] = {
    "UnsupportedContentType": "400, not JSON by its Content-Type",
    "UnsupportedCharset": "415, a charset no UTF codec reads",
    "MalformedCharset": "400, bytes not valid in the UTF charset declared",
    "BodyTooLarge": "413",
    "BodyTimeout": "408",
    "UnsupportedEncoding": "415",
    "CorruptEncoding": "400, a gzip or deflate body that does not inflate",
}
"""Every reason :class:`plc.api.bodies.Refusal` gives a POST refused before its op is read
(``plc_ops_refused_total{reason}``), with its status and cause, as the HELP text says."""
OP_REFUSALS: tuple[str, ...] = tuple(
    value.__name__
    for value in vars(errors).values()
    if isinstance(value, type)
    and issubclass(
        value,
        (errors.InvalidInput, errors.InvalidOperation, errors.PolicyViolation, errors.Conflict),
    )
)
"""The classes of :mod:`plc.errors` a submitted op is refused with (400, 409, 429), in the
order they are defined there: what :meth:`DirectoryMetrics.refused` counts as the reason
(its class's name). Not found (404) and verification errors are not raised for a
submitted op; :class:`plc.errors.Unavailable` (503) is counted as a failure instead."""
_OPS_REFUSED_HELP = (
    "Submitted operations the directory refused (4xx), by reason: the error's class ("
    + ", ".join(OP_REFUSALS)
    + "), or for a body refused before its op is read: "
    + ", ".join(f"{reason} ({cause})" for reason, cause in BODY_REFUSALS.items())
    + "."
)

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class DirectoryMetrics:
    """The metrics of one :class:`plc.service.Directory` (thread-safe: the committer thread
    and the event loop both record).

    Attributes:
        registry: this process's metrics.
        scraped: what a scrape exposes: ``registry`` itself, or in multi-process mode every
            worker's counts read from ``PROMETHEUS_MULTIPROC_DIR``; the tree size in both.
        multiprocess_dir: that shared directory, or None (one process, its own registry).
    """

    def __init__(self, tree_size: Callable[[], int] | None = None) -> None:
        """``tree_size``: reads the log's tree size (the last committed ``seq``) from the
        database at scrape time; None leaves the gauge at 0."""
        self.registry = CollectorRegistry()
        self.multiprocess_dir = os.environ.get(MULTIPROCESS_DIR_ENV) or None
        if self.multiprocess_dir:
            # Before this process's gauge exists: prometheus_client would start it from a
            # file of a dead worker that had this pid, with that worker's open streams.
            _forget_stale_own_gauges(self.multiprocess_dir)
            forget_dead_workers(self.multiprocess_dir)
        self.ops_committed = Counter(
            "plc_ops_committed",
            "Operations appended to the log.",
            registry=self.registry,
        )
        self.ops_refused = Counter(
            "plc_ops_refused",
            _OPS_REFUSED_HELP,
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
        self.stream_connections = Gauge(
            "plc_stream_connections",
            "Open /export/stream connections, backfilling from the database or live.",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.stream_fell_behind = Counter(
            "plc_stream_fell_behind",
            "Times a live /export/stream connection had more than PLC_STREAM_BUFFER ops "
            "waiting to be sent and went back to reading from the database (a burst of "
            "commits, or a slow client).",
            registry=self.registry,
        )
        self.registry.register(HTTP_REFUSED)
        if self.multiprocess_dir:
            # Each metric above writes this process's counts to the shared directory; a scrape
            # reads every worker's from there instead of this registry.
            self.scraped = CollectorRegistry()
            MultiProcessCollector(self.scraped, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            self.scraped = self.registry
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.scraped.register(_TreeSize(tree_size))

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
        """``(body, content type)`` of :attr:`scraped` for a scrape whose ``Accept`` header is
        ``accept``: what ``prometheus_client`` negotiates (OpenMetrics when asked), and the
        Prometheus text format 0.0.4 (UTF-8) when nothing else is asked or the header cannot
        be read. In multi-process mode, dead workers' live gauges are dropped first
        (:func:`forget_dead_workers`)."""
        if self.multiprocess_dir:
            forget_dead_workers(self.multiprocess_dir)
        try:
            encoder, content_type = choose_encoder(accept)
        except (TypeError, ValueError):  # e.g. "text/plain; version=abc"
            return generate_latest(self.scraped), TEXT_CONTENT_TYPE
        return encoder(self.scraped), content_type


@contextmanager
def shared_metrics_dir(workers: int, enabled: bool) -> Iterator[None]:
    """Around ``plc serve``'s workers: with more than one worker and metrics on, a fresh
    directory in ``PROMETHEUS_MULTIPROC_DIR`` for their counts, removed once they have exited.
    An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is used as it is, whatever the workers and
    the metrics setting (created if missing; as ``prometheus_client`` says, empty it between
    runs, or old counts are added in): even one worker then runs in multi-process mode.
    Otherwise, one worker or metrics off: nothing changes. A ``plc serve`` killed with
    SIGKILL leaves its temporary directory (``plc-metrics-*`` in the temp dir) behind."""
    own = os.environ.get(MULTIPROCESS_DIR_ENV)
    if own:
        os.makedirs(own, exist_ok=True)
    if own or workers <= 1 or not enabled:
        yield
        return
    path = tempfile.mkdtemp(prefix="plc-metrics-")
    os.environ[MULTIPROCESS_DIR_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_DIR_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")
"""A file of a gauge whose value counts only while its process runs (``multiprocess_mode``
``live*``), named by that process's id, as ``prometheus_client`` names it."""
_forgot_own_for: int | None = None
"""The process id :func:`_forget_stale_own_gauges` last ran in (once per process)."""


def forget_dead_workers(path: str) -> list[int]:
    """Drop from the multi-process directory ``path`` the live gauges' files
    (``gauge_live*_<pid>.db``) of every process that is no longer one of this server's
    (:func:`_serving_beside_us`), as ``prometheus_client.multiprocess.mark_process_dead`` does
    for a worker that has exited: its open stream connections then no longer count. Its
    counters and histograms stay, so that the sums stay monotonic. Safe against a worker
    dropping the same files at the same time.

    Returns the process ids whose files were dropped (ascending)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:  # plc serve removed it on its way out
        return []
    pids = {int(m.group(1)) for name in names if (m := _LIVE_GAUGE_FILE.fullmatch(name))}
    gone = sorted(pid for pid in pids if not _serving_beside_us(pid))
    for pid in gone:
        try:
            mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        except FileNotFoundError:  # another worker dropped it first
            pass
    return gone


def _forget_stale_own_gauges(path: str) -> None:
    """Once per process, before its first live gauge is made: drop live gauge files already
    named by this process's id (a dead worker's, whose id the system gave to this one)."""
    global _forgot_own_for
    if _forgot_own_for == os.getpid():
        return
    _forgot_own_for = os.getpid()
    try:
        mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]
    except FileNotFoundError:
        pass


def _serving_beside_us(pid: int) -> bool:
    """Whether ``pid`` is a process that may still write to the shared directory: this one, or
    a running process (not a zombie) with the same parent, as uvicorn's workers are each
    other's siblings under ``plc serve``. The parent test keeps a dead worker's id that the
    system gave to an unrelated process from counting it as alive. Without ``/proc``
    (not Linux): any running process."""
    if pid == os.getpid():
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return False  # ended
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    except OSError:
        return True  # cannot tell: keep its count rather than drop a live one
    # The command name, in parentheses, may itself hold ") ": the fields follow the last.
    state, parent = stat.rsplit(")", 1)[1].split()[:2]
    return state not in ("Z", "X") and int(parent) == os.getppid()


TREE_SIZE_WAIT_S = 5.0
"""Longest wait of a scrape for the database's tree size (then NaN)."""


class _TreeSize(Collector):
    """``plc_log_tree_size``, read at scrape time (a collector rather than a function gauge,
    which multi-process mode does not support) on a thread of its own, waited for at most
    :data:`TREE_SIZE_WAIT_S`: a database that stops answering without closing the
    connection must not hold the scrape (NaN then, and NaN at once while that read still
    waits, so that stuck reads do not pile up)."""

    def __init__(self, read: Callable[[], int] | None) -> None:
        self.read = read
        self._waiting: threading.Thread | None = None

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "plc_log_tree_size",
            "Operations in the transparency log (the last committed seq), read from the "
            "database at scrape time (NaN when it does not answer).",
            value=0.0 if self.read is None else self._value(self.read),
        )

    def _value(self, read: Callable[[], int]) -> float:
        if self._waiting is not None and self._waiting.is_alive():
            return float("nan")
        values: list[float] = []
        thread = threading.Thread(
            target=lambda: values.append(_or_nan(read)), name="plc-metrics-tree-size", daemon=True
        )
        thread.start()
        thread.join(TREE_SIZE_WAIT_S)
        self._waiting = thread
        return values[0] if values else float("nan")


def _or_nan(read: Callable[[], int]) -> float:
    try:
        return float(read())
    except Exception:  # noqa: BLE001 - a scrape must answer while the database does not
        return float("nan")
