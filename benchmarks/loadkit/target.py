"""The HTTP target of a load run: one keep-alive ``httpx.AsyncClient`` per simulated client,
plain requests, and op POSTs with retries."""

from __future__ import annotations

import asyncio
import random
import sys
import time

import httpx

from loadkit.load_config import Config
from loadkit.measure import Answer, Phase, error_key

try:
    import sniffio  # noqa: F401
except ImportError:
    # httpcore runs ``import sniffio`` on every request; when it is not installed, each failed
    # import scans sys.path (~0.3 ms of client CPU per request). A None entry fails at once.
    sys.modules["sniffio"] = None  # type: ignore[assignment]

JSON_HEADERS = {"content-type": "application/json"}


class Target:
    """The HTTP clients of the directory under test: one ``httpx.AsyncClient`` with one
    keep-alive connection per simulated client (``slot``). One shared pool of N connections
    costs more client CPU per request: httpcore re-queues requests that race for a free
    connection."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.clients = [
            httpx.AsyncClient(
                base_url=cfg.url,
                timeout=httpx.Timeout(cfg.timeout_s),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                follow_redirects=False,
            )
            for _ in range(cfg.concurrency)
        ]

    async def close(self) -> None:
        """Close every connection."""
        for client in self.clients:
            await client.aclose()

    async def request(
        self, method: str, path: str, body: bytes | None = None, slot: int = 0
    ) -> Answer:
        """One request from client ``slot``; transport failures and timeouts are status 0."""
        t0 = time.perf_counter()
        try:
            response = await self.clients[slot].request(
                method, path, content=body, headers=JSON_HEADERS if body is not None else None
            )
            status, content = response.status_code, response.content
        except httpx.HTTPError as exc:
            status, content = 0, f"{type(exc).__name__}: {exc}".encode()
        return Answer(status, content, (time.perf_counter() - t0) * 1000)

    async def post_op(self, phase: Phase, did: str, body: bytes, slot: int) -> Answer:
        """POST an op, re-sending it on 5xx / no answer up to ``--retries`` times."""
        t0 = time.perf_counter()
        attempt = 0
        while True:
            answer = await self.request("POST", f"/{did}", body, slot)
            retryable = answer.status == 0 or answer.status >= 500
            if not retryable or attempt >= self.cfg.retries or phase.expired():
                break
            attempt += 1
            phase.retries += 1
            phase.retried[error_key(answer)] += 1
            await asyncio.sleep(0.005 + random.random() * 0.02)
        return Answer(answer.status, answer.body, (time.perf_counter() - t0) * 1000)
