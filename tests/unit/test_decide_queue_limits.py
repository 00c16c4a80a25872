"""A plan's ``queues.<Q>.concurrency_limit``: a cap on its own in-flight actions of queue Q."""

from __future__ import annotations

from test_decide import Run, http, requested

from eventstore.events import (
    ActionCancelled,
    ActionSkipped,
    ExecutionCompleted,
    ExecutionFailed,
)
from eventstore.fold import fold
from eventstore.plan import Action, Condition, Plan, QueueConfig
from eventstore.records import RecordedEvent
from orchestrator.decide import decide


def capped(limit: int, *actions: Action, queue: str = "http") -> Plan:
    return Plan(
        id="capped",
        queues={queue: QueueConfig(concurrency_limit=limit)},
        actions=list(actions),
    )


def in_flight(run: Run, queue: str = "http") -> list[str]:
    assert run.state is not None
    return [
        a.action_id
        for a in run.state.actions.values()
        if a.dispatched_at is not None and not a.finished and a.queue == queue
    ]


def test_fan_out_of_10_with_limit_2_dispatches_one_more_per_completion() -> None:
    plan = capped(2, *(http(f"b{i}") for i in range(10)))
    run = Run(plan)

    assert requested(run.first) == ["b0", "b1"]
    for i in range(8):
        assert requested(run.complete(f"b{i}")) == [f"b{i + 2}"]
        assert len(in_flight(run)) == 2
    assert run.complete("b8") == []
    decisions = run.complete("b9")
    assert len(decisions) == 1 and isinstance(decisions[0], ExecutionCompleted)
    assert run.status == "completed"


def test_running_actions_hold_their_slot_until_their_outcome() -> None:
    run = Run(capped(1, http("a"), http("b")))

    assert requested(run.first) == ["a"]
    assert run.start("a") == []
    assert requested(run.complete("a")) == ["b"]


def test_the_cap_covers_one_queue_and_one_execution() -> None:
    plan = capped(
        1, *(http(f"q{i}") for i in range(3)), *(http(f"o{i}", queue="other") for i in range(3))
    )

    first, second = Run(plan, "e1"), Run(plan, "e2")

    assert requested(first.first) == ["q0", "o0", "o1", "o2"]
    assert requested(second.first) == ["q0", "o0", "o1", "o2"]
    assert requested(first.complete("o0")) == []
    assert requested(first.complete("q0")) == ["q1"]


def test_an_outcome_frees_the_slot_for_waiting_actions_in_plan_order() -> None:
    # "late" becomes ready when "a" completes, but "w1" and "w2" were waiting before it.
    plan = capped(1, http("a"), http("w1"), http("w2"), http("late", "a"))
    run = Run(plan)

    assert requested(run.first) == ["a"]
    assert requested(run.complete("a")) == ["w1"]
    assert requested(run.complete("w1")) == ["w2"]
    assert requested(run.complete("w2")) == ["late"]
    assert isinstance(run.complete("late")[-1], ExecutionCompleted)


def test_an_action_whose_condition_is_false_is_skipped_without_waiting_for_a_slot() -> None:
    never = Condition(path="input.flag", equals=True)
    plan = capped(1, http("a"), http("b", when=never), http("c", "b"), http("d"))
    run = Run(plan)

    assert requested(run.first) == ["a"]
    assert {e.action_id for e in run.first if isinstance(e, ActionSkipped)} == {"b", "c"}
    assert requested(run.complete("a")) == ["d"]


def test_a_failure_cancels_the_waiting_actions_and_the_handler_waits_its_turn() -> None:
    plan = capped(
        1,
        http("a"),
        http("b"),
        http("c"),
        http("handler", "a", run_if="always"),
        http("z", queue="side"),
    )
    run = Run(plan)

    assert requested(run.first) == ["a", "z"]
    # The handler will run for a: its failure does not block, the freed slot goes to b.
    assert requested(run.fail("a")) == ["b"]
    decisions = run.fail("z")  # nothing handles z: the execution is failing
    assert requested(decisions) == []
    assert requested(run.complete("b")) == ["handler"]  # c does not start, the handler does
    decisions = run.complete("handler")
    assert {e.action_id for e in decisions if isinstance(e, ActionCancelled)} == {"c"}
    end = decisions[-1]
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["z"]


def test_a_state_rebuilt_from_the_log_decides_the_same_and_never_over_the_cap() -> None:
    run = Run(capped(2, *(http(f"b{i}") for i in range(5))))
    run.complete("b0")
    outcome = run.history[-2]
    records = [RecordedEvent(n + 1, "s", e) for n, e in enumerate(run.history)]

    rebuilt = fold(records)

    # A redelivered outcome: its slot was refilled already, so nothing more starts.
    assert rebuilt is not None
    assert decide(rebuilt, outcome) == []
    assert sorted(a for a, s in rebuilt.actions.items() if s.dispatched_at and not s.finished) == [
        "b1",
        "b2",
    ]


def test_a_limit_on_a_queue_no_action_uses_changes_nothing() -> None:
    plan = capped(1, *(http(f"b{i}") for i in range(3)), queue="unused")

    assert requested(Run(plan).first) == ["b0", "b1", "b2"]
