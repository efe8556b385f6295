"""The phases of one load run (create, update, verify, resolve, export) against a
:class:`~loadkit.target.Target`, each bounded in count and in time."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from rich.progress import Progress, TaskID

from loadkit.load_config import EXPORT_PAGE, Config
from loadkit.measure import Phase
from loadkit.model import Identity
from loadkit.report import print_phase, say
from loadkit.target import Target


async def run_workers(count: int, worker: Callable[[int], Awaitable[None]]) -> None:
    """Run ``worker(0)`` … ``worker(count - 1)`` concurrently."""
    await asyncio.gather(*(worker(slot) for slot in range(count)))


class Runner:
    """Runs the phases of one load run and collects their results."""

    def __init__(self, cfg: Config, target: Target, progress: Progress) -> None:
        self.cfg = cfg
        self.target = target
        self.progress = progress
        self.results: dict[str, Any] = {}

    def _task(self, name: str, total: int) -> TaskID:
        return self.progress.add_task(name, total=total)

    def _finish(self, phase: Phase, task: TaskID) -> dict[str, Any]:
        result = phase.end()
        self.progress.update(task, visible=False)
        self.results[phase.name] = result
        print_phase(result, self.progress.console)
        return result

    async def create(self, identities: list[Identity]) -> None:
        """POST every genesis op."""
        phase = Phase("create", self.cfg)
        task = self._task("create", len(identities))
        queue: Iterator[Identity] = iter(identities)

        async def worker(slot: int) -> None:
            for ident in queue:
                if phase.expired():
                    return
                answer = await self.target.post_op(phase, ident.did, ident.genesis, slot)
                ident.created = phase.record(answer, ident.did)
                self.progress.advance(task)

        phase.start()
        await run_workers(self.cfg.concurrency, worker)
        result = self._finish(phase, task)
        result["by_key_type"] = dict(Counter(i.curve.value for i in identities if i.created))

    async def update(self, identities: list[Identity]) -> None:
        """POST every DID's chain of updates in order (one client per DID at a time)."""
        chains = [i for i in identities if i.steps]
        phase = Phase("update", self.cfg)
        task = self._task("update", sum(len(i.steps) for i in chains))
        by_kind: dict[str, Counter[str]] = {}
        skipped = 0
        queue: Iterator[Identity] = iter(chains)

        async def worker(slot: int) -> None:
            nonlocal skipped
            for ident in queue:
                if not ident.created:
                    ident.broken = True
                    skipped += len(ident.steps)
                    self.progress.advance(task, len(ident.steps))
                    continue
                for n, step in enumerate(ident.steps):
                    if phase.expired():
                        ident.broken = True
                        return
                    answer = await self.target.post_op(phase, ident.did, step.body, slot)
                    ok = phase.record(answer, f"{ident.did} {step.kind}")
                    by_kind.setdefault(step.kind, Counter())["ok" if ok else "failed"] += 1
                    self.progress.advance(task)
                    if not ok:  # the rest of this chain cannot apply
                        ident.broken = True
                        rest = len(ident.steps) - n - 1
                        skipped += rest
                        self.progress.advance(task, rest)
                        break

        phase.start()
        await run_workers(self.cfg.concurrency, worker)
        result = self._finish(phase, task)
        result["by_kind"] = {k: dict(v) for k, v in by_kind.items()}
        result["dids_touched"] = len(chains)
        result["max_chain_len"] = max((len(i.steps) for i in chains), default=0)
        result["skipped"] = skipped

    async def verify(self, identities: list[Identity]) -> None:
        """Read back a sample of DIDs' ``/data`` and compare with the expected state."""
        sample = [i for i in identities if i.created and not i.broken][: self.cfg.verify_sample]
        matched = 0
        mismatches: list[dict[str, Any]] = []
        for ident in sample:
            answer = await self.target.request("GET", f"/{ident.did}/data")
            good = answer.status == 200
            if good:
                try:
                    data = orjson.loads(answer.body)
                    good = (
                        data["alsoKnownAs"][0] == f"at://{ident.handle}"
                        and data["services"]["atproto_pds"]["endpoint"] == ident.pds
                        and data["rotationKeys"] == ident.rotation_keys
                    )
                except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
                    good = False
            if good:
                matched += 1
            elif len(mismatches) < 5:
                mismatches.append(
                    {
                        "did": ident.did,
                        "status": answer.status,
                        "body": answer.body[:300].decode("utf-8", "replace"),
                    }
                )
        self.results["verify"] = {
            "checked": len(sample),
            "matched": matched,
            "mismatches": mismatches,
        }
        say(
            f"[verify] {matched}/{len(sample)} DIDs read back with the expected handle, PDS "
            "and rotation keys"
        )

    async def resolve(self, identities: list[Identity]) -> None:
        """``GET /{did}`` of random created DIDs."""
        dids = [i.did for i in identities if i.created]
        rng = random.Random(self.cfg.seed)
        order = iter([rng.choice(dids) for _ in range(self.cfg.resolves)])
        phase = Phase("resolve", self.cfg)
        task = self._task("resolve", self.cfg.resolves)

        async def worker(slot: int) -> None:
            for did in order:
                if phase.expired():
                    return
                phase.record(await self.target.request("GET", f"/{did}", None, slot), did)
                self.progress.advance(task)

        phase.start()
        await run_workers(self.cfg.concurrency, worker)
        result = self._finish(phase, task)
        result["distinct_dids"] = len(dids)

    async def export(self) -> None:
        """Page through ``/export`` until a short page, a failure or a cap."""
        phase = Phase("export", self.cfg)
        cap = self.cfg.export_pages
        task = self._task("export pages", cap or 0)
        mode = "seq" if self.cfg.export_mode in ("auto", "seq") else "timestamp"
        after: str | None = "0" if mode == "seq" else None
        pages = lines = duplicates = 0
        seen: set[str] = set()
        phase.start()
        while not phase.expired() and (cap == 0 or pages < cap):
            query = f"/export?count={EXPORT_PAGE}" + (f"&after={after}" if after else "")
            answer = await self.target.request("GET", query)
            pages += 1
            self.progress.advance(task)
            if not phase.record(answer, f"page {pages}"):
                break
            rows = [orjson.loads(line) for line in answer.body.splitlines() if line.strip()]
            if not rows:
                break
            lines += len(rows)
            for row in rows:
                key = f"{row.get('did')} {row.get('cid')}"
                if key in seen:
                    duplicates += 1
                seen.add(key)
            last = rows[-1]
            if mode == "seq" and not isinstance(last.get("seq"), int):
                if self.cfg.export_mode == "seq":
                    phase.extra["note"] = "server returned no seq; stopped"
                    break
                mode = "timestamp"  # auto: this server pages by createdAt only
            after = str(last["seq"]) if mode == "seq" else str(last.get("createdAt", ""))
            if len(rows) < EXPORT_PAGE:
                break
        result = phase.end()
        result.update(
            {
                "mode": mode,
                "pages": pages,
                "lines": lines,
                "unique_ops": len(seen),
                "duplicate_lines": duplicates,
                "ops_per_s": round(lines / phase.wall, 1) if phase.wall else 0.0,
                "mb_per_s": round(phase.bytes / phase.wall / 1e6, 2) if phase.wall else 0.0,
            }
        )
        self.progress.update(task, visible=False)
        self.results["export"] = result
        print_phase(result, self.progress.console)
        say(
            f"[export] {pages} pages, {lines} lines ({len(seen)} unique ops, {duplicates} "
            f"repeated), {result['ops_per_s']} ops/s, {result['mb_per_s']} MB/s, {mode} paging"
        )
