"""``decide`` after ``execution.retried``: only the reset actions run again, under the keys of
their new run, and the run ends with an end of its own."""

from __future__ import annotations

from retry_support import Play, chain, failed_at_third, http, requested

from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionResumeRequested,
    ActionSkipped,
    ActionWaiting,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRetried,
)
from eventstore.plan import Action, Condition, Plan, RequestSpec
from eventstore.records import Guard
from eventstore.subjects import action_filter, terminal_filter


def test_only_the_ready_reset_actions_are_dispatched_with_keys_of_the_new_run() -> None:
    plan = Plan(
        id="p",
        actions=[
            http("one"),
            http("two", "one", request=RequestSpec(url="http://h/{{actions.one.output.n}}")),
            http("three", "two"),
        ],
    )
    play = Play(plan)
    play.complete("one", {"n": 7})
    play.fail("two")
    assert play.state.status == "failed"

    decisions = play.retry(["two"])

    [request] = decisions
    assert isinstance(request, ActionExecuteRequested)
    assert request.action_id == "two~2" and request.event_id == "e1.two~2.requested"
    assert request.request is not None and request.request.url == "http://h/7"  # kept output
    assert requested(play.complete("two~2")) == ["three~2"]


def test_the_end_after_a_retry_has_its_own_id_and_is_guarded_on_the_retry() -> None:
    play = failed_at_third()
    play.retry(["three"])
    retried_at = play.state.retried_sequence
    play.complete("three~2")

    [end] = play.complete("four~2")

    assert isinstance(end, ExecutionCompleted) and end.event_id == "e1.terminal.2"
    assert play.guards[-1] == (end, Guard(retried_at, terminal_filter("e1")))
    assert play.state.status == "completed"


def test_a_run_that_fails_again_cancels_and_fails_under_the_new_keys() -> None:
    play = Play(Plan(id="p", actions=[http("a"), http("b"), http("c", "a", "b")]))
    play.fail("a")
    play.complete("b")
    assert play.state.status == "failed"
    play.retry()  # a and c

    decisions = play.fail("a~2")

    skipped = [e for e in decisions if isinstance(e, ActionSkipped)]
    [end] = [e for e in decisions if isinstance(e, ExecutionFailed)]
    assert [(e.action_id, e.event_id) for e in skipped] == [("c~2", "e1.c~2.skipped")]
    assert end.event_id == "e1.terminal.2" and end.failed_actions == ["a"]
    assert play.state.status == "failed" and play.state.run == 2


def test_a_cancel_after_a_retry_cancels_the_new_run() -> None:
    play = failed_at_third()
    play.retry(["three"])
    play.start("three~2")

    decisions = play.cancel()

    cancelled = [(e.action_id, e.event_id) for e in decisions if isinstance(e, ActionCancelled)]
    assert cancelled == [("three~2", "e1.three~2.cancelled"), ("four~2", "e1.four~2.cancelled")]
    assert isinstance(decisions[-1], ExecutionCancelled)
    assert decisions[-1].event_id == "e1.terminal.2"
    assert play.state.status == "cancelled"


def test_a_late_event_of_an_earlier_run_decides_nothing() -> None:
    play = failed_at_third()
    play.retry(["two"])

    assert play.complete("two") == []  # run 1's key: a late delivery of run 1's completion
    assert play.fail("three") == []
    assert play.state.actions["two"].status == "pending"
    assert play.state.actions["three"].status == "pending"


def test_skips_and_conditions_after_a_retry_use_the_new_keys() -> None:
    plan = Plan(
        id="p",
        actions=[
            http("one"),
            http("maybe", "one", when=Condition(path="actions.one.output.go", equals=True)),
        ],
    )
    play = Play(plan)
    play.complete("one", {"go": True})
    play.complete("maybe")
    assert play.state.status == "completed"

    assert requested(play.retry(["one"])) == ["one~2"]
    decisions = play.complete("one~2", {"go": False})

    skip, end = decisions
    assert isinstance(skip, ActionSkipped) and skip.action_id == "maybe~2"
    assert skip.event_id == "e1.maybe~2.skipped" and skip.reason == "condition_false"
    assert isinstance(end, ExecutionCompleted) and end.event_id == "e1.terminal.2"
    assert play.state.actions["maybe"].runs[0].status == "completed"


def test_a_retried_waitpoint_waits_and_resumes_under_its_new_key() -> None:
    plan = Plan(
        id="p",
        actions=[Action(id="approve", type="wait"), http("after", "approve")],
    )
    play = Play(plan)
    play.feed(ActionResumeRequested(execution_id="e1", action_id="approve", reject="no"))
    assert play.state.status == "failed"

    [waiting] = play.retry()
    assert isinstance(waiting, ActionWaiting)
    assert waiting.action_id == "approve~2" and waiting.event_id == "e1.approve~2.waiting"
    assert waiting.token is not None and waiting.token.startswith("e1.approve~2.")
    waited_at = play.sequence

    decisions = play.feed(
        ActionResumeRequested(execution_id="e1", action_id="approve~2", data={"ok": True})
    )

    outcome, dispatch = decisions
    assert isinstance(outcome, ActionCompleted) and outcome.action_id == "approve~2"
    assert outcome.event_id == "e1.approve~2.resolved" and outcome.output == {"ok": True}
    assert play.guards[-2] == (outcome, Guard(waited_at, action_filter("e1", "approve~2")))
    assert requested([dispatch]) == ["after~2"]


def test_a_retry_the_fold_refused_decides_nothing() -> None:
    play = Play(chain("one", "two"))

    assert play.feed(ExecutionRetried(execution_id="e1", run=2, reset=["one"])) == []


def test_a_second_retry_runs_under_keys_of_the_third_run() -> None:
    play = failed_at_third()
    play.retry(["three"])
    play.fail("three~2")

    assert requested(play.retry(["two"])) == ["two~3"]
    assert requested(play.complete("two~3")) == ["three~3"]
    assert requested(play.complete("three~3")) == ["four~3"]
    [end] = play.complete("four~3")
    assert isinstance(end, ExecutionCompleted) and end.event_id == "e1.terminal.3"
