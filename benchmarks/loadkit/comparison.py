"""The comparison of two load runs: ours/reference per timed phase, against the target ratio,
as rows and as a table."""

from __future__ import annotations

import statistics
from typing import Any

from rich.table import Table

TARGET_RATIO = 5.0
"""Issue 2's target: ours at least 5x the reference on each of the three phases."""
TIMED_PHASES = (
    ("create", "creates/s"),
    ("update", "updates/s"),
    ("resolve", "GET /{did}/s"),
    ("export", "export ops/s"),
)


def server_cpu_ms_per_ok(phase: dict[str, Any]) -> float | None:
    """Server-side CPU (every watched process but the generator) per successful request."""
    cpu = phase.get("cpu") or {}
    seconds = sum(v["cpu_s"] for k, v in cpu.items() if k != "loadgen")
    ok = phase.get("ok") or 0
    return round(1000 * seconds / ok, 3) if seconds and ok else None


def compare(reference: dict[str, Any], ours: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per timed phase present in both results."""
    rows = []
    for name, unit in TIMED_PHASES:
        ref = reference.get("phases", {}).get(name)
        our = ours.get("phases", {}).get(name)
        if not ref or not our:
            continue
        key = "ops_per_s" if name == "export" else "ok_per_s"
        ratio = our[key] / ref[key] if ref[key] else None
        rows.append(
            {
                "phase": name,
                "unit": unit,
                "reference": ref[key],
                "ours": our[key],
                "ratio": round(ratio, 2) if ratio is not None else None,
                "meets_target": ratio is not None and ratio >= TARGET_RATIO,
                "reference_ok": f"{ref['ok']}/{ref['requests']}",
                "ours_ok": f"{our['ok']}/{our['requests']}",
                "reference_p50_ms": ref["latency_ms"]["p50"],
                "ours_p50_ms": our["latency_ms"]["p50"],
                "reference_p99_ms": ref["latency_ms"]["p99"],
                "ours_p99_ms": our["latency_ms"]["p99"],
                "reference_retries": ref.get("retries", 0),
                "reference_errors": ref.get("errors", {}),
                "ours_errors": our.get("errors", {}),
                "reference_server_cpu_ms_per_ok": server_cpu_ms_per_ok(ref),
                "ours_server_cpu_ms_per_ok": server_cpu_ms_per_ok(our),
            }
        )
    return rows


def render(rows: list[dict[str, Any]], title: str) -> Table:
    """The comparison table."""
    table = Table(title=title)
    for column in (
        "phase",
        "reference",
        "ours",
        "ours/ref",
        "p50 ms ref/ours",
        "p99 ms ref/ours",
        "srv CPU ms/op ref/ours",
        "ok ref / ours",
        "ref retries",
        "errors (final)",
    ):
        table.add_column(
            column, justify="left" if column in ("phase", "errors (final)") else "right"
        )
    for row in rows:
        ratio = row["ratio"]
        mark = "" if ratio is None else ("[green]" if row["meets_target"] else "[red]")
        errors = []
        if row["reference_errors"]:
            errors.append(f"ref {row['reference_errors']}")
        if row["ours_errors"]:
            errors.append(f"ours {row['ours_errors']}")
        table.add_row(
            row["unit"],
            f"{row['reference']:,.1f}",
            f"{row['ours']:,.1f}",
            f"{mark}{ratio:.2f}x" if ratio is not None else "-",
            f"{row['reference_p50_ms']} / {row['ours_p50_ms']}",
            f"{row['reference_p99_ms']} / {row['ours_p99_ms']}",
            f"{row['reference_server_cpu_ms_per_ok']} / {row['ours_server_cpu_ms_per_ok']}",
            f"{row['reference_ok']} / {row['ours_ok']}",
            str(row["reference_retries"]),
            "; ".join(errors) or "-",
        )
    return table


def summarize(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per phase over several comparisons (each a list of :func:`compare` rows): every
    run's ratio in order, their median, range, and how many runs met :data:`TARGET_RATIO`."""
    summary = []
    for name, unit in TIMED_PHASES:
        ratios = [row["ratio"] for rows in runs for row in rows if row["phase"] == name]
        known = [r for r in ratios if r is not None]
        if not known:
            continue
        summary.append(
            {
                "phase": name,
                "unit": unit,
                "ratios": ratios,
                "median": round(statistics.median(known), 2),
                "min": min(known),
                "max": max(known),
                "runs_at_target": sum(r >= TARGET_RATIO for r in known),
                "runs": len(ratios),
            }
        )
    return summary


def render_summary(summary: list[dict[str, Any]], title: str) -> Table:
    """The table of :func:`summarize`."""
    table = Table(title=title)
    for column in ("phase", "ours/ref per run", "median", "min", "max", "runs at target"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for row in summary:
        mark = "[green]" if row["runs_at_target"] == row["runs"] else "[red]"
        table.add_row(
            row["unit"],
            " ".join("-" if r is None else f"{r:.1f}" for r in row["ratios"]),
            f"{row['median']:.2f}x",
            f"{row['min']:.2f}x",
            f"{row['max']:.2f}x",
            f"{mark}{row['runs_at_target']}/{row['runs']}",
        )
    return table
