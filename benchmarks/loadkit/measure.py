"""Measuring one timed phase: request outcomes, nearest-rank percentiles, CPU snapshots from
``/proc``, error grouping, and the per-phase result dict (loadgen.mjs field names)."""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from loadkit.load_config import Config

_DID_RE = re.compile(r"did:plc:[a-z2-7]+")


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's outcome: status (0 = no answer), body, latency in ms."""

    status: int
    body: bytes
    ms: float


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted values (as loadgen.mjs computes it)."""
    if not ordered:
        return None
    idx = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return round(ordered[idx], 3)


def machine_ticks() -> tuple[int, int] | None:
    """``(steal, total)`` clock ticks of the whole machine so far (``/proc/stat``: every CPU,
    every state), or None where there is no ``/proc/stat``."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(fields) < 8:
        return None
    return fields[7], sum(fields)


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to others between two
    :func:`machine_ticks` readings, in percent (None when unknown). On a VM a high share
    slows the servers measured meanwhile."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def _cpu_ticks() -> dict[int, tuple[int, int]]:
    """pid → (parent pid, CPU ticks incl. reaped children) of every process in /proc."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        ticks = sum(int(x) for x in fields[11:15])
        table[int(entry)] = (int(fields[1]), ticks)
    return table


def cpu_snapshot(watch: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each watched process and its descendants, and by us."""
    out: dict[str, float] = {}
    if watch and os.path.isdir("/proc"):
        table = _cpu_ticks()
        hz = os.sysconf("SC_CLK_TCK")
        for name, root in watch.items():
            if root not in table:
                continue
            members = {root}
            grew = True
            while grew:
                grew = False
                for pid, (ppid, _) in table.items():
                    if pid not in members and ppid in members:
                        members.add(pid)
                        grew = True
            out[name] = sum(table[pid][1] for pid in members) / hz
    out["loadgen"] = time.process_time()
    return out


def error_key(answer: Answer) -> str:
    """``"<status> <message>"`` with DIDs and JSON blobs elided, to group errors."""
    text = answer.body[:300].decode("utf-8", "replace")
    try:
        value = orjson.loads(answer.body)
        if isinstance(value, dict) and isinstance(value.get("message"), str):
            text = value["message"]
    except orjson.JSONDecodeError:
        pass
    text = _DID_RE.sub("did:plc:…", text[:160])
    text = re.sub(r"\{.*$", "{…}", text)
    return f"{answer.status} {text}".strip()


class Phase:
    """Counters and latencies of one timed phase."""

    def __init__(self, name: str, cfg: Config) -> None:
        self.name = name
        self.cfg = cfg
        self.latencies: list[float] = []
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()
        self.retries = 0
        self.bytes = 0
        self.first_error: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.t0 = 0.0
        self.deadline = 0.0
        self.wall = 0.0
        self.cpu0: dict[str, float] = {}

    def start(self) -> None:
        """Start the clock (and the CPU accounting)."""
        self.cpu0 = cpu_snapshot(self.cfg.watch_pids)
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + self.cfg.phase_seconds

    def expired(self) -> bool:
        """True once the phase's time cap has passed."""
        return time.perf_counter() > self.deadline

    def record(self, answer: Answer, label: str = "", ok_status: int = 200) -> bool:
        """Count one request; True if it had the expected status."""
        self.latencies.append(answer.ms)
        self.bytes += len(answer.body)
        if answer.status == ok_status:
            self.ok += 1
            return True
        self.errors[error_key(answer)] += 1
        if self.first_error is None:
            self.first_error = {
                "label": label,
                "status": answer.status,
                "body": answer.body[:500].decode("utf-8", "replace"),
            }
        return False

    def end(self) -> dict[str, Any]:
        """Stop the clock; the phase's results (loadgen.mjs field names)."""
        self.wall = time.perf_counter() - self.t0
        cpu1 = cpu_snapshot(self.cfg.watch_pids)
        cpu = {}
        for name, value in cpu1.items():
            if name in self.cpu0:
                seconds = value - self.cpu0[name]
                cpu[name] = {
                    "cpu_s": round(seconds, 2),
                    "util_pct": round(100 * seconds / self.wall, 1) if self.wall else None,
                    "cpu_ms_per_ok": round(1000 * seconds / self.ok, 3) if self.ok else None,
                }
        ordered = sorted(self.latencies)
        count = len(ordered)
        result: dict[str, Any] = {
            "phase": self.name,
            "requests": count,
            "ok": self.ok,
            "failed": count - self.ok,
            "wall_s": round(self.wall, 3),
            "ok_per_s": round(self.ok / self.wall, 1) if self.wall else 0.0,
            "req_per_s": round(count / self.wall, 1) if self.wall else 0.0,
            "latency_ms": {
                "mean": round(sum(ordered) / count, 3) if count else None,
                "p50": percentile(ordered, 50),
                "p90": percentile(ordered, 90),
                "p99": percentile(ordered, 99),
                "max": percentile(ordered, 100),
            },
            "bytes": self.bytes,
            "cpu": cpu,
            "hit_time_cap": self.expired(),
            "errors": dict(self.errors),
        }
        if self.retries:
            result["retries"] = self.retries
            result["retried_errors"] = dict(self.retried)
        if self.first_error:
            result["first_error"] = self.first_error
        result.update(self.extra)
        return result
