"""One ``compare_reference.py`` run: start both servers, drive the same load at each, print
the comparison table and write ``--out``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from loadkit.compare_config import parse_args
from loadkit.comparison import TARGET_RATIO, compare, render
from loadkit.consoles import compare_console as console
from loadkit.drive import drive
from loadkit.servers import OurServer, Reference


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Exit 0 when both runs completed (whatever the ratios), 1 otherwise."""
    opts = parse_args(argv)
    reference = Reference(opts)
    ours = OurServer(opts)
    results_dir = Path(tempfile.mkdtemp(prefix="plc-compare-results-"))
    record: dict[str, Any] = {
        "tool": "compare_reference.py",
        "started_at": datetime.now(UTC).isoformat(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "loadavg_at_start": list(os.getloadavg()),
        "cpus": os.cpu_count(),
    }
    try:
        reference.start()
        ours.start()
        console.print(
            f"reference {reference.url}; ours {ours.url} (pid {ours.pid}, {opts.workers} "
            f"worker(s), {ours.dir / 'x.sqlite3'}); load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            markup=False,
        )
        runs = [
            ("reference", reference.url, opts.reference_retries, reference.watch_pids()),
            ("ours", ours.url, opts.ours_retries, {"ours": ours.pid}),
        ]
        if opts.order == "ours-first":
            runs.reverse()
        outputs: dict[str, dict[str, Any]] = {}
        for label, url, retries, watch in runs:
            outputs[label] = drive(opts, label, url, retries, watch, results_dir / f"{label}.json")
        record["reference"] = outputs["reference"]
        record["ours"] = outputs["ours"]
        record["server_log_errors"] = ours.log_errors()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        console.print(f"[red]failed:[/red] {exc}")
        return 1
    finally:
        ours.stop()
        reference.stop()
        shutil.rmtree(results_dir, ignore_errors=True)
    record["loadavg_at_end"] = list(os.getloadavg())
    rows = compare(record["reference"], record["ours"])
    record["comparison"] = rows
    record["finished_at"] = datetime.now(UTC).isoformat()
    title = (
        f"{opts.creates} creates, {opts.updates} updates, {opts.resolves} resolves, "
        f"{opts.concurrency} clients, {opts.driver} driver; ours: {opts.workers} worker(s), "
        f"SQLite; target {TARGET_RATIO:g}x"
    )
    console.print(render(rows, title))
    for label in ("reference", "ours"):
        verify = record[label].get("phases", {}).get("verify")
        if verify:
            console.print(f"verify {label}: {verify['matched']}/{verify['checked']} matched")
    if record["server_log_errors"]:
        console.print("errors in our server's log:", style="yellow")
        console.print(record["server_log_errors"], markup=False)
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2) + b"\n")
        console.print(f"results written to {opts.out}")
    return 0
