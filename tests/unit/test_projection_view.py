"""The view's layout: keys, values, truncation, counters. Pure."""

from __future__ import annotations

import base64
import gzip
import os

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import projections
from eventstore.fold import fold
from eventstore.records import RawRecord, RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import subject_for
from projections.log_range_reader import pack_records, unpack_records
from projections.testing import synthetic_run
from projections.view import (
    TRUNCATED_MARKER,
    StateTooLargeError,
    ViewStats,
    contribution,
    decode_state,
    encode_state,
    exec_key,
    index_filter,
    index_key,
    plan_token,
    summary_of,
)

KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=")


def _state(execution_id: str = "e1", **options: object) -> ExecutionState:
    events = synthetic_run(execution_id, **options)  # type: ignore[arg-type]
    records = [RecordedEvent(n, subject_for(e), e) for n, e in enumerate(events, start=1)]
    state = fold(records)
    assert state is not None
    return state


def test_public_api_is_pinned() -> None:
    assert projections.__all__ == [
        "ActionNotFoundError",
        "ActionResult",
        "At",
        "ExecutionNotFoundError",
        "ExecutionSummary",
        "InvalidTransitionError",
        "Projector",
        "RebuildProgress",
        "RebuildReport",
        "ResumeTimeoutError",
        "RetryRefusedError",
        "StateManager",
        "ViewStats",
        "ViewTimeoutError",
        "WaitpointRefusedError",
        "rebuild",
    ]


def test_state_round_trips_as_json_without_the_plan() -> None:
    state = _state()

    value = encode_state(state, limit=1_000_000)

    assert value.startswith(b"{")
    assert b'"plan":null' in value
    assert decode_state(value) == msgspec.structs.replace(state, plan=None)
    assert state.plan is not None  # the caller's state is untouched


def test_state_too_large_as_json_is_stored_compressed_whole() -> None:
    state = _state(output_bytes=20_000)
    plain = encode_state(state, limit=10_000_000)

    value = encode_state(state, limit=len(plain) - 1)

    assert value[:2] == b"\x1f\x8b" and len(gzip.decompress(value)) == len(plain)
    assert decode_state(value) == msgspec.structs.replace(state, plan=None)


def test_incompressible_outputs_are_truncated_largest_first_with_a_marker() -> None:
    state = _state(actions=4)
    sizes = {"a0": 200_000, "a1": 50_000, "a2": 1_000, "a3": 100_000}
    for action_id, size in sizes.items():
        state.actions[action_id].output = {"blob": base64.b64encode(os.urandom(size)).decode()}

    value = encode_state(state, limit=120_000)
    stored = decode_state(value)

    assert len(value) <= 120_000
    outputs = {a: stored.actions[a].output or {} for a in sizes}
    assert outputs["a0"].get(TRUNCATED_MARKER) and outputs["a0"]["bytes"] > 200_000
    assert outputs["a3"].get(TRUNCATED_MARKER)
    assert outputs["a1"] == state.actions["a1"].output
    assert stored.status == state.status and stored.counts == state.counts


def test_a_state_that_cannot_fit_raises() -> None:
    with pytest.raises(StateTooLargeError):
        encode_state(_state(actions=40), limit=100)


@given(st.text(min_size=1, max_size=80))
@example("0\n")  # `$` alone would let a trailing newline through
def test_any_plan_id_becomes_one_valid_key_token(plan_id: str) -> None:
    token = plan_token(plan_id)
    key = index_key("running", plan_id, "e1")

    assert token and set(token) <= KEY_CHARS and "." not in token
    assert key.split(".") == ["idx", "running", token, "e1"]


def test_distinct_plan_ids_give_distinct_tokens() -> None:
    assert plan_token("welcome-email") == "welcome-email"
    assert plan_token("a.b") != plan_token("a_b")
    assert plan_token("a b") != plan_token("a+b")


def test_index_filters_select_by_status_and_plan() -> None:
    assert index_filter() == "idx.*.*.*"
    assert index_filter("failed") == "idx.failed.*.*"
    assert index_filter(plan_id="p") == "idx.*.p.*"
    assert index_filter("completed", "a.b") == f"idx.completed.{plan_token('a.b')}.*"
    assert exec_key("e1") == "exec.e1"


def test_counters_add_each_executions_contribution() -> None:
    done = _state("e1")
    failed = _state("e2", outcome="failed", actions=4)
    stats = ViewStats()

    stats.add(contribution(done))
    stats.add(contribution(failed))
    stats.add(contribution(done), -1)

    assert stats == contribution(failed)
    assert stats.executions["failed"] == 1 and sum(stats.executions.values()) == 1
    assert stats.actions["failed"] == 1 and stats.actions["completed"] == 2
    assert not stats.is_zero() and ViewStats().is_zero()


def test_summary_holds_what_a_listing_shows() -> None:
    state = _state(outcome="cancelled")

    summary = summary_of(state)

    assert (summary.execution_id, summary.plan_id, summary.status) == (
        "e1",
        "synthetic",
        "cancelled",
    )
    assert summary.completed_at == state.completed_at


def test_records_survive_the_pipe_from_the_reader_process() -> None:
    records = [
        RawRecord(1, "plan.submitted.e1", b'{"type": "plan.submitted"}'),
        RawRecord(2**40, "action.started.e1.a", b""),
        RawRecord(3, "execution.completed.\u00e9", bytes(range(256))),
    ]

    frame = pack_records(records)

    assert int.from_bytes(frame[:4], "little") == len(frame) - 4
    assert unpack_records(frame[4:]) == records
