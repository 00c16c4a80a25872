"""How a for-each action's events fold: its items, their attempts and counters, its output."""

from __future__ import annotations

import random
from typing import Any

import msgspec

from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionItemsStarted,
    ActionStarted,
    ErrorInfo,
    Event,
    PlanSubmitted,
)
from eventstore.fold import apply_event
from eventstore.items import (
    ITEMS_MARKER,
    describe_items,
    items_marker,
    unfinished_item_keys,
)
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.state import ExecutionState, ItemsState
from projections.view import TRUNCATED_MARKER, decode_state, encode_state

E = "e1"
ERROR = ErrorInfo(message="boom", code="http_5xx", status_code=503, retryable=True)


def submitted(count: int = 3) -> ExecutionState:
    plan = Plan(
        id="p",
        actions=[
            Action(id="each", for_each=list(range(count)), request=RequestSpec(url="http://h/"))
        ],
    )
    state = apply_event(None, PlanSubmitted(execution_id=E, plan=plan))
    assert state is not None
    return state


def feed(state: ExecutionState, *events: Event) -> ExecutionState:
    for event in events:
        folded = apply_event(state, event)
        assert folded is not None
        state = folded
    return state


def started(count: int, key: str = "each", concurrency: int = 2) -> ActionItemsStarted:
    return ActionItemsStarted(execution_id=E, action_id=key, count=count, concurrency=concurrency)


def request(key: str) -> ActionExecuteRequested:
    return ActionExecuteRequested(execution_id=E, action_id=key, action_type="http", queue="http")


def attempt(key: str, n: int = 1) -> ActionStarted:
    return ActionStarted(execution_id=E, action_id=key, attempt=n)


def completed(key: str, output: dict[str, Any] | None = None) -> ActionCompleted:
    return ActionCompleted(execution_id=E, action_id=key, attempt=1, output=output or {})


def failed(key: str) -> ActionFailed:
    return ActionFailed(execution_id=E, action_id=key, attempt=2, error=ERROR)


def test_items_started_makes_the_action_and_the_execution_run() -> None:
    state = feed(submitted(), started(3))
    action = state.actions["each"]
    assert action.status == "running" and state.status == "running"
    assert state.counts.running == 1 and state.counts.pending == 0
    assert action.items == ItemsState(count=3, concurrency=2)
    assert action.dispatched_at is not None and action.started_at is not None
    again = feed(state, started(5))
    assert again.actions["each"].items == ItemsState(count=3, concurrency=2)


def test_item_events_update_their_item_and_the_counters_only() -> None:
    state = feed(
        submitted(),
        started(3),
        request("each@0"),
        request("each@1"),
        attempt("each@0"),
        ActionAttemptFailed(
            execution_id=E, action_id="each@0", attempt=1, error=ERROR, retry_in_ms=5
        ),
        attempt("each@0", 2),
        completed("each@0", {"v": 0}),
        attempt("each@1", 1),
    )
    action = state.actions["each"]
    items = action.items
    assert items is not None
    assert (items.dispatched, items.completed, items.failed, items.in_flight) == (2, 1, 0, 1)
    first, second = items.items
    assert (first.status, first.attempts, first.output, first.error) == (
        "completed",
        2,
        {"v": 0},
        None,
    )
    assert first.completed_at is not None and first.duration_ms is not None
    assert (second.status, second.attempts) == ("running", 1)
    assert len(items.items) == 2  # items not dispatched take no room
    # The action itself: still running, no attempts, no output of its own.
    assert (action.status, action.attempts, action.output) == ("running", 0, None)
    assert state.counts.completed == 0


def test_an_item_finishes_once() -> None:
    state = feed(submitted(), started(2), request("each@0"), failed("each@0"))
    state = feed(state, completed("each@0", {"late": True}), attempt("each@0", 3))
    item = state.actions["each"].items.items[0]  # type: ignore[union-attr]
    assert (item.status, item.attempts, item.output, item.error) == ("failed", 2, None, ERROR)
    assert state.actions["each"].items.failed == 1  # type: ignore[union-attr]
    state = feed(state, ActionCancelled(execution_id=E, action_id="each@0"))
    assert state.actions["each"].items.cancelled == 0  # type: ignore[union-attr]


def test_events_of_unknown_items_or_before_the_items_started_change_nothing() -> None:
    state = feed(submitted(), completed("each@0"))
    assert state.actions["each"].items is None
    state = feed(state, started(2), completed("each@2"), completed("each@99999"))
    assert state.actions["each"].items == ItemsState(count=2, concurrency=2)


def test_the_marker_outcome_builds_the_output_from_the_items_and_moves_their_outputs() -> None:
    state = feed(
        submitted(),
        started(3),
        *(request(f"each@{i}") for i in range(3)),
        completed("each@2", {"v": 2}),
        completed("each@0", {"v": 0}),
        completed("each@1", {"v": 1}),
    )
    items = state.actions["each"].items
    assert items is not None
    marker = items_marker(items, list_failures=False)
    assert marker == {ITEMS_MARKER: {"count": 3}}
    state = feed(state, completed("each", marker))
    action = state.actions["each"]
    assert action.status == "completed" and state.counts.completed == 1
    assert action.output == {"items": [{"v": 0}, {"v": 1}, {"v": 2}]}
    assert action.items is not None
    assert [i.output for i in action.items.items] == [None, None, None]
    assert [i.status for i in action.items.items] == ["completed"] * 3


def test_with_continue_on_error_the_output_lists_the_failed_items() -> None:
    state = feed(
        submitted(),
        started(3),
        *(request(f"each@{i}") for i in range(3)),
        completed("each@0", {"v": 0}),
        failed("each@1"),
        completed("each@2", {"v": 2}),
    )
    items = state.actions["each"].items
    assert items is not None
    state = feed(state, completed("each", items_marker(items, list_failures=True)))
    assert state.actions["each"].output == {
        "items": [{"v": 0}, None, {"v": 2}],
        "failed": [{"index": 1, "error": msgspec.to_builtins(ERROR)}],
    }


def test_an_output_that_is_no_marker_is_kept_as_it_is() -> None:
    state = feed(submitted(), started(1), completed("each", {"set": "by hand"}))
    assert state.actions["each"].output == {"set": "by hand"}


def test_items_of_another_run_are_ignored_and_of_the_current_run_folded() -> None:
    state = submitted()
    state.actions["each"].run = 2
    state = feed(state, started(2, key="each~2"), request("each~2@0"), completed("each~2@0"))
    state = feed(state, completed("each@1"))
    items = state.actions["each"].items
    assert items is not None and (items.completed, items.dispatched) == (1, 1)


def test_unfinished_item_keys_and_the_progress_note() -> None:
    state = feed(
        submitted(5),
        started(5, concurrency=3),
        *(request(f"each@{i}") for i in range(4)),
        completed("each@1"),
        failed("each@2"),
    )
    action = state.actions["each"]
    assert unfinished_item_keys(action) == ["each@0", "each@3"]
    assert action.items is not None
    assert describe_items(action.items) == "2/5 items done, 1 failed, 2 in flight"
    state = feed(state, ActionCancelled(execution_id=E, action_id="each@0"))
    assert describe_items(action.items) == "3/5 items done, 1 failed, 1 cancelled, 1 in flight"


def test_a_ten_thousand_item_state_fits_the_view_and_keeps_the_item_statuses() -> None:
    count = 10_000
    state = feed(submitted(count), started(count, concurrency=200))
    output = {"id": 0, "name": "an item with a name", "tags": ["a", "b", "c"], "score": 0.5}
    for i in range(count):
        key = f"each@{i}"
        state = feed(state, request(key), attempt(key), completed(key, {**output, "id": i}))
    limit = 1024 * 1024
    value = encode_state(state, limit)
    assert len(value) <= limit
    view = decode_state(value)
    items = view.actions["each"].items
    assert items is not None and items.completed == count and len(items.items) == count
    assert all(item.status == "completed" for item in items.items)


def test_item_outputs_too_large_for_the_view_are_cut_and_the_statuses_kept() -> None:
    count = 300
    state = feed(submitted(count), started(count, concurrency=10))
    for i in range(count):
        key = f"each@{i}"
        noise = random.Random(i).randbytes(3000).hex()  # incompressible
        state = feed(state, request(key), attempt(key), completed(key, {"noise": noise}))
    limit = 256 * 1024
    view = decode_state(encode_state(state, limit))
    items = view.actions["each"].items
    assert items is not None and items.completed == count
    assert all(item.status == "completed" for item in items.items)
    assert all(item.output == {TRUNCATED_MARKER: True} for item in items.items)
    assert state.actions["each"].items.items[0].output is not None  # type: ignore[union-attr]
