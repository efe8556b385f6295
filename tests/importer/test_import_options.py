"""``plc import``'s numeric options are bounded: a value past a bound (``--interval inf`` used
to end in an ``OverflowError`` traceback from ``time.sleep``) is refused in one usage error,
exit 1, before anything is read or created."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plc.api.app import create_app

from ..conftest import REPO, LiveServer, make_settings


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[str]:
    """A live, empty directory: an import that ran would read it and end at once, exit 0."""
    with LiveServer(create_app(make_settings(f"sqlite:///{tmp_path / 'source.sqlite3'}"))) as live:
        yield live.url


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--interval", "inf"),
        ("--interval", "3600.5"),
        ("--after", str(2**53)),
    ],
)
def test_an_option_past_its_bound_is_refused_before_anything_runs(
    directory: str, tmp_path: Path, option: str, value: str
) -> None:
    database = tmp_path / "never.sqlite3"
    command = [sys.executable, "-m", "plc.cli", "import", directory, option, value]
    command += ["--database-url", f"sqlite:///{database}", "--no-progress"]
    done = subprocess.run(command, capture_output=True, cwd=REPO, timeout=60)
    said = done.stderr.decode()
    assert done.returncode == 1, said
    assert f"Invalid value for '{option}'" in said
    assert "Traceback" not in said and "Error:" in said
    assert done.stdout == b"" and not database.exists()


def test_the_largest_after_is_taken(directory: str, tmp_path: Path) -> None:
    database = tmp_path / "mirror.sqlite3"
    command = [sys.executable, "-m", "plc.cli", "import", directory, "--interval", "0"]
    command += ["--after", str(2**53 - 1), "--database-url", f"sqlite:///{database}"]
    done = subprocess.run(command, capture_output=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert f"resume with --after {2**53 - 1}" in done.stderr.decode()
