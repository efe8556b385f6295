#!/usr/bin/env python3
"""The app's own cost per op, without an HTTP server: presigned creates and updates posted to
the ASGI app in this process by N concurrent tasks, with its real lifespan (SQLite file,
group commit, transparency log, checkpoints).

``compare_reference.py`` measures the server as deployed (uvicorn, sockets, the load
generator on the same cores). This separates what is ours from what is the HTTP server's:
CPU per op here is the app (validation, commit, the fsync thread), and the server's CPU per op
there minus this is uvicorn and the sockets. The ops are those ``load.py`` signs (mixed
secp256k1 / P-256 DIDs; updates cycle handle, pds, handle+aka, rotate).

Prints, per phase: ops, answers other than 200, ops/s (wall clock) and CPU per op (the
process's user + system time, every thread). Exits 1 if any answer was not 200.

Example::

    .venv/bin/python benchmarks/asgi_load.py --creates 3000 --updates 3000 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

_BENCHMARKS = str(Path(__file__).resolve().parent)
if _BENCHMARKS not in sys.path:  # make ``loadkit`` importable however this file is run
    sys.path.insert(0, _BENCHMARKS)

from loadkit.cli import new_parser  # noqa: E402
from loadkit.consoles import load_console as console  # noqa: E402
from loadkit.model import presign  # noqa: E402
from rich.table import Table  # noqa: E402

from plc.api.app import create_app  # noqa: E402
from plc.config import Settings  # noqa: E402

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def post(app: App, did: str, body: bytes) -> int:
    """``POST /{did}`` with ``body`` through the app; the response status."""
    path = "/" + did
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2582),
        "state": {},
    }
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the request stays connected until the app answers
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


async def phase(
    app: App, name: str, ops: Sequence[tuple[str, bytes]], clients: int
) -> dict[str, Any]:
    """Post ``ops`` (did, body) from ``clients`` concurrent tasks that take the next op in
    turn; the phase's result (ops, statuses, ops/s, CPU µs per op)."""
    statuses: Counter[int] = Counter()
    pending = iter(ops)

    async def client() -> None:
        for did, body in pending:
            statuses[await post(app, did, body)] += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "phase": name,
        "ops": len(ops),
        "not_200": sum(n for s, n in statuses.items() if s != 200),
        "statuses": dict(statuses),
        "ops_per_s": len(ops) / wall if wall else 0.0,
        "cpu_us_per_op": cpu / len(ops) * 1e6 if ops else 0.0,
    }


async def run(args: argparse.Namespace, database_url: str) -> list[dict[str, Any]]:
    """Presign, then run the create and update phases against a fresh app."""
    with console.status(f"signing {args.creates} genesis and {args.updates} update ops"):
        identities = presign(args.creates, args.updates, args.key_mix, "asgi")
    app: Any = create_app(Settings(database_url=database_url))
    results = []
    async with app.router.lifespan_context(app):
        creates = [(i.did, i.genesis) for i in identities]
        results.append(await phase(app, "create", creates, args.concurrency))
        # One update per DID at a time, as a PDS does: a DID's steps go out in order.
        rounds = max((len(i.steps) for i in identities), default=0)
        for n in range(rounds):
            updates = [(i.did, i.steps[n].body) for i in identities if n < len(i.steps)]
            results.append(await phase(app, f"update {n + 1}", updates, args.concurrency))
    return results


def _parser() -> argparse.ArgumentParser:
    parser = new_parser("asgi_load.py", (__doc__ or "").split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=3000, help="DIDs to create")
    parser.add_argument(
        "--updates",
        type=int,
        default=3000,
        help="updates, spread over the DIDs (over 10 per DID meets the hourly rate limit)",
    )
    parser.add_argument("--concurrency", "-c", type=int, default=8, help="concurrent clients")
    parser.add_argument("--key-mix", choices=("mixed", "secp256k1", "p256"), default="mixed")
    parser.add_argument(
        "--database-url", default=None, help="default: a fresh SQLite file in a temp directory"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; 0 when every answer was 200, else 1."""
    args = _parser().parse_args(argv)
    if args.creates < 1 or args.updates < 0 or args.concurrency < 1:
        _parser().error("--creates and --concurrency must be >= 1, --updates >= 0")
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with tempfile.TemporaryDirectory(prefix="plc-asgi-load-") as tmp:
        url = args.database_url or f"sqlite:///{tmp}/plc.sqlite3"
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(run(args, url))
    table = Table(title=f"in-process ASGI load, {args.concurrency} clients")
    for column in ("phase", "ops", "not 200", "ops/s (wall)", "CPU µs/op"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for r in results:
        table.add_row(
            r["phase"],
            f"{r['ops']:,}",
            str(r["not_200"]),
            f"{r['ops_per_s']:,.0f}",
            f"{r['cpu_us_per_op']:,.0f}",
        )
    console.print(table)
    return 1 if any(r["not_200"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
