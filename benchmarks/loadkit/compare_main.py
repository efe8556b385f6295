"""A ``compare_reference.py`` invocation: ``--repeat`` times, start both servers on fresh
databases, drive the same load at each, print the comparison table; then (for more than one
run) the summary of the ratios, and write ``--out``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from loadkit.compare_config import Options, parse_args
from loadkit.comparison import TARGET_RATIO, compare, render, render_summary, summarize
from loadkit.consoles import compare_console as console
from loadkit.drive import drive
from loadkit.measure import machine_ticks, steal_percent
from loadkit.servers import OurServer, Reference


def run_once(opts: Options) -> dict[str, Any] | None:
    """One comparison (``opts.order`` is reference-first or ours-first): the record with
    both results and the comparison rows, or None when a server or the driver failed."""
    reference = Reference(opts)
    ours = OurServer(opts)
    results_dir = Path(tempfile.mkdtemp(prefix="plc-compare-results-"))
    record: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "order": opts.order,
        "loadavg_at_start": list(os.getloadavg()),
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
            before = machine_ticks()
            outputs[label] = drive(opts, label, url, retries, watch, results_dir / f"{label}.json")
            outputs[label]["vm_steal_pct"] = steal_percent(before, machine_ticks())
        record["reference"] = outputs["reference"]
        record["ours"] = outputs["ours"]
        record["server_log_errors"] = ours.log_errors()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        console.print(f"[red]failed:[/red] {exc}")
        return None
    finally:
        ours.stop()
        reference.stop()
        shutil.rmtree(results_dir, ignore_errors=True)
    record["loadavg_at_end"] = list(os.getloadavg())
    record["comparison"] = compare(record["reference"], record["ours"])
    record["finished_at"] = datetime.now(UTC).isoformat()
    return record


def _report(opts: Options, record: dict[str, Any]) -> None:
    title = (
        f"{opts.creates} creates, {opts.updates} updates, {opts.resolves} resolves, "
        f"{opts.concurrency} clients, {opts.driver} driver; ours: {opts.workers} worker(s), "
        f"SQLite; {record['order']}; target {TARGET_RATIO:g}x"
    )
    console.print(render(record["comparison"], title))
    for label in ("reference", "ours"):
        verify = record[label].get("phases", {}).get("verify")
        if verify:
            console.print(f"verify {label}: {verify['matched']}/{verify['checked']} matched")
    steal = {label: record[label].get("vm_steal_pct") for label in ("reference", "ours")}
    if any(value is not None for value in steal.values()):
        console.print(
            "CPU time taken by the hypervisor (VM steal) while each server was driven: "
            + ", ".join(f"{label} {value} %" for label, value in steal.items()),
            markup=False,
        )
    if record["server_log_errors"]:
        console.print("errors in our server's log:", style="yellow")
        console.print(record["server_log_errors"], markup=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Exit 0 when every run completed (whatever the ratios), 1 otherwise."""
    opts = parse_args(argv)
    header: dict[str, Any] = {
        "tool": "compare_reference.py",
        "started_at": datetime.now(UTC).isoformat(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "cpus": os.cpu_count(),
    }
    records: list[dict[str, Any]] = []
    failed = 0
    for index in range(opts.repeat):
        order = opts.order
        if order == "alternate":
            order = "reference-first" if index % 2 == 0 else "ours-first"
        if opts.repeat > 1:
            console.rule(f"run {index + 1} of {opts.repeat} ({order})")
        record = run_once(replace(opts, order=order))
        if record is None:
            failed += 1
            continue
        _report(opts, record)
        records.append(record)
    output: dict[str, Any]
    if opts.repeat == 1:
        output = {**header, **records[0]} if records else header
    else:
        summary = summarize([record["comparison"] for record in records])
        console.print(
            render_summary(summary, f"{len(records)} runs ({failed} failed); ours/reference")
        )
        output = {**header, "runs": records, "summary": summary, "failed_runs": failed}
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_bytes(orjson.dumps(output, option=orjson.OPT_INDENT_2) + b"\n")
        console.print(f"results written to {opts.out}")
    return 1 if failed else 0
