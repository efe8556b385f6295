"""``load.py``'s command line: the phases, limits and :class:`Config` of one load run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from loadkit.cli import fail, from_namespace, new_parser
from loadkit.net import is_loopback

PHASES = ("create", "update", "verify", "resolve", "export")
DEFAULT_PHASES = ("create", "update", "verify", "resolve", "export")
KEY_MIXES = ("k256", "p256", "mixed", "secp256k1")
"""``secp256k1`` is loadgen.mjs's name for ``k256``."""
LIMITS = {
    "creates": 100_000,
    "updates": 100_000,
    "resolves": 1_000_000,
    "concurrency": 256,
    "phase_seconds": 3600.0,
}
OPS_PER_HOUR = 10
"""plc.directory's per-DID limit; more updates per DID than this answer 429 there."""
EXPORT_PAGE = 1000


@dataclass(frozen=True)
class Config:
    """Everything a run is parameterised by (see ``--help``)."""

    url: str
    creates: int
    updates: int
    resolves: int
    concurrency: int
    phases: tuple[str, ...]
    key_mix: str
    timeout_s: float
    retries: int
    phase_seconds: float
    export_pages: int
    export_mode: str
    verify_sample: int
    seed: int
    out: Path | None
    allow_remote: bool
    progress: bool
    watch_pids: dict[str, int]


def _parser() -> argparse.ArgumentParser:
    """load.py's options (checked further by :func:`parse_args`)."""
    parser = new_parser(
        "load.py",
        "Bounded HTTP load on a did:plc directory: create, update, verify, "
        "resolve and export phases with presigned ops and N concurrent clients.",
    )
    parser.add_argument("--url", default="http://127.0.0.1:2582", help="base URL of the server")
    parser.add_argument("--creates", type=int, default=2000, help="genesis ops to send")
    parser.add_argument("--updates", type=int, default=2000, help="update ops to send")
    parser.add_argument("--resolves", type=int, default=10000, help="GET /{did} requests")
    parser.add_argument("--concurrency", "-c", type=int, default=8, help="concurrent clients")
    parser.add_argument(
        "--phases",
        default=",".join(DEFAULT_PHASES),
        help=f"comma list of phases to run, of {','.join(PHASES)}",
    )
    parser.add_argument(
        "--key-mix",
        choices=KEY_MIXES,
        default="mixed",
        help="curve of each DID's keys (mixed: even DIDs k256, odd p256; the backup "
        "rotation key is always of the other curve)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, s")
    parser.add_argument(
        "--retries",
        type=int,
        default=0,
        help="writes: re-send an op up to K times on 5xx or no answer (latency covers all tries)",
    )
    parser.add_argument(
        "--phase-seconds", type=float, default=300.0, help="hard time cap per phase, s"
    )
    parser.add_argument(
        "--export-pages", type=int, default=100, help="most /export pages to fetch (0: no cap)"
    )
    parser.add_argument(
        "--export-mode",
        choices=("auto", "seq", "timestamp"),
        default="auto",
        help="paging of /export: by seq (after=<int>), by createdAt, or seq when the server "
        "returns it",
    )
    parser.add_argument("--verify-sample", type=int, default=100, help="DIDs to read back")
    parser.add_argument("--seed", type=int, default=1, help="PRNG seed of the resolve order")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a target that is not on loopback"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (e.g. in a log file)"
    )
    parser.add_argument(
        "--watch-pids",
        default="",
        help="name=pid,... : report the CPU seconds each process (and its children) used "
        "per phase, from /proc",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Parse and check the command line.

    Raises:
        SystemExit: bad arguments (exit 1), or a non-loopback URL without ``--allow-remote``.
    """
    parser = _parser()
    ns = parser.parse_args(argv)
    phases = tuple(p.strip() for p in ns.phases.split(",") if p.strip())
    for phase in phases:
        if phase not in PHASES:
            fail(parser, f"unknown phase {phase!r} (phases: {', '.join(PHASES)})")
    for name, limit in LIMITS.items():
        value = getattr(ns, name)
        if not 0 <= value <= limit:
            fail(parser, f"--{name.replace('_', '-')} must be within 0..{limit}")
    if ns.concurrency < 1:
        fail(parser, "--concurrency must be at least 1")
    if ns.timeout <= 0 or ns.phase_seconds <= 0:
        fail(parser, "--timeout and --phase-seconds must be positive")
    if not 0 <= ns.retries <= 100:
        fail(parser, "--retries must be within 0..100")
    url = ns.url.rstrip("/")
    if not urlsplit(url).hostname:
        fail(parser, f"not a URL: {url!r}")
    if not ns.allow_remote and not is_loopback(url):
        print(
            f"load.py: refusing to send load to {url}: only loopback targets (127.0.0.0/8, "
            "::1, localhost) unless --allow-remote",
            file=sys.stderr,
        )
        raise SystemExit(2)
    watch: dict[str, int] = {}
    for part in filter(None, ns.watch_pids.split(",")):
        name, _, pid = part.rpartition("=")
        if not pid.isdigit():
            fail(parser, f"--watch-pids: expected name=pid, got {part!r}")
        watch[name or f"pid{pid}"] = int(pid)
    return from_namespace(
        Config,
        ns,
        url=url,
        phases=phases,
        timeout_s=ns.timeout,
        progress=not ns.no_progress,
        watch_pids=watch,
    )
