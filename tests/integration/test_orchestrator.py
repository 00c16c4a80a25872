"""The orchestrator service against a real nats-server; the tests play the executor."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from support.waiting import eventually

from eventstore.codec import decode_event, encode_event
from eventstore.config import TepSettings
from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionStarted,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.partition_status import partition_backlogs
from eventstore.jetstream.queues import consumer_name
from eventstore.plan import Action, Condition, Plan, QueueConfig, RequestSpec
from orchestrator.config import OrchestratorConfig
from orchestrator.service import Orchestrator

pytestmark = pytest.mark.anyio

FAST = OrchestratorConfig(lease_s=1.5, renew_s=0.3, ack_wait_s=2.0, pull_expires_s=0.5)
TERMINAL = (ExecutionCompleted, ExecutionFailed, ExecutionCancelled)

Outcome = dict[str, Any] | ErrorInfo | None
"""What the played executor does with a request: complete with an output, fail, or nothing."""


def http(action_id: str, *deps: str, **fields: Any) -> Action:
    fields.setdefault("request", RequestSpec(url="http://127.0.0.1:9/x"))
    return Action(id=action_id, depends_on=list(deps), **fields)


def echo(request: ActionExecuteRequested) -> Outcome:
    return {"id": request.action_id}


class Cluster:
    """Watches every stored event and plays the executor for every stored request."""

    def __init__(self, nc: NatsClient, settings: TepSettings, tg: TaskGroup) -> None:
        self.nc = nc
        self.settings = settings
        self.log = EventLog(nc, settings)
        self.tg = tg
        self.events: list[Event] = []
        self.behaviour: Callable[[ActionExecuteRequested], Outcome] = echo
        self._changed = anyio.Event()
        self._send, self._requests = anyio.create_memory_object_stream[ActionExecuteRequested](
            10_000
        )

    async def start(self) -> None:
        await self.log.js.subscribe(
            ">", stream=self.settings.stream, ordered_consumer=True, cb=self._on_message
        )
        self.tg.start_soon(self._play)

    async def _on_message(self, msg: Msg) -> None:
        if msg.headers and "Nats-Schedule" in msg.headers:
            return
        event = decode_event(msg.data)
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()
        if isinstance(event, ActionExecuteRequested):
            self._send.send_nowait(event)

    async def _play(self) -> None:
        async for request in self._requests:
            outcome = self.behaviour(request)
            if outcome is not None:
                self.tg.start_soon(self.respond, request, outcome)

    async def respond(self, request: ActionExecuteRequested, outcome: Outcome) -> None:
        e, a = request.execution_id, request.action_id
        await self.log.append(ActionStarted(execution_id=e, action_id=a, attempt=1))
        if isinstance(outcome, ErrorInfo):
            await self.log.append(
                ActionFailed(execution_id=e, action_id=a, attempt=1, error=outcome)
            )
        elif outcome is not None:
            await self.log.append(
                ActionCompleted(execution_id=e, action_id=a, attempt=1, output=outcome)
            )

    async def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = 15) -> None:
        with anyio.fail_after(timeout):
            while not predicate(self.events):
                await self._changed.wait()

    async def wait_end(self, execution_id: str, timeout: float = 15) -> Event:
        await self.wait_for(lambda events: self.end(execution_id) is not None, timeout)
        end = self.end(execution_id)
        assert end is not None
        return end

    def end(self, execution_id: str) -> Event | None:
        ends = [
            e for e in self.events if isinstance(e, TERMINAL) and e.execution_id == execution_id
        ]
        assert len(ends) <= 1, ends
        return ends[0] if ends else None

    def of(self, execution_id: str, kind: type[Event] = Event) -> list[Any]:  # type: ignore[assignment]
        return [e for e in self.events if e.execution_id == execution_id and isinstance(e, kind)]

    def dispatch_counts(self, execution_id: str) -> Counter[str]:
        return Counter(r.action_id for r in self.of(execution_id, ActionExecuteRequested))

    async def submit(self, plan: Plan, execution_id: str) -> None:
        await self.log.append(PlanSubmitted(execution_id=execution_id, plan=plan))


@asynccontextmanager
async def cluster(nc: NatsClient, settings: TepSettings) -> AsyncIterator[Cluster]:
    async with anyio.create_task_group() as tg:
        watcher = Cluster(nc, settings, tg)
        await watcher.start()
        yield watcher
        tg.cancel_scope.cancel()


@asynccontextmanager
async def orchestrator(
    settings: TepSettings, instance_id: str = "o1", config: OrchestratorConfig = FAST
) -> AsyncIterator[Orchestrator]:
    nc = await connect(settings.nats_url, name=instance_id)
    try:
        async with anyio.create_task_group() as tg:
            service = Orchestrator(nc, settings, config, instance_id=instance_id)
            await tg.start(service.run)
            yield service
            tg.cancel_scope.cancel()
    finally:
        await nc.close()


async def wait_leader(*services: Orchestrator, timeout: float = 10) -> Orchestrator:
    """Once every partition is served by exactly one of ``services``: one that serves some."""
    with anyio.fail_after(timeout):
        while True:
            held = [p for s in services for p in s.held]
            count = max((s.partitions for s in services), default=0)
            if count and sorted(held) == list(range(count)):
                return next(s for s in services if s.is_leader)
            await anyio.sleep(0.02)


# ---------------------------------------------------------------------------------- flows


async def test_chain_with_templated_values_completes(nc: NatsClient, settings: TepSettings) -> None:
    plan = Plan(
        id="chain",
        input={"user": "ada"},
        actions=[
            http("fetch", request=RequestSpec(url="http://h/users/{{input.user}}")),
            http(
                "send",
                "fetch",
                request=RequestSpec(
                    method="POST",
                    url="http://h/mail",
                    json={"to": "{{actions.fetch.output.email}}"},
                    headers={"Authorization": "Bearer {{secrets.TOKEN}}"},
                ),
            ),
            http("audit", "send"),
        ],
    )
    async with cluster(nc, settings) as c, orchestrator(settings):
        c.behaviour = lambda r: {"email": "ada@example.com"} if r.action_id == "fetch" else {}
        await c.submit(plan, "chain-1")

        end = await c.wait_end("chain-1")

    assert isinstance(end, ExecutionCompleted)
    requests = {r.action_id: r for r in c.of("chain-1", ActionExecuteRequested)}
    assert list(requests) == ["fetch", "send", "audit"]
    assert requests["fetch"].request is not None
    assert requests["fetch"].request.url == "http://h/users/ada"
    send = requests["send"].request
    assert send is not None and send.json == {"to": "ada@example.com"}
    assert send.headers == {"Authorization": "Bearer {{secrets.TOKEN}}"}
    assert end.causation_id == c.of("chain-1", ActionCompleted)[-1].event_id


async def test_fan_out_fan_in_and_conditions(nc: NatsClient, settings: TepSettings) -> None:
    branches = [http(f"b{i}", "root") for i in range(30)]
    plan = Plan(
        id="fan",
        actions=[
            http("root"),
            *branches,
            http("join", *(b.id for b in branches)),
            http(
                "only-gold", "join", when=Condition(path="actions.root.output.tier", equals="gold")
            ),
        ],
    )
    async with cluster(nc, settings) as c, orchestrator(settings):
        c.behaviour = lambda r: {"tier": "silver"}
        await c.submit(plan, "fan-1")
        end = await c.wait_end("fan-1")

    assert isinstance(end, ExecutionCompleted)
    counts = c.dispatch_counts("fan-1")
    assert len(counts) == 32 and set(counts.values()) == {1}
    assert "only-gold" not in counts
    join_at = next(i for i, e in enumerate(c.events) if getattr(e, "action_id", None) == "join")
    assert all(
        i < join_at
        for i, e in enumerate(c.events)
        if isinstance(e, ActionCompleted) and e.action_id.startswith("b")
    )


async def test_failure_skips_dependents_and_fails_the_execution(
    nc: NatsClient, settings: TepSettings
) -> None:
    plan = Plan(id="p", actions=[http("a"), http("b", "a"), http("c")])
    async with cluster(nc, settings) as c, orchestrator(settings):
        c.behaviour = lambda r: (
            ErrorInfo(message="404", code="http_4xx") if r.action_id == "a" else {}
        )
        await c.submit(plan, "fail-1")
        end = await c.wait_end("fail-1")

    assert isinstance(end, ExecutionFailed)
    assert end.failed_actions == ["a"]
    assert {e.action_id: e.reason for e in c.of("fail-1") if hasattr(e, "reason")} == {
        "b": "dependency_failed"
    }


async def test_cancel_request_cancels_and_late_results_change_nothing(
    nc: NatsClient, settings: TepSettings
) -> None:
    plan = Plan(id="p", actions=[http("slow"), http("next", "slow")])
    async with cluster(nc, settings) as c, orchestrator(settings):
        c.behaviour = lambda r: None  # the executor never answers
        await c.submit(plan, "cancel-1")
        await c.wait_for(lambda ev: bool(c.of("cancel-1", ActionExecuteRequested)))

        await c.log.append(ExecutionCancelRequested(execution_id="cancel-1", reason="user"))
        end = await c.wait_end("cancel-1")
        request = c.of("cancel-1", ActionExecuteRequested)[0]
        await c.respond(request, {"late": True})
        await c.wait_for(lambda ev: bool(c.of("cancel-1", ActionCompleted)))
        # A later execution ends, so the late result has been consumed by now.
        c.behaviour = echo
        await c.submit(Plan(id="marker", actions=[http("m")]), "marker-1")
        await c.wait_end("marker-1")

    assert isinstance(end, ExecutionCancelled) and end.reason == "user"
    cancelled = {e.action_id for e in c.of("cancel-1", ActionCancelled)}
    assert cancelled == {"slow", "next"}
    assert c.dispatch_counts("cancel-1") == Counter({"slow": 1})


async def test_deadline_cancels_the_execution(nc: NatsClient, settings: TepSettings) -> None:
    plan = Plan(id="p", timeout_s=1.0, actions=[http("stuck")])
    async with cluster(nc, settings) as c, orchestrator(settings):
        c.behaviour = lambda r: None
        await c.submit(plan, "deadline-1")
        started = anyio.current_time()

        end = await c.wait_end("deadline-1", timeout=10)
        elapsed = anyio.current_time() - started

    assert isinstance(end, ExecutionCancelled)
    assert end.reason == "deadline exceeded"
    requests = c.of("deadline-1", ExecutionCancelRequested)
    assert [r.reason for r in requests] == ["deadline exceeded"]
    assert elapsed > 0.8  # not before the deadline; wait_end's timeout bounds the other side
    assert [e.action_id for e in c.of("deadline-1", ActionCancelled)] == ["stuck"]
    # The fired request is an ordinary event of the execution's history.
    history = [r.event for r in await c.log.read_execution("deadline-1")]
    assert any(isinstance(e, ExecutionCancelRequested) for e in history)


async def test_a_deadline_firing_after_the_execution_ended_changes_nothing(
    nc: NatsClient, settings: TepSettings
) -> None:
    plan = Plan(id="p", timeout_s=1, actions=[http("a")])
    async with cluster(nc, settings) as c, orchestrator(settings):
        await c.submit(plan, "quick-1")
        assert isinstance(await c.wait_end("quick-1"), ExecutionCompleted)

        async def fired() -> bool:
            history = [r.event for r in await c.log.read_execution("quick-1")]
            return any(isinstance(e, ExecutionCancelRequested) for e in history)

        await eventually(fired, timeout=10, message="the deadline never fired")
        # Decided on in log order: once a later execution ends, the late request was seen.
        await c.submit(Plan(id="p", actions=[http("a")]), "quick-2")
        assert isinstance(await c.wait_end("quick-2"), ExecutionCompleted)

    history = [r.event for r in await c.log.read_execution("quick-1")]
    ends = [e for e in history if isinstance(e, ExecutionCompleted | ExecutionCancelled)]
    assert [type(e) for e in ends] == [ExecutionCompleted]
    assert not [e for e in history if isinstance(e, ActionCancelled)]


async def test_plan_queue_limit_caps_its_execution_and_leaves_the_queue_alone(
    nc: NatsClient, settings: TepSettings
) -> None:
    plan = Plan(
        id="p",
        queues={"limited": QueueConfig(concurrency_limit=1)},
        actions=[http(f"a{i}", queue="limited") for i in range(3)],
    )
    async with cluster(nc, settings) as c, orchestrator(settings):
        await c.submit(plan, "queue-1")
        assert isinstance(await c.wait_end("queue-1"), ExecutionCompleted)

    steps = [
        (type(e).__name__, e.action_id)
        for e in c.of("queue-1")
        if isinstance(e, ActionExecuteRequested | ActionCompleted)
    ]
    assert steps == [
        (kind, f"a{i}") for i in range(3) for kind in ("ActionExecuteRequested", "ActionCompleted")
    ]
    with pytest.raises(NotFoundError):
        await c.log.js.consumer_info(settings.stream, consumer_name("limited"))


# ------------------------------------------------------------------------- bad input


async def test_invalid_plan_from_a_foreign_client_fails_the_execution(
    nc: NatsClient, settings: TepSettings
) -> None:
    js = nc.jetstream()
    cyclic = {
        "type": "plan.submitted",
        "execution_id": "bad-1",
        "plan": {
            "id": "p",
            "actions": [
                {"id": "a", "type": "http", "depends_on": ["b"], "request": {"url": "http://h/"}},
                {"id": "b", "type": "http", "depends_on": ["a"], "request": {"url": "http://h/"}},
            ],
        },
    }
    unknown_field = {
        "type": "plan.submitted",
        "execution_id": "bad-2",
        "plan": {"id": "p", "actions": [{"id": "a", "type": "http", "colour": "red"}]},
    }
    async with cluster(nc, settings) as c, orchestrator(settings):
        await js.publish("plan.submitted.bad-1", json.dumps(cyclic).encode())
        await js.publish("plan.submitted.bad-2", json.dumps(unknown_field).encode())
        await js.publish("plan.submitted.bad-3", b"not json at all")
        await c.submit(Plan(id="ok", actions=[http("a")]), "good-1")

        ends = {e: await c.wait_end(e) for e in ("bad-1", "bad-2", "bad-3", "good-1")}

    for execution_id in ("bad-1", "bad-2", "bad-3"):
        end = ends[execution_id]
        assert isinstance(end, ExecutionFailed), execution_id
        assert end.error.code == "invalid_plan"
    assert "cycle" in ends["bad-1"].error.message  # type: ignore[attr-defined]
    assert "colour" in ends["bad-2"].error.message  # type: ignore[attr-defined]
    assert isinstance(ends["good-1"], ExecutionCompleted)


async def test_poison_outcome_is_dead_lettered_and_consumption_goes_on(
    nc: NatsClient, settings: TepSettings
) -> None:
    js = nc.jetstream()
    dead_letters = await js.subscribe(
        "tep.deadletter.orchestrator.>", stream=settings.deadletter_stream, ordered_consumer=True
    )
    async with cluster(nc, settings) as c, orchestrator(settings):
        await js.publish("action.completed.e1.a", b"\xff garbage")
        await c.submit(Plan(id="ok", actions=[http("a")]), "after-poison")
        assert isinstance(await c.wait_end("after-poison"), ExecutionCompleted)
        dead = await dead_letters.next_msg(timeout=5)

        async def settled() -> bool:
            # The execution's end is consumed too (a sub-plan's parent would be told).
            backlogs = await partition_backlogs(js, settings)
            return all(b.pending == 0 and b.ack_pending == 0 for b in backlogs.values())

        await eventually(settled, timeout=5, message="the orchestrator did not settle")

    assert dead.subject == "tep.deadletter.orchestrator.action.completed.e1.a"
    assert dead.data == b"\xff garbage"
    assert dead.headers is not None
    assert dead.headers["Tep-Original-Subject"] == "action.completed.e1.a"
    backlogs = await partition_backlogs(js, settings)
    assert len(backlogs) == 16 and all(b.exists for b in backlogs.values())


# ---------------------------------------------------------------------------- replicas


class Replica:
    """An orchestrator with its own connection, stoppable on its own (cleanly or by a crash)."""

    def __init__(self, settings: TepSettings, instance_id: str) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.scope = anyio.CancelScope()
        self.stopped = anyio.Event()
        self.service: Orchestrator | None = None
        self.nc: NatsClient | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self.nc = await connect(self.settings.nats_url, name=self.instance_id)
        try:
            with self.scope:
                self.service = Orchestrator(
                    self.nc, self.settings, FAST, instance_id=self.instance_id
                )
                async with anyio.create_task_group() as tg:
                    await tg.start(self.service.run)
                    task_status.started()
                    await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self.nc.close()
            self.stopped.set()

    async def stop(self) -> None:
        self.scope.cancel()
        await self.stopped.wait()

    async def crash(self) -> None:
        """Lose the connection first: no lease release, no nak of held messages."""
        assert self.nc is not None
        await self.nc.close()
        await self.stop()


async def replicas(c: Cluster, *names: str) -> list[Replica]:
    started = []
    for name in names:
        replica = Replica(c.settings, name)
        await c.tg.start(replica.run)
        started.append(replica)
    return started


async def wait_leading(replicas: list[Replica], timeout: float = 10) -> Replica:
    services = [r.service for r in replicas if r.service is not None]
    leader = await wait_leader(*services, timeout=timeout)
    return next(r for r in replicas if r.service is leader)


def _fan_plan() -> Plan:
    branches = [http(f"b{i}", "root") for i in range(20)]
    return Plan(
        id="p",
        actions=[
            http("root"),
            *branches,
            http("join", *(b.id for b in branches)),
            http("tail", "join"),
        ],
    )


@pytest.mark.parametrize("how", ["stop", "crash"])
async def test_two_replicas_dispatch_each_action_once_and_fail_over(
    nc: NatsClient, settings: TepSettings, how: str
) -> None:
    async with cluster(nc, settings) as c:
        c.behaviour = lambda r: None if r.action_id == "join" else {"ok": True}
        pair = await replicas(c, "o1", "o2")
        leader = await wait_leading(pair)
        await c.submit(_fan_plan(), "rep-1")
        await c.wait_for(lambda ev: "join" in c.dispatch_counts("rep-1"))

        await (leader.stop() if how == "stop" else leader.crash())
        standby = next(r for r in pair if r is not leader)
        assert await wait_leading([standby]) is standby
        join = next(r for r in c.of("rep-1", ActionExecuteRequested) if r.action_id == "join")
        await c.respond(join, {"joined": True})
        end = await c.wait_end("rep-1")
        await standby.stop()

    assert isinstance(end, ExecutionCompleted)
    counts = c.dispatch_counts("rep-1")
    assert len(counts) == 23 and set(counts.values()) == {1}, counts


async def test_two_replicas_racing_on_a_burst_never_double_dispatch(
    nc: NatsClient, settings: TepSettings
) -> None:
    async with cluster(nc, settings) as c:
        pair = await replicas(c, "o1", "o2")
        await wait_leading(pair)
        for i in range(10):
            await c.submit(_fan_plan(), f"burst-{i}")
        # Hand leadership back and forth while the burst runs.
        for _ in range(2):
            leader = await wait_leading(pair)
            await leader.stop()
            pair = [r for r in pair if r is not leader] + await replicas(
                c, f"{leader.instance_id}x"
            )
        ends = [await c.wait_end(f"burst-{i}", timeout=30) for i in range(10)]
        for replica in pair:
            await replica.stop()

    assert all(isinstance(e, ExecutionCompleted) for e in ends)
    for i in range(10):
        counts = c.dispatch_counts(f"burst-{i}")
        assert len(counts) == 23 and set(counts.values()) == {1}, counts


async def test_restarted_orchestrator_continues_mid_plan(
    nc: NatsClient, settings: TepSettings
) -> None:
    plan = Plan(id="p", actions=[http("a"), http("b", "a"), http("c", "b")])
    async with cluster(nc, settings) as c:
        c.behaviour = lambda r: None if r.action_id == "b" else {"ok": 1}
        async with orchestrator(settings, "first"):
            await c.submit(plan, "restart-1")
            await c.wait_for(lambda ev: "b" in c.dispatch_counts("restart-1"))
        # No orchestrator runs while "b" finishes.
        b = next(r for r in c.of("restart-1", ActionExecuteRequested) if r.action_id == "b")
        await c.respond(b, {"ok": 2})
        async with orchestrator(settings, "second"):
            end = await c.wait_end("restart-1")

    assert isinstance(end, ExecutionCompleted)
    assert c.dispatch_counts("restart-1") == Counter({"a": 1, "b": 1, "c": 1})


async def test_raw_publish_of_a_valid_plan_by_a_foreign_client_runs(
    nc: NatsClient, settings: TepSettings
) -> None:
    event = PlanSubmitted(execution_id="foreign-1", plan=Plan(id="p", actions=[http("a")]))
    async with cluster(nc, settings) as c, orchestrator(settings):
        await nc.jetstream().publish("plan.submitted.foreign-1", encode_event(event))
        assert isinstance(await c.wait_end("foreign-1"), ExecutionCompleted)


async def test_two_deciders_on_every_event_at_once_never_double_dispatch(
    nc: NatsClient, settings: TepSettings
) -> None:
    """Without leases (own lease bucket, own consumers each) only the guards stand between two
    deciders that see every event; each action must still be dispatched exactly once."""
    branches = [http(f"b{i}", "r1", "r2") for i in range(20)]
    plan = Plan(
        id="p",
        actions=[http("r1"), http("r2"), *branches, http("join", *(b.id for b in branches))],
    )
    configs = [
        FAST.model_copy(update={"lease_bucket": f"solo_{n}", "consumer": f"orchestrator-{n}"})
        for n in (1, 2)
    ]
    async with (
        cluster(nc, settings) as c,
        orchestrator(settings, "d1", configs[0]) as one,
        orchestrator(settings, "d2", configs[1]) as two,
    ):
        await wait_leader(one)
        await wait_leader(two)
        for i in range(8):
            await c.submit(plan, f"race-{i}")
        ends = [await c.wait_end(f"race-{i}", timeout=30) for i in range(8)]
        conflicts = one.stats["conflicts"] + two.stats["conflicts"]
        retried = one.stats["retried"] + two.stats["retried"]

    assert all(isinstance(e, ExecutionCompleted) for e in ends)
    for i in range(8):
        counts = c.dispatch_counts(f"race-{i}")
        assert len(counts) == 23 and set(counts.values()) == {1}, counts
    assert conflicts > 0  # they did race, and the log refused the second decisions
    assert retried == 0  # every conflict was settled at once by reloading from the log
