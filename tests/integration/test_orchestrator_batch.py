"""Outcomes of one execution waiting together are decided as one (orchestrator.batch), on a real
nats-server: one state, one atomic append, every message acknowledged after it; conflicts,
poison and failures inside a burst; redelivery after a crash between append and acks.

The tests take the orchestrator's messages from a consumer of their own and hand them to a
:class:`LaneBatcher` the way the service's lanes do, so what is in a burst is exact.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from test_orchestrator import cluster, orchestrator

from eventstore import fold
from eventstore.config import TepSettings
from eventstore.errors import TepError
from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionStarted,
    Event,
    ExecutionCompleted,
    PlanSubmitted,
)
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.subjects import ORCHESTRATOR_FILTERS
from orchestrator import batch as batch_module
from orchestrator.batch import LaneBatcher
from orchestrator.cache import StateCache
from orchestrator.config import OrchestratorConfig
from orchestrator.decide import decide
from orchestrator.processor import EventProcessor

pytestmark = pytest.mark.anyio

E = "e1"


def for_each(count: int, concurrency: int) -> Plan:
    return Plan(
        id="burst",
        actions=[
            Action(
                id="each",
                for_each=list(range(count)),
                concurrency=concurrency,
                request=RequestSpec(url="http://127.0.0.1:9/item/{{index}}"),
            )
        ],
    )


class Bench:
    """A processor and its batcher, a consumer of the orchestrator's events, the log."""

    def __init__(self, nc: NatsClient, settings: TepSettings, max_batch: int = 128) -> None:
        self.nc = nc
        self.settings = settings
        self.log = EventLog(nc, settings)
        self.stats: dict[str, int] = Counter()
        config = OrchestratorConfig(max_batch=max_batch)
        self.processor = EventProcessor(
            self.log, settings, config, StateCache(config.cache_size), self.stats
        )
        self.batcher = LaneBatcher(self.processor, config.max_batch, config.max_deciding)
        self.durable = f"t{uuid.uuid4().hex[:8]}"
        self.appends: list[int] = []
        real = self.log.append_atomic

        async def counted(events: Sequence[Event], **kwargs: Any) -> Any:
            self.appends.append(len(events))
            return await real(events, **kwargs)

        self.log.append_atomic = counted  # type: ignore[method-assign]

    async def start(self, ack_wait: float = 30.0) -> None:
        await self.log.js.add_consumer(
            self.settings.stream,
            config=ConsumerConfig(
                durable_name=self.durable,
                filter_subjects=list(ORCHESTRATOR_FILTERS),
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ack_wait,
            ),
        )
        self.sub = await self.log.js.pull_subscribe_bind(self.durable, self.settings.stream)

    async def take(self, count: int) -> list[Msg]:
        msgs: list[Msg] = []
        while len(msgs) < count:
            msgs += await self.sub.fetch(count - len(msgs), timeout=5)
        return msgs

    async def run_lane(self, msgs: list[Msg]) -> list[int]:
        """Settle ``msgs`` as one execution's lane does; how many each call took."""
        lane, taken = deque(msgs), []
        while lane:
            count = await self.batcher.handle(lane)
            taken.append(count)
            for _ in range(count):
                lane.popleft()
        return taken

    async def pending(self) -> int:
        info = await self.log.js.consumer_info(self.settings.stream, self.durable)
        return int(info.num_ack_pending or 0)

    async def history(self) -> list[Event]:
        return [r.event for r in await self.log.read_execution(E)]

    async def dispatches(self) -> Counter[str]:
        return Counter(e.action_id for e in await self.history() if _dispatch(e))

    async def complete(self, *indexes: int) -> None:
        """Play the executor: each item started, then completed."""
        for index in indexes:
            key = f"each@{index}"
            await self.log.append(ActionStarted(execution_id=E, action_id=key, attempt=1))
            await self.log.append(
                ActionCompleted(execution_id=E, action_id=key, attempt=1, output={"i": index})
            )

    async def submitted(self, count: int, concurrency: int) -> None:
        """The plan is in and its first items are dispatched (by the single path)."""
        await self.log.append(PlanSubmitted(execution_id=E, plan=for_each(count, concurrency)))
        assert await self.run_lane(await self.take(1)) == [1]


def _dispatch(event: Event) -> bool:
    return isinstance(event, ActionExecuteRequested) and event.action_id.startswith("each@")


@pytest.fixture
async def bench(nc: NatsClient, settings: TepSettings) -> AsyncIterator[Bench]:
    found = Bench(nc, settings)
    await found.start()
    yield found


async def test_outcomes_waiting_together_are_decided_in_one_append(bench: Bench) -> None:
    await bench.submitted(30, concurrency=10)
    await bench.complete(*range(10))
    bench.appends.clear()

    taken = await bench.run_lane(await bench.take(10))

    assert taken == [10]
    assert bench.appends == [10]  # one atomic batch: the next ten items
    assert bench.stats["batches"] == 1 and bench.stats["batched"] == 10
    assert bench.stats["conflicts"] == 0
    assert await bench.dispatches() == Counter({f"each@{i}": 1 for i in range(20)})
    assert await bench.pending() == 0  # every message acknowledged


async def test_a_batch_takes_at_most_max_batch_messages(
    nc: NatsClient, settings: TepSettings
) -> None:
    bench = Bench(nc, settings, max_batch=4)
    await bench.start()
    await bench.submitted(30, concurrency=10)
    await bench.complete(*range(10))
    bench.appends.clear()

    taken = await bench.run_lane(await bench.take(10))

    assert taken == [4, 4, 2]
    assert bench.appends == [4, 4, 2]
    assert await bench.dispatches() == Counter({f"each@{i}": 1 for i in range(20)})


async def test_a_conflict_reloads_and_decides_the_batch_again(bench: Bench) -> None:
    await bench.submitted(30, concurrency=10)
    await bench.complete(0)
    # Another orchestrator decides on the first outcome, with ids of its own; the cached
    # state does not know.
    state = fold.fold(await bench.log.read_execution(E))
    first = next(e for e in await bench.history() if isinstance(e, ActionCompleted))
    racing = [
        msgspec.structs.replace(d, event_id=f"racer-{n}")
        for n, d in enumerate(decide(state, first))
    ]
    assert [d.action_id for d in racing] == ["each@10"]
    await bench.complete(*range(1, 10))
    await bench.log.append_atomic(racing)

    taken = await bench.run_lane(await bench.take(10))

    assert taken == [10]
    assert bench.stats["conflicts"] == 1 and bench.stats["batches"] == 1
    dispatches = [e for e in await bench.history() if _dispatch(e)]
    assert Counter(d.action_id for d in dispatches) == Counter({f"each@{i}": 1 for i in range(20)})
    assert next(d for d in dispatches if d.action_id == "each@10").event_id == "racer-0"
    assert await bench.pending() == 0


async def test_a_poison_message_in_a_burst_is_dead_lettered_the_others_decided(
    bench: Bench,
) -> None:
    await bench.submitted(30, concurrency=10)
    await bench.complete(*range(5))
    await bench.log.js.publish(f"action.completed.{E}.each@5", b"garbage")
    await bench.complete(*range(6, 10))

    taken = await bench.run_lane(await bench.take(10))

    assert taken == [5, 1, 4]  # a batch, the poison alone, a batch
    assert bench.stats["dead_lettered"] == 1
    assert bench.stats["batches"] == 2 and bench.stats["batched"] == 9
    letters = await bench.log.js.stream_info(bench.settings.deadletter_stream)
    assert letters.state.messages == 1
    # Item 5 never completed: its slot stays taken, the nine others dispatched nine more.
    assert await bench.dispatches() == Counter({f"each@{i}": 1 for i in range(19)})
    assert await bench.pending() == 0


async def test_a_failing_batch_falls_back_to_one_message_at_a_time(bench: Bench) -> None:
    await bench.submitted(30, concurrency=10)
    await bench.complete(*range(10))
    real = bench.log.append_atomic
    failed = []

    async def once_unanswered(events: Sequence[Event], **kwargs: Any) -> Any:
        if not failed:
            failed.append(len(events))
            raise TepError("no answer")
        return await real(events, **kwargs)

    bench.log.append_atomic = once_unanswered  # type: ignore[method-assign]

    taken = await bench.run_lane(await bench.take(10))

    assert failed == [10] and taken == [10]
    assert bench.stats["batches"] == 0 and bench.stats["processed"] == 1 + 10
    assert await bench.dispatches() == Counter({f"each@{i}": 1 for i in range(20)})
    assert await bench.pending() == 0


async def test_redelivery_after_a_crash_between_append_and_acks_stores_nothing_twice(
    nc: NatsClient, settings: TepSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashed = Bench(nc, settings)
    await crashed.start(ack_wait=1.0)
    await crashed.submitted(30, concurrency=10)
    await crashed.complete(*range(10))

    async def lost(action: Coroutine[Any, Any, None], msg: Msg) -> None:
        action.close()  # the process died right after the append: no ack left

    with monkeypatch.context() as patched:
        patched.setattr(batch_module, "settle", lost)
        assert await crashed.run_lane(await crashed.take(10)) == [10]
    before = await crashed.dispatches()
    assert before == Counter({f"each@{i}": 1 for i in range(20)})

    # A new leader (empty cache) gets the same messages again after the ack wait.
    leader = Bench(nc, settings)
    leader.durable, leader.sub = crashed.durable, crashed.sub
    redelivered = await crashed.take(10)
    assert all(m.metadata.num_delivered == 2 for m in redelivered)

    assert await leader.run_lane(redelivered) == [10]

    assert await leader.dispatches() == before
    assert leader.stats["appended"] == 0 and leader.stats["batched"] == 10
    assert await leader.pending() == 0


async def test_the_service_batches_a_for_each_and_dispatches_each_item_once(
    nc: NatsClient, settings: TepSettings
) -> None:
    async with cluster(nc, settings) as c, orchestrator(settings) as service:
        await c.submit(for_each(400, concurrency=100), "fe-1")
        end = await c.wait_end("fe-1", timeout=60)

        assert isinstance(end, ExecutionCompleted)
        assert service.stats["batches"] > 0
        assert service.stats["batched"] > service.stats["batches"]
    counts = c.dispatch_counts("fe-1")
    assert counts == Counter({f"each@{i}": 1 for i in range(400)})
    outcomes = Counter(e.action_id for e in c.of("fe-1", ActionCompleted))
    assert outcomes == Counter({**{f"each@{i}": 1 for i in range(400)}, "each": 1})
