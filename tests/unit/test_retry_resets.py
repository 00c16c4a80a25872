"""Which actions a retry resets (``projections.retry.reset_for``), and which retries it refuses."""

from __future__ import annotations

import pytest
from retry_support import Play, chain, failed_at_third, http

from eventstore.error_codes import ErrorCode
from eventstore.events import ErrorInfo, ExecutionFailed, PlanSubmitted
from eventstore.fold import apply_event
from eventstore.plan import Plan
from projections.errors import RetryRefusedError
from projections.retry import downstream, reset_for


def diamond() -> Plan:
    """``a -> (b, c) -> d``, and ``e`` on its own."""
    return Plan(
        id="diamond",
        actions=[http("a"), http("b", "a"), http("c", "a"), http("d", "b", "c"), http("e")],
    )


def completed(plan: Plan) -> Play:
    play = Play(plan)
    while play.state.status == "running":
        [key] = [a.action_id for a in play.state.actions.values() if a.status == "pending"][:1]
        play.complete(key)
    assert play.state.status == "completed"
    return play


def test_from_resets_the_action_and_everything_downstream_transitively() -> None:
    play = completed(diamond())

    assert reset_for(play.state, ["b"]) == ["b", "d"]
    assert reset_for(play.state, ["a"]) == ["a", "b", "c", "d"]
    assert reset_for(play.state, ["c", "e"]) == ["c", "d", "e"]


def test_error_routes_are_downstream_of_the_action_they_handle() -> None:
    plan = Plan(
        id="routes",
        actions=[
            http("charge", on_error=["notify"]),
            http("notify", run_if="failed"),
            http("ship", "charge"),
        ],
    )

    assert downstream(plan, ["charge"]) == {"charge", "notify", "ship"}
    assert downstream(plan, ["notify"]) == {"notify"}


def test_a_failed_execution_resets_what_failed_and_what_did_not_run_after_it() -> None:
    play = failed_at_third()

    assert reset_for(play.state) == ["three", "four"]
    assert reset_for(play.state, only_failed=True) == ["three", "four"]
    assert reset_for(play.state, ["two"]) == ["two", "three", "four"]


def test_only_failed_keeps_what_completed_downstream_the_default_does_not() -> None:
    plan = Plan(
        id="cleanup",
        actions=[
            http("work", continue_on_error=True),
            http("cleanup", "work", run_if="always"),
            http("report", "work"),
            http("other"),
        ],
    )
    play = Play(plan)
    play.fail("work")
    play.complete("cleanup")
    play.fail("other")
    assert play.state.status == "failed"
    assert play.state.actions["report"].status == "skipped"

    assert reset_for(play.state) == ["work", "cleanup", "report", "other"]
    assert reset_for(play.state, only_failed=True) == ["work", "report", "other"]


def test_a_cancelled_execution_resets_the_cancelled_actions_and_after() -> None:
    play = Play(chain("one", "two", "three"))
    play.complete("one")
    play.start("two")
    play.cancel()
    assert play.state.status == "cancelled"
    statuses = {k: a.status for k, a in play.state.actions.items()}
    assert statuses == {"one": "completed", "two": "cancelled", "three": "cancelled"}

    assert reset_for(play.state) == ["two", "three"]
    assert reset_for(play.state, only_failed=True) == ["two", "three"]


def test_from_and_only_failed_together_reset_the_union() -> None:
    play = Play(Plan(id="p", actions=[http("a"), http("b"), http("c", "a", "b")]))
    play.complete("a")
    play.fail("b")
    assert play.state.status == "failed"

    assert reset_for(play.state, ["a"], only_failed=True) == ["a", "b", "c"]


def test_a_completed_execution_is_retried_only_from_named_actions() -> None:
    play = completed(chain("one", "two", "three"))

    with pytest.raises(RetryRefusedError, match=r"completed: nothing failed.*--from ACTION"):
        reset_for(play.state)
    with pytest.raises(RetryRefusedError, match="completed: nothing failed"):
        reset_for(play.state, only_failed=True)
    assert reset_for(play.state, ["two"]) == ["two", "three"]


def test_a_running_execution_is_refused() -> None:
    play = Play(chain("one", "two"))

    with pytest.raises(RetryRefusedError, match="e1 is running: only a failed, cancelled or"):
        reset_for(play.state, ["one"])


def test_an_unknown_action_is_refused_by_name() -> None:
    play = failed_at_third()

    with pytest.raises(RetryRefusedError, match=r"unknown actions nope, nix in execution e1"):
        reset_for(play.state, ["three", "nope", "nix"])


def test_a_failure_that_would_stay_is_refused() -> None:
    play = Play(Plan(id="p", actions=[http("a"), http("b"), http("c", "a", "b")]))
    play.complete("a")
    play.fail("b")

    with pytest.raises(RetryRefusedError, match="b of execution e1 would stay failed"):
        reset_for(play.state, ["a"])


def test_an_execution_whose_plan_was_invalid_is_refused() -> None:
    error = ErrorInfo(message="invalid plan: a: ...", code=ErrorCode.INVALID_PLAN)
    state = apply_event(
        apply_event(None, PlanSubmitted(execution_id="e1", plan=Plan(id="p", actions=[http("a")]))),
        ExecutionFailed(execution_id="e1", error=error),
    )
    assert state is not None and state.status == "failed"

    with pytest.raises(RetryRefusedError, match="plan is invalid"):
        reset_for(state)


def test_a_second_retry_is_refused_while_the_first_runs() -> None:
    play = failed_at_third()
    play.retry(["three"])

    with pytest.raises(RetryRefusedError, match="is running"):
        reset_for(play.state, ["three"])
