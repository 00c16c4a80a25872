"""What a delivery does from where its action stands (executor.position), and the in-process
registry that cuts attempts short (executor.holders)."""

from __future__ import annotations

import anyio
import pytest

from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    ErrorInfo,
    Event,
)
from executor.holders import Holders
from executor.position import ActionPosition, GiveUp, Settled, Start, next_step
from executor.probe import seconds_until_over

IDS = {"execution_id": "e1", "action_id": "a"}


def started(attempt: int, interruption: int = 0) -> ActionStarted:
    return ActionStarted(**IDS, attempt=attempt, interruption=interruption)


ENDS: list[Event] = [
    ActionCompleted(**IDS, attempt=1, output={}),
    ActionFailed(**IDS, attempt=1, error=ErrorInfo(message="no", code=ErrorCode.HTTP_4XX)),
    ActionSkipped(**IDS, reason="condition_false"),
    ActionCancelled(**IDS, reason="operator"),
]


def test_a_new_action_starts_attempt_one_guarded_on_an_empty_filter() -> None:
    assert next_step(ActionPosition(0, None), max_interruptions=5) == Start(1, 0, 0)


@pytest.mark.parametrize("end", ENDS, ids=lambda e: type(e).__name__)
def test_an_action_that_ended_is_not_run_again(end: Event) -> None:
    assert next_step(ActionPosition(7, end), max_interruptions=5) == Settled(end)


def test_a_start_followed_by_its_failure_is_the_next_attempt() -> None:
    position = ActionPosition(9, started(2, interruption=3), failed_attempt=2)

    assert next_step(position, max_interruptions=5) == Start(3, 0, 9)


def test_a_start_without_its_outcome_was_interrupted_and_starts_again() -> None:
    position = ActionPosition(9, started(2, interruption=1), failed_attempt=1)

    assert next_step(position, max_interruptions=5) == Start(2, 2, 9)


def test_interruptions_past_the_budget_give_up_naming_the_count() -> None:
    assert next_step(ActionPosition(4, started(1, 2)), max_interruptions=3) == Start(1, 3, 4)
    assert next_step(ActionPosition(4, started(1, 3)), max_interruptions=3) == GiveUp(1, 4, 4)
    assert next_step(ActionPosition(4, started(1)), max_interruptions=0) == GiveUp(1, 1, 4)


def test_an_undecodable_last_event_still_guards_the_start() -> None:
    assert next_step(ActionPosition(5, None), max_interruptions=5) == Start(1, 0, 5)


@pytest.mark.anyio
async def test_an_aborted_holder_cancels_its_call_and_says_why() -> None:
    holders = Holders()
    holder = holders.hold("e1", "a")
    assert holders.abort("e1", "a", "cancelled")
    with holder.scope:
        await anyio.sleep(10)
    assert holder.scope.cancelled_caught and holder.reason == "cancelled"
    holders.release(holder)
    assert len(holders) == 0 and not holders.abort("e1", "a", "cancelled")


@pytest.mark.anyio
async def test_a_newer_start_of_the_same_action_supersedes_the_older_one() -> None:
    holders = Holders()
    old = holders.hold("e1", "a")
    new = holders.hold("e1", "a")

    assert old.reason == "superseded" and new.reason is None
    holders.release(old)
    assert len(holders) == 1
    holders.release(new)
    assert len(holders) == 0


def test_an_attempt_is_over_once_its_time_limit_has_passed_since_its_start() -> None:
    start = ActionStarted(**IDS, attempt=1, occurred_at="2026-01-01T00:00:00.000000Z")
    began = 1767225600.0  # 2026-01-01T00:00:00Z

    assert seconds_until_over(start, 30.0, now=began + 10) == pytest.approx(21.0)
    assert seconds_until_over(start, 30.0, now=began + 40) < 0
    unreadable = ActionStarted(**IDS, attempt=1, occurred_at="yesterday")
    assert seconds_until_over(unreadable, 30.0) == 0.0
