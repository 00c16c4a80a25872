"""The plan registry on a real server: revisions, reads, listing, deletes, provisioning."""

from __future__ import annotations

import pytest

from eventstore.config import TepSettings
from eventstore.errors import PlanValidationError
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.plan_registry import PlanRegistry
from eventstore.plan import Action, Plan
from eventstore.plan_registry import PLAN_BUCKET, PlanRegistryError
from projections import StateManager
from tep.provision import provision

pytestmark = pytest.mark.anyio

PLAN = Plan(id="greet", actions=[Action(id="a", type="noop")])


async def test_puts_make_revisions_and_reads_see_the_newest(nc: NatsClient) -> None:
    js = nc.jetstream()
    assert await PlanRegistry.open(nc, js) is None
    registry = await PlanRegistry.ensure(nc, js)

    first = await registry.put("greet", PLAN)
    second = await registry.put("greet", Plan(id="greet-v2", actions=PLAN.actions))
    await registry.put("other", PLAN)
    await registry.kv.put("plan.broken", b"not json")
    await registry.kv.put("stray", b"{}")  # no plan's key: ignored

    found = await registry.get("greet")
    plans, unreadable = await registry.read_all()
    assert second > first
    assert found is not None and (found.plan.id, found.revision) == ("greet-v2", second)
    assert found.stored_at.endswith("Z")
    assert [p.name for p in plans] == ["greet", "other"]
    assert list(unreadable) == ["broken"]
    assert await registry.get("missing") is None
    with pytest.raises(PlanRegistryError, match="unreadable"):
        await registry.get("broken")

    assert await registry.delete("other") is True
    assert await registry.delete("other") is False
    assert await registry.get("other") is None
    assert [p.name for p in (await registry.read_all())[0]] == ["greet"]


async def test_the_state_manager_validates_before_it_stores(
    nc: NatsClient, settings: TepSettings
) -> None:
    manager = StateManager(nc, settings)
    await manager.open()
    try:
        assert await manager.list_plans() == []
        assert await manager.get_plan("greet") is None
        revision = await manager.put_plan(
            "greet", {"id": "greet", "actions": [{"id": "a", "type": "noop"}]}
        )
        with pytest.raises(PlanValidationError):
            await manager.put_plan("bad", {"id": "bad", "actions": []})
        with pytest.raises(PlanRegistryError, match="must match"):
            await manager.put_plan("no spaces", PLAN)
        registered = await manager.get_plan("greet")
        listed = await manager.list_plans()
        deleted = await manager.delete_plan("greet")
    finally:
        await manager.close()
    assert registered is not None and registered.revision == revision
    assert [p.name for p in listed] == ["greet"]
    assert deleted and await manager.get_plan("bad") is None


async def test_provisioning_creates_the_bucket(event_log: EventLog) -> None:
    created = await provision(event_log.js, event_log.settings)
    assert f"KV_{PLAN_BUCKET}" in created
    assert await PlanRegistry.open(event_log.nc, event_log.js) is not None
