"""``load.py``'s reporting: plain lines, one line per phase (as loadgen.mjs prints it), and the
summary table of the timed phases."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from loadkit.consoles import load_console


def say(text: str, out: Console | None = None) -> None:
    """Print a plain line (no rich markup, no wrapping) to stderr."""
    (out or load_console).print(text, markup=False, highlight=False, soft_wrap=True)


def print_phase(result: dict[str, Any], out: Console) -> None:
    """One line per phase, as loadgen.mjs prints it."""
    lat = result["latency_ms"]
    line = (
        f"[{result['phase']}] {result['ok']}/{result['requests']} ok in {result['wall_s']}s -> "
        f"{result['ok_per_s']} ok/s; latency ms p50={lat['p50']} p90={lat['p90']} "
        f"p99={lat['p99']} max={lat['max']}"
    )
    if result.get("cpu"):
        line += "; cpu " + " ".join(
            f"{k}={v['cpu_s']}s({v['util_pct']}%, {v['cpu_ms_per_ok']}ms/op)"
            for k, v in result["cpu"].items()
        )
    if result["failed"]:
        line += f"; errors={result['errors']}"
    if result.get("retries"):
        line += f"; retries={result['retries']}"
    if result["hit_time_cap"]:
        line += " (HIT TIME CAP)"
    say(line, out)


def summary_table(results: dict[str, Any]) -> Table:
    """A table of the timed phases."""
    table = Table(title="load.py results")
    for column in ("phase", "ok/requests", "wall s", "ok/s", "p50 ms", "p90 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    table.add_column("errors")
    for name in ("create", "update", "resolve", "export"):
        r = results.get(name)
        if not r:
            continue
        lat = r["latency_ms"]
        table.add_row(
            name,
            f"{r['ok']}/{r['requests']}",
            f"{r['wall_s']:.2f}",
            f"{r['ok_per_s']:,.1f}",
            *(f"{lat[p]:.1f}" if lat[p] is not None else "-" for p in ("p50", "p90", "p99")),
            ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "-",
        )
    return table
