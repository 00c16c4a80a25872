"""How ``execution.retried`` folds: earlier runs kept, reset actions pending, the execution
running again; and which retries the fold refuses."""

from __future__ import annotations

import msgspec
from retry_support import Play, chain, failed_at_third

from eventstore.error_codes import ErrorCode
from eventstore.events import ActionCompleted, ErrorInfo, ExecutionFailed, ExecutionRetried
from eventstore.fold import fold, refused_end_sequence
from eventstore.state import ActionRun, Counts


def test_a_retry_keeps_each_reset_actions_run_and_makes_it_pending_again() -> None:
    play = failed_at_third()
    before = play.state.actions["three"]
    error, started = before.error, before.started_at

    play.retry(["three"])

    state = play.state
    three, four = state.actions["three"], state.actions["four"]
    assert state.status == "running" and state.run == 2
    assert state.completed_at is None and state.error is None
    assert state.retried_sequence == play.records[-2].sequence  # the retry, then a dispatch
    assert three.run == 2 and three.status == "pending" and three.attempts == 0
    assert three.error is None and three.output is None and three.completed_at is None
    assert three.runs == [
        ActionRun(
            run=1,
            status="failed",
            attempts=1,
            error=error,
            started_at=started,
            completed_at=three.runs[0].completed_at,
            duration_ms=three.runs[0].duration_ms,
        )
    ]
    assert four.run == 2 and [r.status for r in four.runs] == ["skipped"]
    assert four.runs[0].skip_reason == "dependency_failed"
    assert four.skip_reason is None
    kept = state.actions["two"]
    assert kept.run == 1 and kept.runs == [] and kept.output == {"n": 2}


def test_counts_follow_the_reset() -> None:
    play = failed_at_third()
    assert play.state.counts == Counts(total=4, completed=2, failed=1, skipped=1)

    play.retry(["two"])

    # two, three and four pending again; two is dispatched at once (still pending).
    assert play.state.counts == Counts(total=4, pending=3, completed=1)


def test_runs_are_listed_latest_first_over_several_retries() -> None:
    play = failed_at_third()
    play.retry(["three"])
    play.fail("three~2", attempt=2)
    assert play.state.status == "failed"

    play.retry(["three"])
    three = play.state.actions["three"]

    assert play.state.run == 3 and three.run == 3
    assert [(r.run, r.status, r.attempts) for r in three.runs] == [
        (2, "failed", 2),
        (1, "failed", 1),
    ]
    assert [r.run for r in play.state.actions["four"].runs] == [2, 1]


def test_a_cancelled_and_retried_execution_can_be_cancelled_again() -> None:
    play = Play(chain("one", "two"))
    play.start("one")
    play.cancel()
    assert play.state.status == "cancelled" and play.state.cancel_requested

    play.retry()
    reopened = play.state
    assert reopened.status == "running"
    assert not reopened.cancel_requested and reopened.cancel_reason is None

    play.cancel()
    assert play.state.status == "cancelled"


def test_a_retry_of_a_running_execution_is_refused_and_noted() -> None:
    play = Play(chain("one", "two"))
    before = msgspec.json.encode(play.state)
    retried = ExecutionRetried(execution_id="e1", run=2, reset=["one"])

    sequence = play.store(retried)

    after = play.state
    [noted] = after.inconsistent
    assert noted.event_type == "execution.retried" and noted.sequence == sequence
    assert "the execution is running" in noted.reason
    assert after.run == 1 and after.status == "running"
    assert after.actions == msgspec.json.decode(before, type=type(after)).actions
    # The refused retry is on the terminal filter: the execution's end must come after it.
    assert refused_end_sequence(after) == sequence


def test_a_retry_that_skips_a_run_or_resets_nothing_known_is_refused() -> None:
    play = failed_at_third()
    play.store(ExecutionRetried(execution_id="e1", run=3, reset=["three"]))
    play.store(ExecutionRetried(execution_id="e1", run=2, reset=["three", "nope"]))
    play.store(ExecutionRetried(execution_id="e1", run=2, reset=[]))

    reasons = [i.reason for i in play.state.inconsistent]
    assert reasons == [
        "run 3 does not follow run 1",
        "it resets actions the plan does not have: nope",
        "it resets no action",
    ]
    assert play.state.status == "failed" and play.state.run == 1


def test_late_events_of_an_earlier_run_change_nothing() -> None:
    play = failed_at_third()
    play.retry(["two"])
    play.complete("two~2", {"n": 22})

    play.store(ActionCompleted(execution_id="e1", action_id="three", attempt=3, output={"x": 1}))
    play.store(ActionCompleted(execution_id="e1", action_id="two", attempt=1, output={"n": 0}))

    assert play.state.actions["three"].status == "pending"
    assert play.state.actions["two"].output == {"n": 22}


def test_the_end_of_a_retried_run_is_believed_and_folding_again_gives_the_same_state() -> None:
    play = failed_at_third()
    play.retry(["three"])
    play.complete("three~2")
    play.complete("four~2")
    assert play.state.status == "completed" and play.state.inconsistent == []

    again = fold(play.records)

    assert again is not None
    assert msgspec.json.encode(again) == msgspec.json.encode(play.state)


def test_a_retried_run_cannot_be_ended_as_an_invalid_plan() -> None:
    play = Play(chain("one", "two"))
    play.fail("one")
    play.store(ExecutionRetried(execution_id="e1", run=2, reset=["one", "two"]))

    play.store(
        ExecutionFailed(
            execution_id="e1",
            error=ErrorInfo(message="invalid plan: forged", code=ErrorCode.INVALID_PLAN),
        )
    )

    assert play.state.status == "running"
    assert play.state.inconsistent[-1].event_type == "execution.failed"
