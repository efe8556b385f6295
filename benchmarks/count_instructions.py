#!/usr/bin/env python3
"""Instructions per op of the app, counted by valgrind's callgrind: a measure that does not
move with the VM's speed, for A/B comparisons of small code changes.

Runs ``asgi_load.py`` (presigned ops posted to the app in-process) under
``valgrind --tool=callgrind --instr-atstart=no`` and switches counting on
(``callgrind_control -i on``) only while the chosen phases run, so start-up, signing and the
other phases are not counted. Every thread of the process counts (the COMMIT thread too).

On the 2-core development VM wall-clock rates of the same code differ by up to a quarter from
one run to the next; these counts differ by about 1 %, so a change worth 2 % shows. Under
valgrind the process runs some 50x slower: keep the counts small.

Example::

    .venv/bin/python benchmarks/count_instructions.py --creates 200 --updates 400
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_BENCHMARKS = Path(__file__).resolve().parent
_INNER = "PLC_COUNT_INSTRUCTIONS_PHASES"


def _inner(argv: Sequence[str]) -> int:
    """Inside valgrind: run asgi_load with counting switched on around the chosen phases."""
    sys.path.insert(0, str(_BENCHMARKS))
    import asgi_load

    wanted = tuple(os.environ[_INNER].split(","))
    plain = asgi_load.phase

    def toggle(state: str) -> None:
        subprocess.run(
            ["callgrind_control", "-i", state, str(os.getpid())], capture_output=True, check=True
        )

    async def counted(app: Any, name: str, ops: Any, clients: int) -> dict[str, Any]:
        if not name.startswith(wanted):
            return await plain(app, name, ops, clients)
        toggle("on")
        try:
            return await plain(app, name, ops, clients)
        finally:
            toggle("off")

    asgi_load.phase = counted
    return asgi_load.main(list(argv))


def _total(out_file: Path) -> int:
    """The ``totals:`` line of a callgrind output file (its ``summary:`` stays 0 when counting
    was switched on and off during the run)."""
    for line in out_file.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {out_file}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prints instructions per op of the counted phases; 1 if a run failed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=200, help="DIDs created (not counted)")
    parser.add_argument("--updates", type=int, default=400, help="updates (counted)")
    parser.add_argument("--phase", choices=("update", "create"), default="update")
    parser.add_argument("--concurrency", "-c", type=int, default=8)
    parser.add_argument("--key-mix", choices=("mixed", "secp256k1", "p256"), default="mixed")
    args = parser.parse_args(argv)
    counted_ops = args.updates if args.phase == "update" else args.creates
    if counted_ops < 1:
        parser.error(f"--{args.phase}s must be at least 1")
    with tempfile.TemporaryDirectory(prefix="plc-instructions-") as tmp:
        out_file = Path(tmp) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out_file}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--creates",
            str(args.creates),
            "--updates",
            str(args.updates if args.phase == "update" else 0),
            "--concurrency",
            str(args.concurrency),
            "--key-mix",
            args.key_mix,
        ]
        env = {**os.environ, _INNER: args.phase}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not out_file.exists():
            print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
            return 1
        total = _total(out_file)
    per_op = total // counted_ops
    print(f"{args.phase}: {counted_ops} ops, {total:,} instructions, {per_op:,} per op")
    return 0


if __name__ == "__main__":
    if os.environ.get(_INNER):
        argv = sys.argv[1:]
        sys.exit(_inner(argv))
    sys.exit(main())
