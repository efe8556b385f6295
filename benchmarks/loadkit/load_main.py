"""One ``load.py`` run: check the target's health, presign the ops, run the configured phases,
print the summary and write ``--out``."""

from __future__ import annotations

import asyncio
import os
import platform
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from loadkit.consoles import load_console as console
from loadkit.load_config import OPS_PER_HOUR, Config, parse_args
from loadkit.model import Identity, presign
from loadkit.report import say, summary_table
from loadkit.runner import Runner
from loadkit.target import Target


async def run(cfg: Config) -> dict[str, Any]:
    """Run the configured phases against ``cfg.url``; the results dict."""
    results: dict[str, Any] = {
        "tool": "load.py",
        "started_at": datetime.now(UTC).isoformat(),
        "config": {
            **{k: v for k, v in vars(cfg).items() if k not in ("out", "phases")},
            "phases": list(cfg.phases),
            "out": str(cfg.out) if cfg.out else None,
        },
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": f"{platform.system()} {platform.release()}",
            "loadavg_at_start": list(os.getloadavg()),
        },
        "phases": {},
    }
    target = Target(cfg)
    try:
        health = await target.request("GET", "/_health")
        if health.status != 200:
            raise SystemExit(
                f"load.py: server at {cfg.url} not healthy: {health.status} "
                f"{health.body[:200].decode('utf-8', 'replace')}"
            )
        try:
            results["server_health"] = orjson.loads(health.body)
        except orjson.JSONDecodeError:
            results["server_health"] = health.body[:200].decode("utf-8", "replace")
        say(
            f"target {cfg.url} health={health.body.decode('utf-8', 'replace')} "
            f"key-mix={cfg.key_mix} N={cfg.creates} M={cfg.updates} C={cfg.concurrency} "
            f"R={cfg.resolves}"
        )
        if cfg.creates and cfg.updates > OPS_PER_HOUR * cfg.creates:
            say(
                f"warning: {cfg.updates} updates over {cfg.creates} DIDs is more than "
                f"{OPS_PER_HOUR} per DID: a server with plc.directory's rate limits answers 429"
            )
        identities: list[Identity] = []
        if "create" in cfg.phases:
            t0 = time.perf_counter()
            run_tag = f"{int(time.time()):x}{random.randrange(1 << 20):05x}"
            with console.status(f"signing {cfg.creates} genesis and {cfg.updates} update ops"):
                identities = presign(cfg.creates, cfg.updates, cfg.key_mix, run_tag)
            wall = round(time.perf_counter() - t0, 3)
            results["phases"]["prep"] = {"wall_s": wall, "note": "key generation + signing"}
            say(f"[prep] {len(identities)} DIDs presigned in {wall}s")
        progress = Progress(
            TextColumn("{task.description:>12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not cfg.progress,
            transient=True,
        )
        runner = Runner(cfg, target, progress)
        with progress:
            if identities:
                await runner.create(identities)
                if "update" in cfg.phases and cfg.updates:
                    await runner.update(identities)
                if "verify" in cfg.phases:
                    await runner.verify(identities)
                if "resolve" in cfg.phases and cfg.resolves and runner.results["create"]["ok"]:
                    await runner.resolve(identities)
            elif set(cfg.phases) & {"update", "verify", "resolve"}:
                say("update/verify/resolve need the create phase; skipped")
            if "export" in cfg.phases:
                await runner.export()
        results["phases"].update(runner.results)
    finally:
        await target.close()
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the load, print the summary, write ``--out``. Exit 0 even when some
    requests failed (the results say so); 1 on bad arguments, 2 on a refused target."""
    cfg = parse_args(argv)
    with _event_loop_runner() as runner:
        results = runner.run(run(cfg))
    console.print(summary_table(results["phases"]))
    if cfg.out:
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        cfg.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
        say(f"results written to {cfg.out}")
    return 0
