"""The leadership lease in a real KV bucket."""

from __future__ import annotations

import time

import anyio
import pytest

from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.provision import ensure_kv
from orchestrator.lease import Lease

pytestmark = pytest.mark.anyio


async def _until_leader(lease: Lease, timeout: float) -> float:
    started = time.monotonic()
    with anyio.fail_after(timeout):
        await lease.wait_until_leader()
    return time.monotonic() - started


async def test_one_holder_at_a_time_and_takeover_only_after_expiry(nc: NatsClient) -> None:
    kv = await ensure_kv(nc.jetstream(), "tep_leases")
    first = Lease(kv, "k", "first", lease_s=1.0, renew_s=0.2)
    second = Lease(kv, "k", "second", lease_s=1.0, renew_s=0.2)
    first_scope = anyio.CancelScope()

    async def run_first() -> None:
        with first_scope:
            await first.run()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_first)
        await _until_leader(first, 5)
        tg.start_soon(second.run)
        await anyio.sleep(1.5)  # longer than the lease: the renewals keep it
        assert first.is_leader and not second.is_leader
        assert second.leader == "first"

        first_scope.cancel()  # a crash: no more renewals, no release
        took = await _until_leader(second, 5)
        tg.cancel_scope.cancel()

    assert 0.5 < took < 3  # once the lease ran out, not before


async def test_release_hands_over_at_once_and_a_taken_lease_demotes(nc: NatsClient) -> None:
    kv = await ensure_kv(nc.jetstream(), "tep_leases")
    changes: list[bool] = []
    first = Lease(kv, "k", "first", lease_s=5.0, renew_s=0.2, on_change=changes.append)
    second = Lease(kv, "k", "second", lease_s=5.0, renew_s=0.2)
    first_scope = anyio.CancelScope()

    async def run_first() -> None:
        with first_scope:
            await first.run()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_first)
        await _until_leader(first, 5)
        tg.start_soon(second.run)
        first_scope.cancel()  # a clean stop: stop competing, then release
        await first.release()

        took = await _until_leader(second, 5)
        assert took < 1  # far below lease_s: a released record is free at once
        tg.cancel_scope.cancel()

    assert changes == [True, False]


async def test_leader_whose_lease_was_taken_steps_down(nc: NatsClient) -> None:
    kv = await ensure_kv(nc.jetstream(), "tep_leases")
    lease = Lease(kv, "k", "first", lease_s=5.0, renew_s=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lease.run)
        await _until_leader(lease, 5)
        await kv.put("k", b'{"holder": "intruder"}')  # someone else wrote the key

        with anyio.fail_after(2):
            while lease.is_leader:  # noqa: ASYNC110 - a flag flipped by the lease's own task
                await anyio.sleep(0.02)
        assert lease.leader is None or lease.leader == "intruder"
        tg.cancel_scope.cancel()
