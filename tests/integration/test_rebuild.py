"""Rebuild: a fresh view from the whole log, equal to the live one, switched to atomically."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from nats.js.kv import KeyValue
from support.wait_histories import STAGES, wait_history

from eventstore.config import TepSettings
from eventstore.errors import TepError
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.scan import scan_keys
from projections import RebuildProgress, StateManager, rebuild
from projections.buckets import (
    ensure_meta_bucket,
    read_pointer,
    view_bucket_exists,
)
from projections.log_range_reader import read_in_child
from projections.testing import (
    interleave,
    running_projector,
    synthetic_run,
    synthetic_runs,
)
from projections.view import CHECKPOINT_KEY, STATS_KEY, decode_checkpoint, decode_stats
from tep.server import find_free_port

pytestmark = pytest.mark.anyio


class _Interrupted(Exception):
    """Stands for a crash of the rebuild at a chosen point."""


@pytest.fixture
async def sm(settings: TepSettings) -> AsyncIterator[StateManager]:
    async with await StateManager.connect(settings=settings) as manager:
        yield manager


async def _append_runs(event_log: EventLog, count: int, seed: int = 1) -> tuple[list[str], int]:
    runs = synthetic_runs(count, seed=seed)
    results = await event_log.append_many(list(interleave(runs, concurrency=25)))
    return [r[0].execution_id for r in runs], results[-1].sequence


async def _bucket(nc: NatsClient, generation: int) -> KeyValue:
    return await nc.jetstream().key_value(f"tep_view_{generation}")


async def _generation(nc: NatsClient, settings: TepSettings) -> int:
    pointer = await read_pointer(await ensure_meta_bucket(nc.jetstream(), settings))
    assert pointer is not None
    return pointer.generation


def _comparable(contents: dict[str, bytes]) -> dict[str, object]:
    return {k: decode_stats(v) if k == STATS_KEY else v for k, v in contents.items()}


async def test_rebuild_equals_the_live_view_key_by_key(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, sm: StateManager
) -> None:
    # Retries, skips, failures, cancellations and unfinished runs, interleaved.
    _, last = await _append_runs(event_log, 60)
    async with running_projector(nc, settings):
        await sm.wait_for_sequence(last, timeout=30)
        live = await scan_keys(nc, "tep_view_1")

        # The log is read by a child process (as for large logs), folded and written here.
        report = await rebuild(nc, settings, keep_old=True, batch_size=500, parallel=True)

    rebuilt = await scan_keys(nc, "tep_view_2")
    assert report.generation == 2 and report.previous_generation == 1
    assert report.checkpoint == last and report.events == last and report.executions == 60
    assert _comparable(rebuilt) == _comparable(live)
    assert decode_checkpoint(rebuilt[CHECKPOINT_KEY]) == last
    assert await _generation(nc, settings) == 2
    assert await view_bucket_exists(nc.jetstream(), 1)


async def test_rebuild_equals_the_live_view_with_waits_in_every_stage(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, sm: StateManager
) -> None:
    # Waitpoints and sleeps: waiting, refused, resumed, completed, timed out. The live view
    # takes every history in two parts (both actions waiting first, then the rest), so its
    # waiting-index entries are written and removed as it goes; the rebuild takes it all at
    # once, next to ordinary runs.
    stages = {f"w-{stage}-{n}": stage for n in range(3) for stage in STAGES}
    histories = {e: wait_history(e, stage) for e, stage in stages.items()}
    _, last = await _append_runs(event_log, 20, seed=5)
    async with running_projector(nc, settings, batch_size=7):
        for part in (slice(0, 3), slice(3, None)):
            results = await event_log.append_many([e for h in histories.values() for e in h[part]])
            last = max(last, results[-1].sequence) if results else last
            await sm.wait_for_sequence(last, timeout=30)
        live = await scan_keys(nc, "tep_view_1")
        waiting = await sm.list_executions(status="waiting")
        report = await rebuild(nc, settings, keep_old=True, batch_size=500)

    rebuilt = await scan_keys(nc, "tep_view_2")
    expected = sorted(e for e, stage in stages.items() if stage in ("waiting", "refused"))
    assert report.checkpoint == last
    assert _comparable(rebuilt) == _comparable(live)
    assert sorted(s.execution_id for s in waiting) == expected
    assert sorted(k.rsplit(".", 1)[1] for k in rebuilt if k.startswith("idx.waiting.")) == expected
    assert len(await sm.list_executions()) == 20 + len(stages)


async def test_readers_never_miss_an_execution_during_a_rebuild(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, sm: StateManager
) -> None:
    ids, last = await _append_runs(event_log, 80)
    misses: list[str] = []
    rounds = 0

    async with running_projector(nc, settings):
        await sm.wait_for_sequence(last, timeout=30)
        rebuilt = anyio.Event()

        async def read_until_rebuilt() -> None:
            nonlocal rounds
            while True:
                misses.extend([e for e in ids if await sm.get_execution_state(e) is None])
                if len(await sm.list_executions()) != len(ids):
                    misses.append("list")
                rounds += 1
                if rebuilt.is_set():
                    return

        async with anyio.create_task_group() as group:
            group.start_soon(read_until_rebuilt)
            await rebuild(nc, settings, batch_size=64)
            rebuilt.set()

    assert misses == []
    assert rounds >= 2
    assert await _generation(nc, settings) == 2
    assert not await view_bucket_exists(nc.jetstream(), 1)


async def test_an_interrupted_rebuild_resumes_where_it_stopped(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, sm: StateManager
) -> None:
    _, last = await _append_runs(event_log, 40)
    async with running_projector(nc, settings):
        await sm.wait_for_sequence(last, timeout=30)
    live = await scan_keys(nc, "tep_view_1")
    batches = 0

    def stop_after_three(progress: RebuildProgress) -> None:
        nonlocal batches
        batches += 1
        if batches == 3:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        await rebuild(nc, settings, batch_size=100, progress=stop_after_three)
    assert await _generation(nc, settings) == 1
    partial = await _bucket(nc, 2)
    stopped_at = decode_checkpoint((await partial.get(CHECKPOINT_KEY)).value or b"")
    assert 0 < stopped_at < last

    report = await rebuild(nc, settings, keep_old=True)

    assert report.resumed_from == stopped_at
    assert report.events == last - stopped_at
    assert _comparable(await scan_keys(nc, "tep_view_2")) == _comparable(live)


async def test_the_live_projector_continues_on_the_new_view(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, sm: StateManager
) -> None:
    _, last = await _append_runs(event_log, 10)
    async with running_projector(nc, settings) as projector:
        await sm.wait_for_sequence(last, timeout=30)
        await rebuild(nc, settings)
        late = await event_log.append_many(synthetic_run("late", actions=4))

        state = await sm.get_execution_state("late", min_sequence=late[-1].sequence, timeout=30)

        assert projector.generation == 2
    assert state is not None and state.status == "completed"
    assert (await (await _bucket(nc, 2)).get("exec.late")).value


async def test_a_failing_reader_process_fails_the_rebuild_cleanly(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    await event_log.append_many(synthetic_run("e1", actions=2))
    unreachable = settings.model_copy(update={"nats_url": f"nats://127.0.0.1:{find_free_port()}"})

    with pytest.raises(TepError, match=r"log reader process failed: .*cannot reach NATS"):
        async for _ in read_in_child(unreachable, 1, 10, max_batch=100):
            pass
