"""The two servers of a comparison: ours (``plc serve`` on a fresh SQLite file, started and
stopped here) and the reference (already running, or started and stopped here), with health
checks and their pids for CPU accounting."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from loadkit.compare_config import Options
from loadkit.consoles import compare_console as console


def healthy(url: str) -> bool:
    """True if ``GET /_health`` answers 200."""
    try:
        return httpx.get(f"{url}/_health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(url: str, seconds: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` is healthy.

    Raises:
        RuntimeError: not healthy in time, or ``proc`` exited.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if healthy(url):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy after {seconds:.0f}s")


def _pid_alive(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


class OurServer:
    """``plc serve`` on a fresh SQLite file in a temporary directory."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.dir = Path(tempfile.mkdtemp(prefix="plc-compare-"))
        self.url = f"http://127.0.0.1:{opts.port}"
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait for ``/_health``."""
        command = [
            *self.opts.plc_command,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.opts.port),
            "--database-url",
            f"sqlite:///{self.dir / 'x.sqlite3'}",
            "--workers",
            str(self.opts.workers),
        ]
        env = {**os.environ, "PLC_WORKERS": str(self.opts.workers)}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        try:
            wait_healthy(self.url, 60, self.proc)
        except RuntimeError:
            console.print(self.log.read_text(errors="replace")[-2000:], markup=False)
            raise

    @property
    def pid(self) -> int:
        """The pid of ``plc serve`` (uvicorn's workers are its children)."""
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to its own process group after 30 s; remove the directory
        unless ``--keep``."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self.opts.keep:
            console.print(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_errors(self) -> str:
        """The last lines of the server log that mention an error, for the report."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        lines = [line for line in text.splitlines() if '"level":"error"' in line]
        return "\n".join(lines[-5:])


class Reference:
    """The reference server: already running, or started (and stopped) here."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.url = opts.reference_url
        self.run_dir = opts.refserver / "run"
        self.started = False
        self.postgres_was_running = False

    def start(self) -> None:
        """Start it on a fresh database if asked to; check it answers.

        Raises:
            RuntimeError: it is not reachable, or cannot be started.
        """
        if self.opts.start_reference:
            if _pid_alive(self.run_dir / "server.pid"):
                raise RuntimeError(
                    "--start-reference: a reference server is already running "
                    f"({self.run_dir / 'server.pid'}); drop the flag to use it, or stop it "
                    "with stop.sh --server-only first"
                )
            self.postgres_was_running = _pid_alive(self.run_dir / "postgres.pid") is not None
            port = urlsplit(self.url).port or 80
            env = {**os.environ, "RESET": "1", "PLC_PORT": str(port)}
            subprocess.run(
                [str(self.opts.refserver / "start.sh")], env=env, check=True, timeout=600
            )
            self.started = True
        wait_healthy(self.url, 30)

    def stop(self) -> None:
        """Stop what :meth:`start` started (postgres too, unless it was already running)."""
        if not self.started:
            return
        args = [str(self.opts.refserver / "stop.sh")]
        if self.postgres_was_running:
            args.append("--server-only")
        subprocess.run(args, check=False, timeout=120)

    def watch_pids(self) -> dict[str, int]:
        """The reference's server and postgres pids (for CPU per op)."""
        pids = {}
        for name in ("server", "postgres"):
            pid = _pid_alive(self.run_dir / f"{name}.pid")
            if pid is not None:
                pids[name] = pid
        return pids
