"""Partition routing on a real nats-server: the server's ``{{partition(n,1)}}`` transform puts
each execution where :func:`eventstore.partitions.partition_of` says, every event of one
execution the orchestrator consumes lands in that one partition, the deployment's count is fixed
once, and a message an orchestrator gets from the partition stream carries the log's sequence."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator

import anyio
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from support.waiting import eventually

from eventstore.config import TepSettings
from eventstore.errors import ConfigConflictError
from eventstore.events import PlanSubmitted
from eventstore.headers import STREAM_SOURCE
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import META_BUCKET, ensure_log, ensure_partitions
from eventstore.partitions import (
    DEFAULT_PARTITIONS,
    PARTITIONS_KEY,
    origin_subject,
    partition_consumer,
    partition_of,
    partition_stream,
    source_sequence,
)
from eventstore.plan import Action, Plan, RequestSpec
from orchestrator.config import OrchestratorConfig
from orchestrator.partition_worker import PartitionWorker
from tep.server import EmbeddedServer

pytestmark = pytest.mark.anyio

# One subject of every type the orchestrator consumes, for execution ``{e}``.
CONSUMED = (
    "plan.submitted.{e}",
    "action.completed.{e}.a",
    "action.failed.{e}.b~2@3",
    "action.resume.requested.{e}.w",
    "action.timer.fired.{e}.t",
    "execution.cancel.requested.{e}",
    "execution.completed.{e}",
    "execution.failed.{e}",
    "execution.cancelled.{e}",
    "execution.retried.{e}",
)
# Events of the same execution the orchestrator does not consume: never in the partition stream.
NOT_CONSUMED = (
    "action.execute.requested.http.{e}.a",
    "action.started.{e}.a",
    "action.attempt.failed.{e}.a",
    "action.skipped.{e}.a",
    "action.waiting.{e}.w",
    "action.items.started.{e}.f",
)


async def partition_messages(js: JetStreamContext, stream: str, expected: int) -> list[Msg]:
    """The partition stream's messages once it holds ``expected`` (sourcing is asynchronous)."""

    async def enough() -> bool:
        info = await js.stream_info(stream)
        return int(info.state.messages or 0) >= expected

    await eventually(enough, 15, f"{stream} never held {expected} messages")
    info = await js.stream_info(stream)
    found = []
    for sequence in range(int(info.state.first_seq or 1), int(info.state.last_seq or 0) + 1):
        try:
            found.append(await js.get_msg(stream, sequence))
        except NotFoundError:
            continue
    assert len(found) == expected, [m.subject for m in found]
    return found  # type: ignore[return-value]


def ids(n: int) -> list[str]:
    """Execution ids of many shapes (what ID_PATTERN allows)."""
    shapes = ["x", "Z", "0", "-", "_", "e-1", "a" * 128, "E_" + "9" * 40]
    shapes += [uuid.uuid4().hex[: 1 + i % 32] for i in range(n - len(shapes))]
    return shapes


async def test_the_server_partitions_executions_as_partition_of(
    nc: NatsClient, settings: TepSettings
) -> None:
    js = nc.jetstream()
    executions = ids(50)
    for execution_id in executions:
        await js.publish(f"plan.submitted.{execution_id}", b"{}")
    messages = await partition_messages(js, partition_stream(settings.stream), len(executions))
    seen = {}
    for msg in messages:
        _, _, partition, *rest = msg.subject.split(".")
        seen[rest[-1]] = int(partition)
    assert seen == {e: partition_of(e, DEFAULT_PARTITIONS) for e in executions}
    assert len(set(seen.values())) > 8  # spread, not all in one


async def test_one_executions_events_land_in_its_one_partition(
    nc: NatsClient, settings: TepSettings
) -> None:
    js = nc.jetstream()
    executions = [uuid.uuid4().hex[:12] for _ in range(6)]
    # The unconsumed ones first: once the consumed ones are in, the others would be too.
    for template in NOT_CONSUMED:
        for execution_id in executions:
            await js.publish(template.format(e=execution_id), b"{}")
    logged: dict[str, int] = {}
    for template in CONSUMED:
        for execution_id in executions:
            subject = template.format(e=execution_id)
            logged[subject] = (await js.publish(subject, b"{}")).seq
    stream = partition_stream(settings.stream)
    messages = await partition_messages(js, stream, len(CONSUMED) * len(executions))

    routed: dict[str, int] = {}
    for msg in messages:
        partition = int(msg.subject.split(".")[2])
        subject = origin_subject(msg.subject)
        assert msg.subject == f"tep.part.{partition}.{subject}"
        routed[subject] = partition
        # Each keeps the log's sequence in the header the server sets.
        assert source_sequence((msg.headers or {}).get(STREAM_SOURCE)) == logged[subject]
    assert set(routed) == set(logged)
    for execution_id in executions:
        partitions = {routed[t.format(e=execution_id)] for t in CONSUMED}
        assert partitions == {partition_of(execution_id, DEFAULT_PARTITIONS)}, execution_id

    # Each partition's consumer has exactly its executions' events waiting.
    per_partition = Counter(routed.values())
    for partition in range(DEFAULT_PARTITIONS):
        info = await js.consumer_info(stream, partition_consumer("orchestrator", partition))
        assert int(info.num_pending or 0) == per_partition[partition], partition


async def test_the_count_is_written_once_and_a_different_one_refused(
    nc: NatsClient, settings: TepSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    js = nc.jetstream()
    meta = await js.key_value(META_BUCKET)
    entry = await meta.get(PARTITIONS_KEY)
    assert entry.value == str(DEFAULT_PARTITIONS).encode()
    revision = entry.revision

    # Provisioning again (every role does at start) reads it back, never writes it.
    assert await ensure_partitions(js, settings) == DEFAULT_PARTITIONS
    await ensure_log(js, settings)
    same = TepSettings(nats_url=settings.nats_url, partitions=DEFAULT_PARTITIONS)
    assert await ensure_partitions(js, same) == DEFAULT_PARTITIONS
    assert (await meta.get(PARTITIONS_KEY)).revision == revision

    different = TepSettings(nats_url=settings.nats_url, partitions=8)
    with pytest.raises(ConfigConflictError) as refused:
        await ensure_partitions(js, different)
    assert "16" in str(refused.value) and "8" in str(refused.value)
    assert "TEP_PARTITIONS=8" in str(refused.value)

    monkeypatch.setenv("TEP_PARTITIONS", "32")
    with pytest.raises(ConfigConflictError, match="TEP_PARTITIONS=32") as from_env:
        await ensure_log(js, TepSettings(nats_url=settings.nats_url))
    assert "16" in str(from_env.value)

    assert (await meta.get(PARTITIONS_KEY)).revision == revision
    info = await js.stream_info(partition_stream(settings.stream))
    (source,) = info.config.sources or []
    assert all("{{partition(16,1)}}" in str(t.dest) for t in source.subject_transforms or [])


@pytest.fixture
async def bare_nc(nats_server: EmbeddedServer) -> AsyncIterator[NatsClient]:
    """A connection to a server nobody provisioned yet."""
    client = await connect(nats_server.url, name="tests")
    yield client
    await client.close()


async def test_a_new_deployment_keeps_the_count_it_was_first_given(
    bare_nc: NatsClient, nats_server: EmbeddedServer
) -> None:
    js = bare_nc.jetstream()
    first = TepSettings(nats_url=nats_server.url, partitions=4)
    await ensure_log(js, first)
    # Later roles without TEP_PARTITIONS follow the deployment's count, not the default.
    assert await ensure_partitions(js, TepSettings(nats_url=nats_server.url)) == 4
    stream = partition_stream(first.stream)
    consumers = sorted(c.name for c in await js.consumers_info(stream))
    assert consumers == [partition_consumer("orchestrator", p) for p in range(4)]
    execution_id = "four-" + uuid.uuid4().hex[:6]
    await js.publish(f"plan.submitted.{execution_id}", b"{}")
    (msg,) = await partition_messages(js, stream, 1)
    assert msg.subject == f"tep.part.{partition_of(execution_id, 4)}.plan.submitted.{execution_id}"


async def test_roles_provisioning_at_once_agree_on_one_count(
    bare_nc: NatsClient, nats_server: EmbeddedServer
) -> None:
    js = bare_nc.jetstream()
    settings = TepSettings(nats_url=nats_server.url)
    counts: list[int] = []

    async def provision() -> None:
        await ensure_log(js, settings)
        counts.append(await ensure_partitions(js, settings))

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(provision)
    assert counts == [DEFAULT_PARTITIONS] * 4
    stream = partition_stream(settings.stream)
    assert len(await js.consumers_info(stream)) == DEFAULT_PARTITIONS
    info = await js.stream_info(stream)
    assert len(info.config.sources or []) == 1


async def test_different_counts_at_once_one_wins_the_other_is_refused(
    bare_nc: NatsClient, nats_server: EmbeddedServer
) -> None:
    js = bare_nc.jetstream()
    results: dict[int, object] = {}

    async def provision(count: int) -> None:
        try:
            await ensure_log(js, TepSettings(nats_url=nats_server.url, partitions=count))
            results[count] = "ok"
        except ConfigConflictError as exc:
            results[count] = exc

    async with anyio.create_task_group() as group:
        group.start_soon(provision, 8)
        group.start_soon(provision, 16)
    (winner,) = [count for count, result in results.items() if result == "ok"]
    (loser,) = {8, 16} - {winner}
    assert isinstance(results[loser], ConfigConflictError)
    assert f"has {winner} orchestrator partitions" in str(results[loser])
    meta = await js.key_value(META_BUCKET)
    assert (await meta.get(PARTITIONS_KEY)).value == str(winner).encode()


# ---------------------------------------------------------------- what the orchestrator sees


class Recorder:
    """Stands in for the orchestrator's batcher: records each message as it arrives, acks it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int, int]] = []

    async def handle(self, lane: object) -> int:
        msg: Msg = next(iter(lane))  # type: ignore[call-overload]
        meta = msg.metadata
        self.seen.append((msg.subject, meta.stream, meta.sequence.stream, meta.num_delivered))
        await msg.ack()
        return 1


async def test_a_message_reaching_the_orchestrator_keeps_the_logs_sequence(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    js = nc.jetstream()
    execution_id = "seq-" + uuid.uuid4().hex[:8]
    partition = partition_of(execution_id, DEFAULT_PARTITIONS)
    # Events the partition stream does not take first, so the log's sequences and the
    # partition stream's differ.
    for n in range(5):
        await js.publish(f"action.started.{execution_id}.x{n}", b"{}")
    plan = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://127.0.0.1:9/"))])
    submitted = await event_log.append(PlanSubmitted(execution_id=execution_id, plan=plan))
    completed = (await js.publish(f"action.completed.{execution_id}.a", b"{}")).seq

    recorder = Recorder()
    worker = PartitionWorker(
        nc,
        js,
        stream=partition_stream(settings.stream),
        log_stream=settings.stream,
        partition=partition,
        config=OrchestratorConfig(pull_expires_s=0.5),
        batcher=recorder,  # type: ignore[arg-type]
        replicas=1,
    )
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await eventually(lambda: len(recorder.seen) >= 2, 15, "the worker got nothing")
        await worker.stop()
    assert recorder.seen == [
        (f"plan.submitted.{execution_id}", settings.stream, submitted.sequence, 1),
        (f"action.completed.{execution_id}.a", settings.stream, completed, 1),
    ]
    # The log holds them at those sequences, under those subjects.
    for subject, _, sequence, _ in recorder.seen:
        assert (await js.get_msg(settings.stream, sequence)).subject == subject
    # Acknowledged on the partition's consumer: interest retention let them go.
    info = await js.stream_info(partition_stream(settings.stream))
    assert int(info.state.messages or 0) == 0
