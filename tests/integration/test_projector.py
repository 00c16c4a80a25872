"""The projector against a real nats-server: the KV view equals the fold of each history."""

from __future__ import annotations

import base64
import os

import anyio
import msgspec
import pytest
from nats.js.kv import KeyValue

from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ActionStarted, Event
from eventstore.fold import fold
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.scan import scan_keys
from eventstore.state import ExecutionState
from projections import StateManager
from projections.buckets import ensure_current_view
from projections.testing import (
    interleave,
    running_projector,
    synthetic_run,
    synthetic_runs,
)
from projections.view import (
    CHECKPOINT_KEY,
    STATS_KEY,
    TRUNCATED_MARKER,
    ViewStats,
    contribution,
    decode_checkpoint,
    decode_state,
    decode_stats,
    decode_summary,
    index_key,
)

pytestmark = pytest.mark.anyio


async def _append_runs(event_log: EventLog, runs: list[list[Event]]) -> int:
    results = await event_log.append_many(list(interleave(runs, concurrency=20)))
    return results[-1].sequence


async def _view(nc: NatsClient, settings: TepSettings) -> KeyValue:
    _, _, kv = await ensure_current_view(nc.jetstream(), settings)
    return kv


async def _bucket_name(nc: NatsClient, settings: TepSettings) -> str:
    _, pointer, _ = await ensure_current_view(nc.jetstream(), settings)
    return pointer.bucket


async def _wait_applied(sm: StateManager, sequence: int) -> None:
    await sm.wait_for_sequence(sequence, timeout=30)


async def _expected_states(event_log: EventLog, ids: list[str]) -> dict[str, ExecutionState]:
    expected = {}
    for execution_id in ids:
        state = fold(await event_log.read_execution(execution_id))
        assert state is not None
        expected[execution_id] = msgspec.structs.replace(state, plan=None)
    return expected


async def _assert_view_is_fold_of_log(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, ids: list[str]
) -> None:
    contents = await scan_keys(nc, await _bucket_name(nc, settings))
    expected = await _expected_states(event_log, ids)
    states = {
        key.removeprefix("exec."): decode_state(value)
        for key, value in contents.items()
        if key.startswith("exec.")
    }
    assert states == expected
    totals = ViewStats()
    for state in expected.values():
        totals.add(contribution(state))
    assert decode_stats(contents[STATS_KEY]) == totals
    index = {
        key: decode_summary(value) for key, value in contents.items() if key.startswith("idx.")
    }
    assert set(index) == {index_key(s.status, s.plan_id, s.execution_id) for s in expected.values()}


async def test_view_equals_the_fold_of_every_history(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    runs = synthetic_runs(40)
    last = await _append_runs(event_log, runs)

    async with running_projector(nc, settings), await StateManager.connect(settings=settings) as sm:
        await _wait_applied(sm, last)

    await _assert_view_is_fold_of_log(nc, settings, event_log, [r[0].execution_id for r in runs])
    checkpoint = (await (await _view(nc, settings)).get(CHECKPOINT_KEY)).value
    assert decode_checkpoint(checkpoint or b"") == last


async def test_restart_and_redelivery_never_double_count(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    runs = synthetic_runs(30, seed=11)
    first_half, second_half = runs[:15], runs[15:]
    last = await _append_runs(event_log, first_half)
    async with await StateManager.connect(settings=settings) as sm:
        # Kill the projector mid-stream: small batches, cancelled once a third is applied.
        async with running_projector(nc, settings, batch_size=20) as projector:
            with anyio.fail_after(30):
                await projector.wait_for(last // 3)
        kv = await _view(nc, settings)
        stopped_at = decode_checkpoint((await kv.get(CHECKPOINT_KEY)).value or b"")
        assert 0 < stopped_at < last

        last = await _append_runs(event_log, second_half)
        async with running_projector(nc, settings, batch_size=40):
            await _wait_applied(sm, last)
        # Redelivery: rewind the checkpoint to the start, as if every ack had been lost.
        await kv.put(CHECKPOINT_KEY, b"0")
        async with running_projector(nc, settings):
            await _wait_applied(sm, last)

    await _assert_view_is_fold_of_log(nc, settings, event_log, [r[0].execution_id for r in runs])


async def test_two_replicas_at_once_build_the_same_view(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    runs = synthetic_runs(40, seed=5)
    other = await connect(settings.nats_url, name="replica-2")
    try:
        async with (
            running_projector(nc, settings, batch_size=64) as one,
            running_projector(other, settings, batch_size=64) as two,
            await StateManager.connect(settings=settings) as sm,
        ):
            last = 0
            for start in range(0, 40, 10):
                last = await _append_runs(event_log, runs[start : start + 10])
            await _wait_applied(sm, last)
            # Both followed the whole log; whichever was behind re-read instead of overwriting.
            assert one.updater is not None and two.updater is not None
    finally:
        await other.close()

    await _assert_view_is_fold_of_log(nc, settings, event_log, [r[0].execution_id for r in runs])


async def test_poison_events_are_dead_lettered_and_projection_goes_on(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    js = nc.jetstream()
    garbage = await js.publish("plan.submitted.bad", b"{not json")
    unknown = await js.publish(
        "action.exploded.e1.a0", b'{"type": "action.exploded", "execution_id": "e1"}'
    )
    orphan = await event_log.append(ActionStarted(execution_id="ghost", action_id="a", attempt=1))
    run = synthetic_run("e1", actions=3)
    last = (await event_log.append_many(run))[-1].sequence

    async with running_projector(nc, settings), await StateManager.connect(settings=settings) as sm:
        await _wait_applied(sm, last)
        state = await sm.get_execution_state("e1")

    assert state is not None and state.status == "completed"
    letters = await _dead_letters(nc, settings)
    assert [(h["Tep-Reason-Code"], int(h["Tep-Original-Sequence"])) for _, h in letters] == [
        ("undecodable", garbage.seq),
        ("unknown_type", unknown.seq),
        ("unknown_execution", orphan.sequence),
    ]
    assert letters[0][0] == "tep.deadletter.projector.plan.submitted.bad"


async def _dead_letters(nc: NatsClient, settings: TepSettings) -> list[tuple[str, dict[str, str]]]:
    js = nc.jetstream()
    info = await js.stream_info(settings.deadletter_stream)
    letters = []
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(settings.deadletter_stream, sequence)
        letters.append((msg.subject, dict(msg.headers or {})))
    return letters


async def test_list_by_status_and_plan_reads_the_index(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    runs = synthetic_runs(21, seed=3, plans=3)
    last = await _append_runs(event_log, runs)
    expected = await _expected_states(event_log, [r[0].execution_id for r in runs])

    async with running_projector(nc, settings), await StateManager.connect(settings=settings) as sm:
        await _wait_applied(sm, last)
        everything = await sm.list_executions()
        completed = await sm.list_executions(status="completed")
        plan_1 = await sm.list_executions(plan_id="plan-1")
        failed_plan_2 = await sm.list_executions(status="failed", plan_id="plan-2")

    def ids(predicate: object) -> set[str]:
        return {e for e, s in expected.items() if predicate(s)}  # type: ignore[operator]

    assert {s.execution_id for s in everything} == set(expected)
    assert {s.execution_id for s in completed} == ids(lambda s: s.status == "completed")
    assert {s.execution_id for s in plan_1} == ids(lambda s: s.plan_id == "plan-1")
    assert {s.execution_id for s in failed_plan_2} == ids(
        lambda s: s.status == "failed" and s.plan_id == "plan-2"
    )
    assert all(s.status == "completed" for s in completed)


async def test_outputs_too_large_for_a_value_are_truncated_with_a_marker(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    run = synthetic_run("big", actions=5)
    big = [
        msgspec.structs.replace(e, output={"blob": base64.b64encode(os.urandom(300_000)).decode()})
        if isinstance(e, ActionCompleted)
        else e
        for e in run
    ]
    last = 0
    for event in big:
        last = (await event_log.append(event)).sequence

    async with running_projector(nc, settings), await StateManager.connect(settings=settings) as sm:
        await _wait_applied(sm, last)
        state = await sm.get_execution_state("big")

    assert state is not None and state.status == "completed"
    outputs = [a.output for a in state.actions.values()]
    assert any(o is not None and o.get(TRUNCATED_MARKER) for o in outputs)
    assert all(a.status == "completed" for a in state.actions.values())
