"""Logs whose per-DID findings pile up, and the bytes of evidence the auditor writes for them.

- :func:`chained_log`: one op with a bad signature, then ``chain`` more ops of the same DID
  each chained to the one before (every one ``chained-to-invalid``).
- :func:`bad_off_valid_log`: ``valid`` valid ops of one DID, then ``bad`` ops with bad
  signatures hanging off its head (every one ``invalid-signature``).

Run ``python -m tests.auditor.evidence_size [CHAIN] [VALID BAD]`` from the repository root
to print, for both, the lines involved, the findings and the bytes of the findings file
``plc-audit verify --findings`` writes (measured through the command line, so the same
script measures any version of the auditor).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from plc.did import did_for_genesis
from plc.exportline import build_line
from plc.keys import PrivateKey
from plc.operation import parse_operation
from plc.timestamps import format_timestamp

from .generate import T0, signed_op

REPO = Path(__file__).resolve().parents[2]


def _op(keys: list[PrivateKey], prev: str | None, n: int, signer: PrivateKey) -> dict[str, Any]:
    return signed_op(keys, prev, f"handle-{n}.example.com", signer)


class _Lines:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def add(self, did: str, op: dict[str, Any]) -> str:
        parsed = parse_operation(op)
        seq = len(self.lines) + 1
        when = format_timestamp(T0 + timedelta(milliseconds=seq))
        self.lines.append(build_line(did, parsed.cid, seq, when, parsed.canonical_json()))
        return parsed.cid


def _genesis(lines: _Lines, name: str) -> tuple[str, list[PrivateKey], str]:
    keys = [PrivateKey.from_seed(f"{name}-0"), PrivateKey.from_seed(f"{name}-1")]
    op = _op(keys, None, 0, keys[0])
    did = did_for_genesis(parse_operation(op))
    return did, keys, lines.add(did, op)


def chained_log(chain: int) -> list[bytes]:
    """Genesis, an op with a bad signature, then ``chain`` ops each on the one before."""
    lines = _Lines()
    did, keys, cid = _genesis(lines, "chained")
    stranger = PrivateKey.from_seed("chained-stranger")
    cid = lines.add(did, _op(keys, cid, 1, stranger))
    for n in range(chain):
        cid = lines.add(did, _op(keys, cid, n + 2, keys[0]))
    return lines.lines


def bad_off_valid_log(valid: int, bad: int) -> list[bytes]:
    """``valid`` valid ops of one DID, then ``bad`` badly signed ops on its head."""
    lines = _Lines()
    did, keys, head = _genesis(lines, "history")
    for n in range(1, valid):
        head = lines.add(did, _op(keys, head, n, keys[n % 2]))
    stranger = PrivateKey.from_seed("history-stranger")
    for n in range(bad):
        lines.add(did, _op(keys, head, valid + n, stranger))
    return lines.lines


def interleaved_log(rounds: int) -> list[bytes]:
    """A DID's genesis, then ``rounds`` times: a badly signed op on its head and two valid
    ops (each finding after the first extends the one before with three lines)."""
    lines = _Lines()
    did, keys, head = _genesis(lines, "interleaved")
    stranger = PrivateKey.from_seed("interleaved-stranger")
    for n in range(rounds):
        lines.add(did, _op(keys, head, 3 * n + 1, stranger))
        head = lines.add(did, _op(keys, head, 3 * n + 2, keys[0]))
        head = lines.add(did, _op(keys, head, 3 * n + 3, keys[1]))
    return lines.lines


@dataclass
class Measured:
    """One run of ``plc-audit verify`` over a log."""

    lines: int
    line_bytes: int
    findings: int
    findings_bytes: int
    exit_code: int

    @property
    def bytes_per_line(self) -> float:
        """Bytes of the findings file per line of the log."""
        return self.findings_bytes / self.lines


def measure(lines: list[bytes], work: Path) -> Measured:
    """Run ``plc-audit verify`` over ``lines`` (in ``work``) and size its findings file."""
    export, out = work / "export.jsonl", work / "findings.jsonl"
    export.write_bytes(b"".join(line + b"\n" for line in lines))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "auditor",
            "verify",
            str(export),
            "--state",
            str(work / "state.sqlite3"),
            "--findings",
            str(out),
            "--workers",
            "0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    data = out.read_bytes()
    return Measured(
        len(lines),
        sum(len(line) + 1 for line in lines),
        data.count(b"\n"),
        len(data),
        done.returncode,
    )


def main(argv: list[str]) -> None:
    chain = int(argv[0]) if argv else 1000
    valid, bad = (int(argv[1]), int(argv[2])) if len(argv) > 2 else (1000, 200)
    for name, lines in (
        (f"{chain} chained ops", chained_log(chain)),
        (f"{bad} bad ops off a {valid}-op history", bad_off_valid_log(valid, bad)),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            m = measure(lines, Path(tmp))
        print(
            f"{name}: {m.lines} lines ({m.line_bytes} bytes), {m.findings} findings, "
            f"findings file {m.findings_bytes} bytes ({m.bytes_per_line:.0f} bytes per line), "
            f"exit {m.exit_code}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
