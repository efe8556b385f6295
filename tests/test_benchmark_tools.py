"""The load tools in ``benchmarks/`` still run end to end (small counts): ``load.py`` against
a live server, ``asgi_load.py`` in-process, ``compare_reference.py`` with a stand-in reference,
``count_instructions.py`` under valgrind.
Their numbers are not checked here (beyond a sanity range for the instruction count), only
that every op they send is accepted and read back and that their reports have the promised
shape."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from plc.api.app import create_app

from .conftest import Clock, LiveServer, make_settings

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_load_py_creates_updates_and_reads_back(live_server: LiveServer, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    done = _run(
        "load.py",
        "--url",
        live_server.url,
        "--creates",
        "12",
        "--updates",
        "24",
        "--resolves",
        "20",
        "--phases",
        "create,update,verify,resolve",
        "--no-progress",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    phases = orjson.loads(out.read_bytes())["phases"]
    assert phases["create"]["ok"] == 12
    assert phases["update"]["ok"] == 24
    assert phases["resolve"]["ok"] == 20
    assert phases["verify"]["matched"] == 12


def test_asgi_load_accepts_every_op() -> None:
    done = _run("asgi_load.py", "--creates", "10", "--updates", "20", "--concurrency", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "update 2" in done.stderr  # two updates per DID: two rounds


def test_compare_reference_repeats_and_summarises(
    sqlite_url: str, clock: Clock, tmp_path: Path
) -> None:
    """``compare_reference.py --repeat 2 --order alternate`` with the Python driver, our own
    server standing in for the reference (node and the reference stay out of the test run):
    two fresh comparisons, one of each order, and a summary of their ratios."""
    out = tmp_path / "compare.json"
    stand_in = create_app(make_settings(sqlite_url), clock=clock)
    with LiveServer(stand_in) as reference:
        done = _run(
            "compare_reference.py",
            "--reference-url",
            reference.url,
            "--driver",
            "python",
            "--repeat",
            "2",
            "--order",
            "alternate",
            "--creates",
            "10",
            "--updates",
            "10",
            "--resolves",
            "20",
            "--out",
            str(out),
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    record = orjson.loads(out.read_bytes())
    assert [run["order"] for run in record["runs"]] == ["reference-first", "ours-first"]
    for run in record["runs"]:
        assert {row["phase"] for row in run["comparison"]} == {"create", "update", "resolve"}
        assert all(row["ours_ok"] == row["reference_ok"] for row in run["comparison"])
    summary = {row["phase"]: row for row in record["summary"]}
    assert summary["update"]["runs"] == 2 and len(summary["update"]["ratios"]) == 2
    for run in record["runs"]:  # the VM steal share while each server was driven (Linux)
        for label in ("reference", "ours"):
            assert 0 <= run[label]["vm_steal_pct"] <= 100
    assert "VM steal" in done.stdout
    assert summary["update"]["min"] <= summary["update"]["median"] <= summary["update"]["max"]


def test_compare_reference_says_when_the_load_generator_is_not_installed(tmp_path: Path) -> None:
    refserver = tmp_path / "refserver"
    refserver.mkdir()
    (refserver / "loadgen.mjs").write_text("// a checkout without node_modules\n")
    done = _run("compare_reference.py", "--refserver", str(refserver), "--creates", "1")
    assert done.returncode == 1
    assert "run `npm ci` in" in done.stderr and str(refserver) in done.stderr


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_count_instructions_counts_only_the_chosen_phase() -> None:
    done = _run("count_instructions.py", "--creates", "8", "--updates", "8")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    match = re.fullmatch(r"update: 8 ops, ([\d,]+) instructions, ([\d,]+) per op\n", done.stdout)
    assert match is not None, done.stdout
    per_op = int(match.group(2).replace(",", ""))
    # An update is on the order of a million instructions (ECDSA, SQLite, the rules); the
    # interpreter's start-up alone is hundreds of millions, so this shows it was not counted.
    assert 200_000 < per_op < 20_000_000
