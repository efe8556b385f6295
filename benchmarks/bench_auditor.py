"""Auditor replay throughput against the machine's signature-verification ceiling.

Run from the repository root (not collected by pytest: no test functions here)::

    .venv/bin/python benchmarks/bench_auditor.py [--ops 100000] [--workers 2] [--json out.json]

1. Generate an export file of ``--ops`` signed operations (``tests/auditor/generate.py``:
   mixed k256/p256 rotation keys, a PDS-like key shared by three accounts in four, updates by
   either key, recoveries nullifying key-1 updates, tombstones) in a temporary directory
   (kept between runs under the same parameters; never committed).
2. Ceiling: every op's signature checked exactly once with its signing key, with the same
   library calls the core uses (:meth:`plc.keys.PublicKey.verifies` over the unsigned DAG-CBOR),
   split over ``--workers`` processes; keys are parsed and inputs prepared before the clock
   starts. Nothing else is timed.
3. Replay: ``plc-audit verify`` of the same file in a fresh process (``--workers``
   validation processes), wall time; peak RSS of the coordinator and of the largest worker.
   The same replay of the first quarter of the file shows whether memory stays flat.

Prints ops/s of both, their ratio (the issue's target: replay >= 60 % of the ceiling) and
peak memory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from plc.codec import decode_signature  # noqa: E402
from plc.keys import parse_did_key  # noqa: E402
from plc.operation import parse_operation, rotation_keys_of  # noqa: E402
from plc.rules import signer_index  # noqa: E402

Job = list[tuple[str, bytes, bytes]]  # (signing did:key, unsigned DAG-CBOR, 64-byte sig)


def export_file(ops: int, shared_keys: int) -> Path:
    """The generated export (cached in the temp dir under its parameters)."""
    from tests.auditor.generate import generate_export

    directory = Path(tempfile.gettempdir()) / "plc-audit-bench"
    directory.mkdir(exist_ok=True)
    path = directory / f"export-{ops}-{shared_keys}.jsonl"
    if not path.exists():
        started = time.monotonic()
        partial = path.with_suffix(".partial")
        generate_export(partial, ops, seed="bench", shared_keys=shared_keys)
        partial.rename(path)
        print(f"generated {ops:,} ops in {time.monotonic() - started:.1f} s: {path}")
    return path


def signature_jobs(path: Path) -> Job:
    """For every op: the key that signed it, the signed bytes and the signature (untimed)."""
    keys_of: dict[str, tuple[str, ...]] = {}
    jobs: Job = []
    with open(path, "rb") as lines:
        for line in lines:
            value = json.loads(line)
            op = parse_operation(value["operation"])
            keys = rotation_keys_of(op) if op.prev is None else keys_of[op.prev]
            index = signer_index(keys, op)
            assert index is not None, f"seq {value['seq']} is not validly signed"
            jobs.append((keys[index], op.unsigned_cbor(), decode_signature(op.sig)))
            keys_of[op.cid] = rotation_keys_of(op)
    return jobs


def _verify_share(share: Job, barrier: Any, times: Any) -> None:
    prepared = [(parse_did_key(k), data, sig) for k, data, sig in share]
    barrier.wait()
    started = time.monotonic()
    for key, data, sig in prepared:
        if not key.verifies(data, sig):
            raise AssertionError("a signature did not verify")
    times.put((started, time.monotonic()))


def ceiling(jobs: Job, workers: int) -> float:
    """Signatures verified per second, all ``workers`` processes together."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    times = ctx.Queue()
    shares = [jobs[i::workers] for i in range(workers)]
    procs = [ctx.Process(target=_verify_share, args=(s, barrier, times)) for s in shares]
    for proc in procs:
        proc.start()
    spans = [times.get() for _ in procs]
    for proc in procs:
        proc.join()
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return len(jobs) / wall


_REPLAY = """
import json, resource, sys, time
from pathlib import Path
from auditor.audit import AuditOptions, verify_file
path, state, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
started = time.monotonic()
outcome = verify_file(path, state, AuditOptions(workers=workers, progress=False))
wall = time.monotonic() - started
print(json.dumps({
    "ops": outcome.ops, "wall_s": wall,
    "rss_coordinator_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "rss_largest_worker_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}))
"""


def replay(path: Path, workers: int) -> dict[str, Any]:
    """``verify_file`` of ``path`` in a fresh process; wall time and peak memory."""
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            [sys.executable, "-c", _REPLAY, str(path), f"{scratch}/state.sqlite3", str(workers)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["ops_per_s"] = result["ops"] / result["wall_s"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shared-keys", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    path = export_file(args.ops, args.shared_keys)
    quarter = path.with_name(path.stem + "-quarter.jsonl")
    if not quarter.exists():
        with open(path, "rb") as full_file, open(quarter, "wb") as out:
            for n, line in enumerate(full_file):
                if n >= args.ops // 4:
                    break
                out.write(line)
    # Replays first, from a small parent: a child's peak RSS counts the parent's at fork time.
    small = replay(quarter, args.workers)
    full = replay(path, args.workers)
    jobs = signature_jobs(path)
    curves = {"k256": 0, "p256": 0}
    for key, _, _ in jobs:
        curves[parse_did_key(key).curve.value] += 1
    top = ceiling(jobs, args.workers)
    results = {
        "ops": len(jobs),
        "signers": curves,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "ceiling_ops_per_s": top,
        "replay_ops_per_s": full["ops_per_s"],
        "ratio": full["ops_per_s"] / top,
        "replay_wall_s": full["wall_s"],
        "peak_rss_mib": {
            "coordinator": full["rss_coordinator_kib"] / 1024,
            "largest_worker": full["rss_largest_worker_kib"] / 1024,
            "quarter_file_coordinator": small["rss_coordinator_kib"] / 1024,
            "quarter_file_largest_worker": small["rss_largest_worker_kib"] / 1024,
        },
        "quarter_file_ops_per_s": small["ops_per_s"],
    }
    print(
        f"{len(jobs):,} ops ({curves['k256']:,} k256 / {curves['p256']:,} p256 signatures), "
        f"{args.workers} workers, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}\n"
        f"verify-only ceiling : {top:>10,.0f} ops/s\n"
        f"replay (plc-audit)  : {full['ops_per_s']:>10,.0f} ops/s "
        f"({full['wall_s']:.1f} s) = {results['ratio']:.0%} of the ceiling\n"
        f"peak RSS            : coordinator {results['peak_rss_mib']['coordinator']:.0f} MiB, "
        f"largest worker {results['peak_rss_mib']['largest_worker']:.0f} MiB "
        f"(quarter of the file: {results['peak_rss_mib']['quarter_file_coordinator']:.0f} / "
        f"{results['peak_rss_mib']['quarter_file_largest_worker']:.0f} MiB)"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
