"""The Dockerfile's image, checked without a Docker daemon (there is none on the development
and CI machines): its build context, install step, settings and entry point.

What the image does is replayed with the same inputs: only the files its ``COPY`` lines name
(less what ``.dockerignore`` excludes) are put in a build directory, installed with ``pip
install`` into a fresh virtual environment (an isolated build from ``pyproject.toml``, the
dependencies resolved from its ``dependencies`` alone, from the package index or pip's cache:
this test needs what ``make test`` needs to install), and started as the ``ENTRYPOINT`` with
the image's ``ENV`` (the volume path mapped to a temporary directory, the port to a free one).
The base image and the non-root user are the only steps not replayed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from plc.health_cli import DEFAULT_TIMEOUT_S

from .conftest import REPO, free_port
from .helpers import new_did

DOCKERFILE = REPO / "Dockerfile"
CONSTRAINTS = "constraints.txt"


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
    healthcheck: list[str] = field(default_factory=list)
    healthcheck_options: dict[str, str] = field(default_factory=dict)


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
            case "HEALTHCHECK":
                options, _, command = rest.partition("CMD ")
                for option in options.split():
                    name, _, value = option.removeprefix("--").partition("=")
                    image.healthcheck_options[name] = value
                image.healthcheck = json.loads(command)
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
    assert any(f"pip install --no-cache-dir -c {CONSTRAINTS} ." in run for run in IMAGE.runs)
    for sources, _ in IMAGE.copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def _dockerignored() -> Callable[[str], bool]:
    """Whether a path of the build context (relative, ``/``-separated) is excluded by
    ``.dockerignore`` (the forms ours uses: ``name``, ``glob``, ``**/name``)."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not [p for p in patterns if p.startswith("!")], "exceptions are not replayed"

    def excluded(relative: str) -> bool:
        parts = relative.split("/")
        for pattern in patterns:
            if pattern.startswith("**/"):
                if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                    return True
            elif fnmatch.fnmatchcase(relative, pattern) or fnmatch.fnmatchcase(parts[0], pattern):
                return True
        return False

    return excluded


def _build_context(into: Path) -> Path:
    """The files the image's COPY lines put in its WORKDIR (relative destinations only)."""
    excluded = _dockerignored()
    workdir = into / "app"
    workdir.mkdir()
    for sources, destination in IMAGE.copies:
        target = workdir / destination if destination != "./" else workdir
        for source in sources:
            path = REPO / source
            files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
            for file in files:
                relative = file.relative_to(REPO).as_posix()
                if excluded(relative):
                    continue
                inside = file.relative_to(path) if path.is_dir() else Path(path.name)
                (target / inside).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target / inside)
    return workdir


def _clean_env() -> dict[str, str]:
    """This environment without the settings of this project and of pip (a developer's
    ``PIP_NO_BUILD_ISOLATION`` or ``PIP_INDEX_URL`` are not the image's)."""
    return {
        name: value
        for name, value in os.environ.items()
        if not (_is_setting(name) or name.startswith("PIP_") or name == "VIRTUAL_ENV")
    }


def _run(*command: str | Path, cwd: Path | None = None) -> None:
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def installed_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment holding what the image's ``pip install .`` installs; its path."""
    root = tmp_path_factory.mktemp("image")
    context = _build_context(root)
    assert not list(context.rglob("__pycache__")), ".dockerignore was not applied"
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", venv)
    # As the image's RUN line: the project and its declared dependencies at the pinned
    # versions, nothing else.
    _run(
        venv / "bin" / "python",
        *("-m", "pip", "install", "--quiet", "-c", context / CONSTRAINTS, context),
        cwd=root,
    )
    where = _venv_python(venv, root, "import plc, auditor; print(plc.__file__, auditor.__file__)")
    assert all(Path(p).is_relative_to(venv) for p in where.split()), where
    installed = {
        Path(p).relative_to(venv).as_posix().split("site-packages/", 1)[-1]
        for p in _venv_python(
            venv,
            root,
            "import importlib.metadata as m; "
            "print('\\n'.join(str(f.locate()) for f in m.files('plc-directory')))",
        ).splitlines()
    }
    for required in (
        "plc/store/migrations/env.py",
        "plc/store/migrations/script.py.mako",
        "plc/py.typed",
        "auditor/cli.py",
    ):
        assert required in installed, f"{required} is missing from the installed package"
    migrations = {p.name for p in (REPO / "plc" / "store" / "migrations" / "versions").glob("*.py")}
    assert migrations, "no migrations in the repository"
    for name in migrations:
        assert f"plc/store/migrations/versions/{name}" in installed, f"{name} not packaged"
    return venv


def test_every_package_of_the_image_is_pinned(installed_image: Path, tmp_path: Path) -> None:
    """What the image installs is exactly constraints.txt's versions: a dependency added to
    pyproject.toml without ``make constraints`` would come in at whatever version is newest."""
    pins = {}
    for line in (REPO / CONSTRAINTS).read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version
    installed = dict(
        line.split("==", 1)
        for line in _venv_python(
            installed_image,
            tmp_path,
            "import importlib.metadata as m; "
            "print('\\n'.join(f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions()))",
        ).splitlines()
    )
    unpinned = {
        name: version
        for name, version in installed.items()
        if _canonical(name) not in {"plc-directory", "pip", "setuptools", "wheel"}
        and pins.get(_canonical(name)) != version
    }
    assert not unpinned, f"installed but not pinned in {CONSTRAINTS} (make constraints): {unpinned}"


def _canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _venv_python(venv: Path, cwd: Path, code: str) -> str:
    """What ``code`` prints in ``venv`` (run in ``cwd``, not this checkout: ``python -c`` puts
    the working directory on sys.path)."""
    return subprocess.check_output(
        [venv / "bin" / "python", "-c", code], text=True, cwd=cwd, env=_clean_env()
    ).strip()


@contextmanager
def run_image(venv: Path, volume: Path, cwd: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """Start the image's entry point with its ENV; yield (base URL on 127.0.0.1, log text,
    the container's environment)."""
    port = free_port()
    env = _clean_env()
    env.update(IMAGE.env)
    env["DATABASE_URL"] = IMAGE.env["DATABASE_URL"].replace(IMAGE.volumes[0], str(volume), 1)
    env["PLC_PORT"] = str(port)  # docker run -p maps the image's port; here a free one
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    log_file = cwd.parent / f"server-{port}.log"  # outside the WORKDIR, which plc cannot write
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
        text = log_file.read_text()
        # The answer came from this server, not another test's on a port taken meanwhile.
        assert process.poll() is None and f":{port}" in text, text
        yield url, text, env
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
    with run_image(installed_image, volume, workdir) as (url, log, env):
        assert "0.0.0.0" in log, log
        assert httpx.post(f"{url}/{did}", json=genesis).status_code == 200
        # HEALTHCHECK, run inside the container: it finds the server from the image's ENV
        healthy = _health_check(env, workdir)
        assert healthy.returncode == 0 and f"{url}/_health" in healthy.stdout, healthy
    unhealthy = _health_check(env, workdir)  # the container's server has stopped
    assert unhealthy.returncode == 1 and unhealthy.stderr.startswith("unhealthy: "), unhealthy
    database = Path(IMAGE.env["DATABASE_URL"].removeprefix("sqlite:///"))
    assert (volume / database.relative_to(IMAGE.volumes[0])).is_file()
    # In the image the WORKDIR belongs to root and the server runs as another user.
    assert not list(workdir.iterdir()), "the server wrote into its working directory"
    # A new container on the same volume: the DID and the log's signing identity are kept.
    with run_image(installed_image, volume, workdir) as (url, log_again, _):
        assert httpx.get(f"{url}/{did}").status_code == 200
    assert _verifier_key(log_again) == _verifier_key(log)


def _health_check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, run as Docker runs it: the container's environment,
    a limit of its ``--timeout``."""
    timeout = float(IMAGE.healthcheck_options["timeout"].removesuffix("s"))
    return subprocess.run(
        IMAGE.healthcheck, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_health_check_asks_the_server_within_docker_s_limits() -> None:
    assert IMAGE.healthcheck == ["plc", "health"]
    options = IMAGE.healthcheck_options
    # plc health gives up (and says why) before Docker kills it without a word
    assert float(options["timeout"].removesuffix("s")) > DEFAULT_TIMEOUT_S
    assert set(options) <= {"interval", "timeout", "start-period", "retries"}


def _verifier_key(log: str) -> str:
    match = re.search(r"^verifier key: (\S+)$", log, re.MULTILINE)
    assert match, log
    return match.group(1)
