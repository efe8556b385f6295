"""``compare_reference.py``'s command line: where things are, and the :class:`Options` of one
comparison."""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from loadkit.cli import fail, from_namespace, new_parser
from loadkit.net import free_port, is_loopback

BENCHMARKS = Path(__file__).resolve().parents[1]
"""``benchmarks/``, where ``load.py`` is."""
REPO = BENCHMARKS.parent
DEFAULT_REFSERVER = REPO.parent / "shared" / "refserver"
NODE_KEY_MIX = {"k256": "secp256k1", "p256": "p256", "mixed": "mixed"}
"""Our ``--key-mix`` names → loadgen.mjs's."""


@dataclass(frozen=True)
class Options:
    """The command line (see ``--help``)."""

    reference_url: str
    start_reference: bool
    refserver: Path
    creates: int
    updates: int
    resolves: int
    concurrency: int
    phases: str
    key_mix: str
    workers: int
    port: int
    driver: str
    reference_retries: int
    ours_retries: int
    phase_seconds: float
    timeout_s: float
    order: str
    repeat: int
    plc_command: list[str]
    node: str
    out: Path | None
    keep: bool


def _parser() -> argparse.ArgumentParser:
    """compare_reference.py's options (checked further by :func:`parse_args`)."""
    parser = new_parser(
        "compare_reference.py",
        "The same bounded load against the reference did:plc server and ours; "
        "a table of ours/reference per phase.",
    )
    parser.add_argument("--reference-url", default="http://127.0.0.1:2582")
    parser.add_argument(
        "--start-reference",
        action="store_true",
        help="start the reference here on a fresh database (RESET=1 start.sh) and stop it after",
    )
    parser.add_argument(
        "--refserver", type=Path, default=DEFAULT_REFSERVER, help="the refserver directory"
    )
    parser.add_argument("--creates", type=int, default=3000)
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--resolves", type=int, default=10000)
    parser.add_argument("--concurrency", "-c", type=int, default=8)
    parser.add_argument(
        "--phases",
        default="create,update,verify,resolve",
        help="phases to run (of create,update,verify,resolve,export)",
    )
    parser.add_argument("--key-mix", choices=sorted(NODE_KEY_MIX), default="mixed")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("PLC_WORKERS", "1")),
        help="worker processes of our server [env PLC_WORKERS]",
    )
    parser.add_argument("--port", type=int, default=0, help="port of our server (0: a free one)")
    parser.add_argument("--driver", choices=("node", "python"), default="node")
    parser.add_argument("--reference-retries", type=int, default=10)
    parser.add_argument("--ours-retries", type=int, default=0)
    parser.add_argument("--phase-seconds", type=float, default=300.0, help="time cap per phase")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, s")
    parser.add_argument(
        "--order",
        choices=("reference-first", "ours-first", "alternate"),
        default="reference-first",
        help="which server is measured first (alternate: the reference in odd-numbered runs)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="whole comparisons to run (fresh databases each); >1 adds a summary of the "
        "ratios (median, range, runs at the target)",
    )
    parser.add_argument(
        "--plc-command",
        default=str(REPO / ".venv" / "bin" / "plc"),
        help="how to run our CLI (split on spaces)",
    )
    parser.add_argument("--node", default="node", help="the node binary")
    parser.add_argument("--out", type=Path, default=None, help="write everything as JSON")
    parser.add_argument(
        "--keep", action="store_true", help="keep our server's temporary directory (db, log)"
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Parse and check the command line (exit 1 on bad arguments)."""
    parser = _parser()
    ns = parser.parse_args(argv)
    if not is_loopback(ns.reference_url) or urlsplit(ns.reference_url).scheme != "http":
        fail(parser, "--reference-url must be http:// on loopback")
    for name in ("creates", "updates", "resolves"):
        if not 0 <= getattr(ns, name) <= 100_000 * (10 if name == "resolves" else 1):
            fail(parser, f"--{name} out of range")
    if not 1 <= ns.concurrency <= 256 or not 1 <= ns.workers <= 64:
        fail(parser, "--concurrency must be 1..256 and --workers 1..64")
    if not 1 <= ns.repeat <= 50:
        fail(parser, "--repeat must be 1..50")
    if ns.phase_seconds <= 0 or ns.phase_seconds > 3600:
        fail(parser, "--phase-seconds must be within (0, 3600]")
    plc_command = ns.plc_command.split()
    if not shutil.which(plc_command[0]):
        fail(parser, f"cannot run {plc_command[0]!r} (make the venv first, or pass --plc-command)")
    if ns.driver == "node" and not (ns.refserver / "loadgen.mjs").is_file():
        fail(parser, f"no loadgen.mjs in {ns.refserver}")
    # start.sh installs the load generator's packages itself; otherwise node would stop at
    # its first import (ERR_MODULE_NOT_FOUND) on a fresh machine.
    installed = (ns.refserver / "node_modules" / "@did-plc" / "lib").is_dir()
    if ns.driver == "node" and not ns.start_reference and not installed:
        fail(
            parser,
            f"the load generator's packages are not installed: run `npm ci` in "
            f"{ns.refserver} (or pass --start-reference, which does)",
        )
    return from_namespace(
        Options,
        ns,
        reference_url=ns.reference_url.rstrip("/"),
        port=ns.port or free_port(),
        timeout_s=ns.timeout,
        plc_command=plc_command,
    )
