"""The Dockerfile's image, checked without a Docker daemon (there is none on the development
and CI machines): its build context, install step, settings and entry point.

What the image does is replayed with the same inputs: only the files its ``COPY`` lines name are
put in a build directory, built into a wheel as ``pip install .`` builds them (an isolated
build from ``pyproject.toml``), installed into a fresh virtual environment, and started as its
``ENTRYPOINT`` with its ``ENV`` (the volume path mapped to a temporary directory, the port to a
free one). The base image and the non-root user are the only steps not replayed; the
dependencies come from the test environment's own site-packages rather than a second download.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .conftest import REPO, free_port
from .helpers import new_did

DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Image:
    """What a Dockerfile says, for the instructions ours uses."""

    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    workdir: str = "/"
    runs: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)


def parse_dockerfile(text: str) -> Image:
    """The instructions of ``text`` (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", text)
    image = Image()
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        rest = rest.strip()
        match instruction.upper():
            case "FROM":
                image.base = rest
            case "ENV":
                for pair in shlex.split(rest):
                    name, _, value = pair.partition("=")
                    image.env[name] = value
            case "COPY":
                *sources, destination = rest.split()
                image.copies.append((sources, destination))
            case "WORKDIR":
                image.workdir = rest
            case "RUN":
                image.runs.append(rest)
            case "VOLUME":
                image.volumes.extend(json.loads(rest))
            case "EXPOSE":
                image.exposed.extend(rest.split())
            case "ENTRYPOINT":
                image.entrypoint = json.loads(rest)
            case "USER":
                pass
            case other:
                raise AssertionError(f"instruction {other} is not replayed by this test")
    return image


IMAGE = parse_dockerfile(DOCKERFILE.read_text())


def test_dockerfile_settings_serve_on_all_interfaces_with_the_database_on_the_volume() -> None:
    assert IMAGE.base.startswith("python:3.11"), "the base image's Python is the one CI tests"
    assert IMAGE.entrypoint == ["plc", "serve"]
    assert IMAGE.env["PLC_HOST"] == "0.0.0.0"
    assert IMAGE.exposed == [IMAGE.env["PLC_PORT"]]
    database_url = IMAGE.env["DATABASE_URL"]
    assert database_url.startswith("sqlite:////")
    database_file = database_url.removeprefix("sqlite:///")
    assert [v for v in IMAGE.volumes if database_file.startswith(v.rstrip("/") + "/")], (
        f"{database_file} is not on a volume ({IMAGE.volumes})"
    )
    assert any("pip install" in run and " ." in run for run in IMAGE.runs)
    for sources, _ in IMAGE.copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def _build_context(into: Path) -> Path:
    """The files the image's COPY lines put in its WORKDIR (relative destinations only)."""
    workdir = into / "app"
    workdir.mkdir()
    for sources, destination in IMAGE.copies:
        target = workdir / destination if destination != "./" else workdir
        for source in sources:
            path = REPO / source
            if path.is_dir():
                shutil.copytree(
                    path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
    return workdir


def _run(*command: str | Path, cwd: Path | None = None) -> None:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def installed_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment holding what the image's ``pip install .`` installs; its path."""
    root = tmp_path_factory.mktemp("image")
    context = _build_context(root)
    wheels = root / "wheels"
    # An isolated build from pyproject.toml's [build-system], as `pip install .` does in the
    # image (setuptools and wheel come from the package index or pip's cache).
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, context)
    (wheel,) = wheels.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "plc/store/migrations/env.py",
        "plc/store/migrations/script.py.mako",
        "plc/py.typed",
        "auditor/cli.py",
    ):
        assert required in names, f"{required} is missing from the built package"
    migrations = {p.name for p in (REPO / "plc" / "store" / "migrations" / "versions").glob("*.py")}
    assert migrations, "no migrations in the repository"
    for name in migrations:
        assert f"plc/store/migrations/versions/{name}" in names, f"migration {name} not packaged"

    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        wheel,
    )
    # The dependencies: this environment's site-packages, appended after the venv's own (a
    # plain path line: the .pth files in there, such as an editable install of this
    # checkout, are not processed, so `plc` is the installed copy).
    purelib = Path(
        _venv_python(venv, root, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    )
    (purelib / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = _venv_python(venv, root, "import plc, auditor; print(plc.__file__, auditor.__file__)")
    assert all(Path(p).is_relative_to(venv) for p in where.split()), where
    return venv


def _venv_python(venv: Path, cwd: Path, code: str) -> str:
    """What ``code`` prints in ``venv`` (run in ``cwd``, not this checkout: ``python -c`` puts
    the working directory on sys.path)."""
    return subprocess.check_output(
        [venv / "bin" / "python", "-c", code], text=True, cwd=cwd
    ).strip()


@contextmanager
def run_image(venv: Path, volume: Path, cwd: Path) -> Iterator[tuple[str, str]]:
    """Start the image's entry point with its ENV; yield (base URL on 127.0.0.1, log text)."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not _is_setting(name)}
    env.update(IMAGE.env)
    env["DATABASE_URL"] = IMAGE.env["DATABASE_URL"].replace(IMAGE.volumes[0], str(volume), 1)
    env["PLC_PORT"] = str(port)  # docker run -p maps the image's port; here a free one
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    log_file = cwd / "server.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(IMAGE.entrypoint, cwd=cwd, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_file.read_text()
            try:
                if httpx.get(f"{url}/_health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"did not start: {log_file.read_text()}"
            time.sleep(0.1)
        yield url, log_file.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)


def _is_setting(name: str) -> bool:
    return name.startswith("PLC_") or name in ("DATABASE_URL", "PYTHONPATH")


def test_image_installs_and_serves_with_its_database_on_the_volume(
    installed_image: Path, tmp_path: Path
) -> None:
    volume = tmp_path / "data"
    volume.mkdir()
    workdir = tmp_path / "app"
    workdir.mkdir()
    did, genesis, _ = new_did("container")
    with run_image(installed_image, volume, workdir) as (url, log):
        assert "0.0.0.0" in log, log
        assert httpx.post(f"{url}/{did}", json=genesis).status_code == 200
    database = Path(IMAGE.env["DATABASE_URL"].removeprefix("sqlite:///"))
    assert (volume / database.relative_to(IMAGE.volumes[0])).is_file()
    assert not list(workdir.glob("*.sqlite3")), "a database was written outside the volume"
    # A new container on the same volume: the DID and the log's signing identity are kept.
    with run_image(installed_image, volume, workdir) as (url, log_again):
        assert httpx.get(f"{url}/{did}").status_code == 200
    assert _verifier_key(log_again) == _verifier_key(log)


def _verifier_key(log: str) -> str:
    match = re.search(r"^verifier key: (\S+)$", log, re.MULTILINE)
    assert match, log
    return match.group(1)
