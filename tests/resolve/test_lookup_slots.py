"""The process's lookup slots are handed to domains in turn, so many slow attacker domains
cannot queue ahead of everyone; and a per-domain cap above the process's cap is refused at
start-up. Counted at a real DNS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from plc.cli import app
from plc.config import setting_error
from plc.resolve import ResolverSettings
from plc.resolve.lookups import Deadline
from plc.resolve.slots import LookupSlots
from tests.resolve.conftest import DID_A, DID_B, ResolverFactory
from tests.resolve.servers import LocalDns
from tests.resolve.test_shared_lookups import gated_handle, until, unverified

pytestmark = pytest.mark.anyio

ATTACKER_DOMAINS = 8
PER_DOMAIN = 2
TOTAL = 4


async def test_a_legitimate_domain_gets_a_turn_before_the_attackers_queues(
    dns: LocalDns, make_resolver: ResolverFactory
) -> None:
    """Eight slow attacker domains, three names each, hold or queue for every slot (two of
    them at their cap of 2, the others waiting) before a user of another domain asks. As the
    attacker's lookups end one by one, the user's lookup gets a slot within one turn per
    attacker domain; first come, first served would put it behind every queued attacker
    lookup (2 for each of the six waiting domains: the 13th slot to free)."""
    names = [f"h{j}.atk{i}.test" for i in range(ATTACKER_DOMAINS) for j in range(3)]
    for name in names:
        gated_handle(dns, name, DID_A)
    dns.zone.txt("_atproto.alice.good.test", f"did={DID_B}")
    resolver = make_resolver(
        max_concurrent_lookups=TOTAL,
        max_lookups_per_domain=PER_DOMAIN,
        time_budget_s=30.0,
        request_timeout_s=30.0,
    )

    def asked(name: str) -> bool:
        return dns.zone.count(f"_atproto.{name}", "TXT") > 0

    def slots_handed_out() -> int:
        return sum(map(asked, [*names, "alice.good.test"]))

    attackers = {name: unverified(resolver, name) for name in names}
    await until(lambda: slots_handed_out() == TOTAL)
    await until(lambda: resolver._slots.domains() == ATTACKER_DOMAINS)  # all queued
    user = unverified(resolver, "alice.good.test")
    await until(lambda: resolver._slots.domains() == ATTACKER_DOMAINS + 1)
    ended: set[str] = set()
    while not asked("alice.good.test"):
        assert len(ended) < len(names), "the user never got a slot"
        # An attacker lookup holding a slot ends (its only request went away), freeing it.
        holder = next(name for name in names if asked(name) and name not in ended)
        attackers[holder].cancel()
        ended.add(holder)
        handed_out = slots_handed_out()
        await until(lambda before=handed_out: slots_handed_out() > before)  # the slot is taken
    assert len(ended) <= ATTACKER_DOMAINS + 1  # one turn for each domain that was waiting
    assert await user == DID_B
    dns.zone.release.set()
    for name, task in attackers.items():
        if name not in ended:
            assert await task == DID_A
    assert resolver._slots.domains() == 0


async def test_turns_skip_a_domain_at_its_cap_and_keep_its_place() -> None:
    """Slot hand-out order, without the network: the domain at its cap waits in place while
    the others take turns, and is first once one of its own slots is back."""
    slots = LookupSlots(total=3, per_domain=2)
    deadline = Deadline(asyncio.get_running_loop().time() + 60)
    order: list[str] = []

    async def take(domain: str) -> None:
        assert await slots.acquire(domain, deadline)
        order.append(domain)

    tasks = [asyncio.create_task(take(domain)) for domain in ["a", "a", "b", "a", "b", "c"]]
    await until(lambda: len(order) == 3)
    assert order == ["a", "a", "b"]  # a at its cap; its third waits at the front
    slots.release("b")
    await until(lambda: len(order) == 4)
    assert order[3] == "b"  # a is at its cap: skipped, not moved
    slots.release("a")
    await until(lambda: len(order) == 5)
    assert order[4] == "a"  # first in line once below its cap
    slots.release("b")
    await until(lambda: len(order) == 6)
    assert order[5] == "c"
    await asyncio.gather(*tasks)
    for domain in ["a", "a", "c"]:
        slots.release(domain)
    assert slots.domains() == 0


# -- settings ------------------------------------------------------------------------------

_REFUSED = (
    "invalid setting PLC_RESOLVE_MAX_LOOKUPS_PER_DOMAIN: "
    "Value error, must be at most PLC_RESOLVE_MAX_CONCURRENT_LOOKUPS"
)


def test_a_per_domain_cap_above_the_process_cap_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        ResolverSettings(max_concurrent_lookups=4, max_lookups_per_domain=8)
    assert setting_error(info.value) == _REFUSED
    assert ResolverSettings(max_concurrent_lookups=4, max_lookups_per_domain=4)
    # left at its default (32), the per-domain cap is not the user's choice: a smaller
    # process cap is simply the tighter bound
    assert ResolverSettings(max_concurrent_lookups=4).max_lookups_per_domain == 32


def test_plc_serve_refuses_a_per_domain_cap_above_the_process_cap_in_one_line() -> None:
    env = {"PLC_RESOLVE_MAX_CONCURRENT_LOOKUPS": "16", "PLC_RESOLVE_MAX_LOOKUPS_PER_DOMAIN": "32"}
    with socket.socket() as busy:  # were the settings accepted, the start would stop here
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = CliRunner().invoke(app, ["serve", "--host", "127.0.0.1", "--port", port], env=env)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {_REFUSED}"]
    assert result.stdout == ""  # nothing started
