"""One run of a load generator (loadgen.mjs, or our ``load.py``) against one server, with the
options of the comparison; its ``--out`` JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from loadkit.compare_config import BENCHMARKS, NODE_KEY_MIX, REPO, Options
from loadkit.consoles import compare_console as console


def drive(
    opts: Options, label: str, url: str, retries: int, watch: dict[str, int], out: Path
) -> dict[str, Any]:
    """Run the load generator against ``url``; its ``--out`` JSON.

    Raises:
        RuntimeError: the generator failed or wrote no results.
    """
    watch_arg = ",".join(f"{k}={v}" for k, v in watch.items())
    common = [
        "--url",
        url,
        "--creates",
        str(opts.creates),
        "--updates",
        str(opts.updates),
        "--resolves",
        str(opts.resolves),
        "--concurrency",
        str(opts.concurrency),
        "--phases",
        opts.phases,
        "--retries",
        str(retries),
        "--phase-seconds",
        str(opts.phase_seconds),
        "--out",
        str(out),
    ]
    if opts.driver == "node":
        command = [
            opts.node,
            str(opts.refserver / "loadgen.mjs"),
            *common,
            "--key-mix",
            NODE_KEY_MIX[opts.key_mix],
            "--timeout-ms",
            str(int(opts.timeout_s * 1000)),
        ]
    else:
        command = [
            sys.executable,
            str(BENCHMARKS / "load.py"),
            *common,
            "--key-mix",
            opts.key_mix,
            "--timeout",
            str(opts.timeout_s),
            "--no-progress",
        ]
    if watch_arg:
        command += ["--watch-pids", watch_arg]
    console.rule(f"{label}: {url} ({opts.driver} driver, retries {retries})")
    # Each phase is capped by --phase-seconds; signing before the timed phases is untimed.
    budget = opts.phase_seconds * 5 + 600
    try:
        subprocess.run(command, check=True, timeout=budget, cwd=str(REPO))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{label}: load generator failed: {exc}") from exc
    if not out.is_file():
        raise RuntimeError(f"{label}: load generator wrote no {out}")
    value = orjson.loads(out.read_bytes())
    assert isinstance(value, dict)
    return value
