"""Time travel (``projections.history``) and the synthetic histories used by tests. Pure."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore.fold import apply, fold
from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import subject_for
from projections.history import fold_as_of, parse_at
from projections.testing import interleave, synthetic_run, synthetic_runs


def _records(execution_id: str = "e1", **options: object) -> list[RecordedEvent]:
    events = synthetic_run(execution_id, actions=4, **options)  # type: ignore[arg-type]
    stamped = [
        msgspec.structs.replace(e, occurred_at=f"2025-01-01T00:00:{n:02d}.000Z")
        for n, e in enumerate(events)
    ]
    return [RecordedEvent(n * 10, subject_for(e), e) for n, e in enumerate(stamped, start=1)]


def test_parse_at_reads_sequences_and_times() -> None:
    assert parse_at(42) == 42
    assert parse_at(" 42 ") == 42
    assert parse_at("2025-01-01T00:00:00Z") == datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_at("2025-01-01T01:00:00+01:00") == datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_at(datetime(2025, 1, 1)) == datetime(2025, 1, 1, tzinfo=UTC)
    for bad in ("yesterday", -1, True):
        with pytest.raises(ValueError):
            parse_at(bad)  # type: ignore[arg-type]


def test_as_of_a_sequence_folds_the_events_at_or_below_it() -> None:
    records = _records()

    state = fold_as_of(records, 35)

    assert state is not None and state.last_sequence == 30 and state.event_count == 3
    assert fold_as_of(records, 9) is None
    assert fold_as_of(records, 10**9) == fold(records)


def test_as_of_a_time_folds_the_events_that_had_occurred() -> None:
    records = _records()

    state = fold_as_of(records, "2025-01-01T00:00:02.500Z")

    assert state is not None and state.event_count == 3
    assert fold_as_of(records, "2024-12-31T23:59:59Z") is None


@given(st.integers(min_value=0, max_value=200))
def test_every_prefix_by_sequence_is_the_fold_of_that_prefix(at: int) -> None:
    records = _records(retries=[1], skips=[2])

    assert fold_as_of(records, at) == fold([r for r in records if r.sequence <= at])


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled", "running"])
def test_synthetic_runs_end_as_asked(outcome: str) -> None:
    events = synthetic_run("e1", actions=6, outcome=outcome, retries=[0], skips=[4])  # type: ignore[arg-type]
    state = fold(RecordedEvent(n, subject_for(e), e) for n, e in enumerate(events, start=1))

    assert state is not None and state.status == outcome
    finished = state.counts.completed + state.counts.failed + state.counts.skipped
    assert finished + state.counts.cancelled + state.counts.running + state.counts.pending == 6
    assert state.actions["a0"].attempts == 2  # its first attempt timed out


def test_a_plain_completed_run_has_fifty_events_for_sixteen_actions() -> None:
    assert len(synthetic_run("e1")) == 50


def test_interleaving_keeps_each_runs_order_and_every_event() -> None:
    runs = synthetic_runs(30, actions=5)

    merged = list(interleave(runs, concurrency=7, seed=3))

    assert sorted(map(id, merged)) == sorted(id(e) for run in runs for e in run)
    for run in runs:
        mine = [e for e in merged if e.execution_id == run[0].execution_id]
        assert mine == run


def test_coalesced_batches_fold_like_single_events() -> None:
    """What the projector relies on: folding a batch then writing once equals event by event,
    and re-applying an already applied prefix (a redelivery) changes nothing."""
    runs = synthetic_runs(12, actions=5, seed=9)
    log = [
        RecordedEvent(n, subject_for(e), e)
        for n, e in enumerate(interleave(runs, concurrency=5), start=1)
    ]
    rng = random.Random(4)
    states: dict[str, ExecutionState | None] = {}
    position = 0
    while position < len(log):
        restart = max(0, position - rng.randrange(0, 20))  # redeliver some of the past
        end = min(len(log), position + rng.randrange(1, 30))
        for record in log[restart:end]:
            execution_id = record.event.execution_id
            states[execution_id] = apply(states.get(execution_id), record)
        position = end

    for run in runs:
        execution_id = run[0].execution_id
        expected = fold(r for r in log if r.event.execution_id == execution_id)
        assert states[execution_id] == expected
