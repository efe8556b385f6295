#!/usr/bin/env python3
"""Benchmark: ``com.atproto.identity.resolveIdentity`` requests/s for cached answers.

What it does, all on loopback:

1. starts a DNS server (dnslib) on 127.0.0.1 serving ``_atproto.<handle>`` TXT records;
2. starts our server as users do, ``.venv/bin/plc serve`` on a free port with a fresh SQLite
   database in a temporary directory, its resolver pointed at that DNS server through
   ``PLC_RESOLVE_*`` environment variables;
3. registers ``--dids`` DIDs (signed genesis ops, ``POST /{did}``) whose handles the TXT
   records point back at, and resolves each once by DID and by handle (fills the caches);
4. runs each scenario with ``--clients`` concurrent clients (one ``httpx.AsyncClient`` each,
   requests cycling over the DIDs), bounded by ``--requests`` and ``--seconds``:

   - ``GET /{did}``: the plain document read, for comparison (no resolver involved);
   - ``resolveIdentity?identifier=<did>``: document from the store + cached handle check;
   - ``resolveIdentity?identifier=<handle>``: cached handle -> DID + document from the store;
   - ``resolveHandle?handle=<handle>``: cached handle -> DID + document check.

Each request must answer 200 with the verified handle; the DNS server must see no query during
the timed part (the answers really came from the cache). Prints requests/s, latency p50/p99
(ms), and the CPU use of the server process and of this client process, which shares the
machine (a client near 100 % means the numbers are a floor), and the server's CPU time per
request. ``--json PATH`` saves the results.

Run from the repository root::

    .venv/bin/python benchmarks/bench_identity.py
    .venv/bin/python benchmarks/bench_identity.py --requests 20000 --seconds 20 --json out.json

(``benchmarks/pytest.ini`` collects ``bench_*.py`` files; this one defines no test function,
so ``pytest benchmarks`` skips it.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer

from plc.keys import PrivateKey
from plc.signing import create_did

REPO = Path(__file__).resolve().parents[1]
LIMITS = {"requests": 1_000_000, "seconds": 300.0, "clients": 64, "dids": 1_000}
XRPC = "/xrpc/com.atproto.identity."
WARMUP_PER_CLIENT = 20


# ---- a DNS server on loopback ------------------------------------------------------------


class Zone:
    """TXT records served by the benchmark's DNS server, with a query counter."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.queries: Counter[str] = Counter()
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        del handler
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self._lock:
            self.queries[name] += 1
        values = self.txt.get(name, []) if QTYPE[request.q.qtype] == "TXT" else []
        for value in values:
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(value), ttl=300))
        if not values and name not in self.txt:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply

    def total_queries(self) -> int:
        with self._lock:
            return sum(self.queries.values())


@contextmanager
def dns_server(zone: Zone) -> Iterator[int]:
    """A UDP DNS server on 127.0.0.1 serving ``zone``; yields its port."""
    logger = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=logger)
    server.start_thread()
    try:
        yield int(server.server.server_address[1])
    finally:
        server.stop()
        server.server.server_close()


# ---- our server, as a subprocess ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plc_executable() -> Path:
    venv = REPO / ".venv" / "bin" / "plc"
    return venv if venv.exists() else Path(sys.executable).with_name("plc")


@contextmanager
def plc_server(workdir: Path, dns_port: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``plc serve`` on 127.0.0.1 with a fresh SQLite file; yields (base URL, process)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLC_", "DATABASE_URL"))}
    env.update(
        {
            "PLC_LOG_LEVEL": "warning",
            "PLC_RESOLVE_DNS_NAMESERVERS": "127.0.0.1",
            "PLC_RESOLVE_DNS_PORT": str(dns_port),
            "PLC_RESOLVE_ALLOW_PRIVATE_NETWORKS": "true",
            "PLC_RESOLVE_CACHE_TTL_S": "3600",
            "PLC_RESOLVE_TIME_BUDGET_S": "3",
        }
    )
    command = [
        str(plc_executable()),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--database-url",
        f"sqlite:///{workdir / 'bench.sqlite3'}",
    ]
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"plc serve exited with {process.returncode}:\n"
                    + (workdir / "server.log").read_text(errors="replace")[-2000:]
                )
            try:
                if httpx.get(f"{url}/_health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("plc serve did not become healthy within 30 s")
            time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (Linux ``/proc``), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# ---- load --------------------------------------------------------------------------------


@dataclass
class Result:
    """One scenario's outcome (latencies in milliseconds)."""

    scenario: str
    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    dns_queries: int
    server_cpu_pct: float | None
    server_cpu_us_per_request: float | None
    client_cpu_pct: float


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def _load(
    url: str, paths: Sequence[str], expect: Sequence[bytes], args: argparse.Namespace
) -> tuple[list[float], int, float]:
    """Drive ``args.clients`` clients over ``paths`` (round robin); returns the latencies (s)
    of the timed requests, the error count and the wall time of the timed part."""
    latencies: list[float] = []
    errors = 0
    issued = 0
    clients = [
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) for _ in range(args.clients)
    ]
    try:

        async def warm(client: httpx.AsyncClient, offset: int) -> None:
            for i in range(WARMUP_PER_CLIENT):
                (await client.get(paths[(offset + i) % len(paths)])).raise_for_status()

        await asyncio.gather(*(warm(c, i) for i, c in enumerate(clients)))
        deadline = time.perf_counter() + args.seconds

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal errors, issued
            while issued < args.requests and time.perf_counter() < deadline:
                index = issued % len(paths)
                issued += 1
                started = time.perf_counter()
                response = await client.get(paths[index])
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200 or expect[index] not in response.content:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        wall = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    return latencies, errors, wall


def run_scenario(
    name: str,
    url: str,
    paths: Sequence[str],
    expect: Sequence[bytes],
    zone: Zone,
    server_pid: int,
    args: argparse.Namespace,
) -> Result:
    queries_before = zone.total_queries()
    server_cpu_before = process_cpu_seconds(server_pid)
    client_cpu_before = time.process_time()
    latencies, errors, wall = asyncio.run(_load(url, paths, expect, args))
    client_cpu = time.process_time() - client_cpu_before
    server_cpu_after = process_cpu_seconds(server_pid)
    server_cpu = (
        None
        if server_cpu_before is None or server_cpu_after is None
        else server_cpu_after - server_cpu_before
    )
    latencies.sort()
    ms = [value * 1000 for value in latencies]
    return Result(
        scenario=name,
        requests=len(latencies),
        errors=errors,
        seconds=round(wall, 3),
        requests_per_s=round(len(latencies) / wall, 1) if wall > 0 else 0.0,
        p50_ms=round(percentile(ms, 0.50), 3),
        p90_ms=round(percentile(ms, 0.90), 3),
        p99_ms=round(percentile(ms, 0.99), 3),
        max_ms=round(ms[-1] if ms else 0.0, 3),
        dns_queries=zone.total_queries() - queries_before,
        server_cpu_pct=None if server_cpu is None else round(100 * server_cpu / wall, 1),
        server_cpu_us_per_request=(
            None if server_cpu is None or not latencies else round(1e6 * server_cpu / len(ms), 1)
        ),
        client_cpu_pct=round(100 * client_cpu / wall, 1),
    )


# ---- setup -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    did: str
    handle: str


def register(url: str, zone: Zone, count: int) -> list[Account]:
    """Register ``count`` DIDs claiming ``idbench<i>.test``, with TXT records pointing back;
    resolve each once by DID and by handle (fills the caches, checks the handle verifies)."""
    run_tag = f"{os.getpid()}-{time.time_ns()}"
    accounts: list[Account] = []
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        for i in range(count):
            handle = f"idbench{i}.test"
            keys = [PrivateKey.from_seed(f"idbench-{run_tag}-{i}-rot{k}") for k in range(2)]
            did, genesis = create_did(keys, handle=handle)
            client.post(f"/{did}", json=genesis).raise_for_status()
            zone.txt[f"_atproto.{handle}"] = [f"did={did}"]
            accounts.append(Account(did, handle))
        for account in accounts:
            for identifier in (account.did, account.handle):
                response = client.get(XRPC + "resolveIdentity", params={"identifier": identifier})
                response.raise_for_status()
                body = orjson.loads(response.content)
                if (body["did"], body["handle"]) != (account.did, account.handle):
                    raise RuntimeError(f"{identifier} did not verify: {body}")
    return accounts


def check_bounds(args: argparse.Namespace) -> None:
    for name, limit in LIMITS.items():
        value = getattr(args, name)
        if not 0 < value <= limit:
            raise SystemExit(f"--{name} must be in (0, {limit}]")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5000, help="timed requests per scenario")
    parser.add_argument("--seconds", type=float, default=15.0, help="time cap per scenario")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--dids", type=int, default=8, help="DIDs registered and cycled over")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    check_bounds(args)
    return args


def print_summary(results: Sequence[Result], args: argparse.Namespace) -> None:
    print(
        f"\nresolveIdentity, cached answers: {args.clients} concurrent clients, "
        f"{args.dids} DIDs, up to {args.requests} requests or {args.seconds:g} s per scenario"
    )
    print(
        f"host: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    header = (
        f"{'scenario':<38} {'requests':>8} {'errors':>6} {'req/s':>9} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'DNS q':>5} {'srv CPU':>7} {'srv µs/req':>10} "
        f"{'cli CPU':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        server_cpu = "n/a" if r.server_cpu_pct is None else f"{r.server_cpu_pct:.0f}%"
        per_request = (
            "n/a" if r.server_cpu_us_per_request is None else f"{r.server_cpu_us_per_request:.0f}"
        )
        print(
            f"{r.scenario:<38} {r.requests:>8} {r.errors:>6} {r.requests_per_s:>9,.0f} "
            f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.max_ms:>7.1f} {r.dns_queries:>5} "
            f"{server_cpu:>7} {per_request:>10} {r.client_cpu_pct:>6.0f}%"
        )
    print(
        "srv µs/req: server CPU time per request (its capacity on one core is about "
        "1e6 / that, req/s); cli CPU near 100% means the client, not the server, set req/s."
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    zone = Zone()
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-identity-") as tmp,
        dns_server(zone) as dns_port,
        plc_server(Path(tmp), dns_port) as (url, process),
    ):
        accounts = register(url, zone, args.dids)
        verified = [b'"handle":"' + a.handle.encode() + b'"' for a in accounts]
        scenarios: list[tuple[str, list[str], list[bytes]]] = [
            (
                "GET /{did} (baseline, no resolver)",
                [f"/{a.did}" for a in accounts],
                [a.did.encode() for a in accounts],
            ),
            (
                "resolveIdentity by DID",
                [f"{XRPC}resolveIdentity?identifier={a.did}" for a in accounts],
                verified,
            ),
            (
                "resolveIdentity by handle",
                [f"{XRPC}resolveIdentity?identifier={a.handle}" for a in accounts],
                verified,
            ),
            (
                "resolveHandle",
                [f"{XRPC}resolveHandle?handle={a.handle}" for a in accounts],
                [a.did.encode() for a in accounts],
            ),
        ]
        for name, paths, expect in scenarios:
            results.append(run_scenario(name, url, paths, expect, zone, process.pid, args))
    print_summary(results, args)
    if args.json is not None:
        payload: dict[str, Any] = {
            "benchmark": "resolveIdentity-cached",
            "clients": args.clients,
            "dids": args.dids,
            "max_requests": args.requests,
            "max_seconds": args.seconds,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "results": [asdict(r) for r in results],
        }
        args.json.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
        print(f"\nresults written to {args.json}")
    failed = [r.scenario for r in results if r.errors or r.dns_queries]
    if failed:
        print(f"\nFAILED (errors, or DNS queries while cached): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
