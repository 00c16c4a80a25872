"""``decide``: what the orchestrator appends after each event, without a server."""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.fold import apply_event
from eventstore.plan import Action, Condition, Plan, RequestSpec, RetryPolicy
from eventstore.state import ExecutionState
from orchestrator.decide import decide

URL = "http://127.0.0.1:9/x"


def http(action_id: str, *deps: str, **fields: Any) -> Action:
    fields.setdefault("request", RequestSpec(url=URL))
    return Action(id=action_id, depends_on=list(deps), **fields)


class Run:
    """Plays log and executor around ``decide``: folds each event and each decision."""

    def __init__(self, plan: Plan, execution_id: str = "e1") -> None:
        self.execution_id = execution_id
        self.state: ExecutionState | None = None
        self.history: list[Event] = []
        self.first = self.feed(PlanSubmitted(execution_id=execution_id, plan=plan))

    def feed(self, event: Event) -> list[Event]:
        self.state = apply_event(self.state, event)
        self.history.append(event)
        decisions = decide(self.state, event)
        for decision in decisions:
            self.state = apply_event(self.state, decision)
            self.history.append(decision)
        return decisions

    def start(self, action_id: str) -> list[Event]:
        return self.feed(
            ActionStarted(execution_id=self.execution_id, action_id=action_id, attempt=1)
        )

    def complete(self, action_id: str, output: dict[str, Any] | None = None) -> list[Event]:
        return self.feed(
            ActionCompleted(
                execution_id=self.execution_id,
                action_id=action_id,
                attempt=1,
                output=output or {},
            )
        )

    def fail(self, action_id: str) -> list[Event]:
        return self.feed(
            ActionFailed(
                execution_id=self.execution_id,
                action_id=action_id,
                attempt=1,
                error=ErrorInfo(message="boom", code="http_5xx", status_code=500),
            )
        )

    @property
    def status(self) -> str:
        assert self.state is not None
        return self.state.status


def requested(events: list[Event]) -> list[str]:
    return [e.action_id for e in events if isinstance(e, ActionExecuteRequested)]


def skipped(events: list[Event]) -> dict[str, str]:
    return {e.action_id: e.reason for e in events if isinstance(e, ActionSkipped)}


def test_linear_chain_renders_templates_from_input_and_upstream_outputs() -> None:
    plan = Plan(
        id="chain",
        input={"user_id": 42, "note": "hi"},
        actions=[
            http("a", request=RequestSpec(url="http://h/users/{{input.user_id}}")),
            http(
                "b",
                "a",
                request=RequestSpec(
                    method="POST",
                    url="http://h/mail/{{actions.a.output.id}}",
                    headers={
                        "Authorization": "Bearer {{secrets.API_TOKEN}}",
                        "X-Tier": "{{actions.a.output.tier}}",
                    },
                    query={"n": "{{input.user_id}}"},
                    json={"to": "{{actions.a.output.email}}", "count": "{{input.user_id}}"},
                    timeout_s=7,
                ),
                retry=RetryPolicy(max_attempts=3),
            ),
            http("c", "b", input={"note": "{{input.note}}", "prev": "{{actions.b.status}}"}),
        ],
    )
    run = Run(plan)
    assert requested(run.first) == ["a"]
    first = run.first[0]
    assert isinstance(first, ActionExecuteRequested)
    assert first.request is not None and first.request.url == "http://h/users/42"

    decisions = run.complete("a", {"id": 7, "tier": "gold", "email": "x@y"})

    assert requested(decisions) == ["b"]
    b = decisions[0]
    assert isinstance(b, ActionExecuteRequested) and b.request is not None
    assert b.request.url == "http://h/mail/7"
    assert b.request.headers == {"Authorization": "Bearer {{secrets.API_TOKEN}}", "X-Tier": "gold"}
    assert b.request.query == {"n": "42"}
    assert b.request.json == {"to": "x@y", "count": 42}
    assert b.timeout_s == 7 and b.retry.max_attempts == 3 and b.queue == "http"

    decisions = run.complete("b")
    c = decisions[0]
    assert isinstance(c, ActionExecuteRequested)
    assert c.input == {"note": "hi", "prev": "completed"}
    assert c.retry == RetryPolicy()

    assert isinstance(run.complete("c")[-1], ExecutionCompleted)
    assert run.status == "completed"


def test_fan_out_of_50_dispatches_at_once_and_fans_in_after_the_last() -> None:
    branches = [http(f"b{i}", "root") for i in range(50)]
    plan = Plan(
        id="fan", actions=[http("root"), *branches, http("join", *(b.id for b in branches))]
    )
    run = Run(plan)

    assert requested(run.complete("root")) == [f"b{i}" for i in range(50)]
    for i in range(49):
        assert run.complete(f"b{i}") == []
    assert requested(run.complete("b49")) == ["join"]
    decisions = run.complete("join")
    assert len(decisions) == 1 and isinstance(decisions[0], ExecutionCompleted)


def _branch_plan() -> Plan:
    return Plan(
        id="branch",
        actions=[
            http("check"),
            http(
                "premium", "check", when=Condition(path="actions.check.output.tier", equals="gold")
            ),
            http("after-premium", "premium"),
            http(
                "basic",
                "check",
                when=Condition(path="actions.check.output.tier", not_equals="gold"),
            ),
        ],
    )


def test_condition_true_dispatches_and_false_branch_is_skipped() -> None:
    run = Run(_branch_plan())
    decisions = run.complete("check", {"tier": "gold"})

    assert requested(decisions) == ["premium"]
    assert skipped(decisions) == {"basic": "condition_false"}
    run.complete("premium")
    assert isinstance(run.complete("after-premium")[-1], ExecutionCompleted)


def test_condition_false_skips_transitively_and_the_execution_completes() -> None:
    run = Run(_branch_plan())
    decisions = run.complete("check", {"tier": "bronze"})

    assert requested(decisions) == ["basic"]
    assert skipped(decisions) == {
        "premium": "condition_false",
        "after-premium": "dependency_skipped",
    }
    assert isinstance(run.complete("basic")[-1], ExecutionCompleted)
    assert run.state is not None and run.state.counts.skipped == 2


def test_failure_skips_dependents_and_fails_once_running_actions_finish() -> None:
    plan = Plan(
        id="fail",
        actions=[
            http("root"),
            http("a", "root"),
            http("b", "root"),
            http("after-a", "a"),
            http("after-after-a", "after-a"),
            http("after-b", "b"),
        ],
    )
    run = Run(plan)
    run.complete("root")
    run.start("b")

    decisions = run.fail("a")

    assert skipped(decisions) == {
        "after-a": "dependency_failed",
        "after-after-a": "dependency_skipped",
    }
    assert run.status == "running"  # b is still running
    decisions = run.complete("b")
    assert requested(decisions) == []  # nothing new starts once the execution is failing
    cancelled = [e for e in decisions if isinstance(e, ActionCancelled)]
    assert [(e.action_id, e.reason) for e in cancelled] == [("after-b", "execution failed")]
    end = decisions[-1]
    assert isinstance(end, ExecutionFailed)
    assert end.failed_actions == ["a"] and end.error.code == "action_failed"
    assert "a" in end.error.message and "boom" in end.error.message
    assert run.status == "failed"
    assert run.state is not None and run.state.counts.pending == 0


def test_failure_with_no_running_action_fails_at_once() -> None:
    run = Run(Plan(id="p", actions=[http("a"), http("b", "a")]))
    decisions = run.fail("a")

    assert skipped(decisions) == {"b": "dependency_failed"}
    assert isinstance(decisions[-1], ExecutionFailed)


def test_allowed_failure_with_fallback_completes() -> None:
    plan = Plan(
        id="fallback",
        actions=[
            http("primary", continue_on_error=True),
            http(
                "fallback",
                "primary",
                run_if="always",
                when=Condition(path="actions.primary.status", equals="failed"),
            ),
            http("use-primary", "primary"),
        ],
    )
    run = Run(plan)
    decisions = run.fail("primary")

    assert requested(decisions) == ["fallback"]
    assert skipped(decisions) == {"use-primary": "dependency_failed"}
    assert isinstance(run.complete("fallback")[-1], ExecutionCompleted)
    assert run.status == "completed"


def test_fallback_is_skipped_when_the_primary_succeeds() -> None:
    plan = Plan(
        id="fallback",
        actions=[
            http("primary", continue_on_error=True),
            http(
                "fallback",
                "primary",
                run_if="always",
                when=Condition(path="actions.primary.status", equals="failed"),
            ),
        ],
    )
    run = Run(plan)
    decisions = run.complete("primary")

    assert skipped(decisions) == {"fallback": "condition_false"}
    assert isinstance(decisions[-1], ExecutionCompleted)


def test_failure_handler_runs_although_the_execution_is_failing() -> None:
    plan = Plan(
        id="p",
        actions=[
            http("a"),
            http("notify", "a", run_if="always"),
            http("z"),
        ],
    )
    run = Run(plan)
    run.fail("z")  # nothing handles z: the execution is failing
    decisions = run.fail("a")

    assert requested(decisions) == ["notify"]
    assert run.status == "running"
    end = run.complete("notify")[-1]
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["z"]


def test_cancel_request_cancels_unfinished_actions_and_the_execution() -> None:
    run = Run(Plan(id="p", actions=[http("a"), http("b"), http("c", "a")]))
    run.start("a")
    run.complete("b")

    decisions = run.feed(ExecutionCancelRequested(execution_id="e1", reason="user asked"))

    assert [(e.action_id, e.reason) for e in decisions if isinstance(e, ActionCancelled)] == [
        ("a", "user asked"),
        ("c", "user asked"),
    ]
    assert isinstance(decisions[-1], ExecutionCancelled)
    assert decisions[-1].reason == "user asked"
    assert run.status == "cancelled"
    # A late result is ignored by the fold and decides nothing.
    assert run.complete("a", {"late": True}) == []
    assert run.state is not None and run.state.actions["a"].status == "cancelled"


def test_unresolvable_template_fails_the_action_and_the_execution() -> None:
    plan = Plan(
        id="p",
        actions=[
            http("a"),
            http("b", "a", request=RequestSpec(url="http://h/{{actions.a.output.missing}}")),
        ],
    )
    run = Run(plan)
    decisions = run.complete("a", {"present": 1})

    failure = decisions[0]
    assert isinstance(failure, ActionFailed)
    assert failure.action_id == "b" and failure.error.code == "invalid_request"
    assert "actions.a.output.missing" in failure.error.message
    assert isinstance(decisions[-1], ExecutionFailed)


def test_terminal_execution_decides_nothing() -> None:
    run = Run(Plan(id="p", actions=[http("a")]))
    run.complete("a")
    assert run.status == "completed"

    assert run.feed(ExecutionCancelRequested(execution_id="e1")) == []
    assert run.complete("a") == []


def test_deciding_again_on_the_same_event_decides_nothing_new() -> None:
    run = Run(Plan(id="p", actions=[http("a"), http("b", "a"), http("c", "a")]))
    trigger = ActionCompleted(execution_id="e1", action_id="a", attempt=1, output={})
    assert requested(run.feed(trigger)) == ["b", "c"]

    assert decide(run.state, trigger) == []


def test_decision_ids_are_deterministic_and_linked_to_their_cause() -> None:
    plan = Plan(
        id="p", actions=[http("a"), http("b", "a", when=Condition(path="input.x", exists=True))]
    )
    submitted = PlanSubmitted(execution_id="e1", plan=plan)
    state_1 = apply_event(None, submitted)
    state_2 = apply_event(
        None, msgspec.json.decode(msgspec.json.encode(submitted), type=PlanSubmitted)
    )

    first, second = decide(state_1, submitted), decide(state_2, submitted)

    assert [e.event_id for e in first] == [e.event_id for e in second] == ["e1.a.requested"]
    assert first[0].causation_id == submitted.event_id
    assert first[0].correlation_id == "e1"
    run = Run(plan)
    decisions = run.complete("a")
    assert [e.event_id for e in decisions] == ["e1.b.skipped", "e1.terminal"]


def test_plan_without_actions_completes_at_once() -> None:
    run = Run(Plan(id="empty", actions=[]))
    assert len(run.first) == 1 and isinstance(run.first[0], ExecutionCompleted)


def test_queue_and_action_timeout_are_carried_on_the_request() -> None:
    plan = Plan(
        id="p",
        actions=[
            Action(id="resize", type="resize-image", input={"w": 10}, timeout_s=3),
            http("call", queue="slow", request=RequestSpec(url=URL, timeout_s=9)),
        ],
    )
    run = Run(plan)
    resize, call = run.first
    assert isinstance(resize, ActionExecuteRequested) and isinstance(call, ActionExecuteRequested)
    assert (resize.queue, resize.action_type, resize.input, resize.timeout_s) == (
        "resize-image",
        "resize-image",
        {"w": 10},
        3,
    )
    assert (call.queue, call.timeout_s) == ("slow", 9)


def test_condition_that_cannot_be_evaluated_fails_the_action() -> None:
    plan = Plan(id="p", actions=[http("a", when=Condition(path="input..x", equals=1)), http("b")])
    run = Run(plan)

    failure = run.first[0]
    assert isinstance(failure, ActionFailed) and failure.error.code == "invalid_condition"
    assert requested(run.first) == []  # b is independent but the execution is already failing
    assert isinstance(run.first[-1], ExecutionFailed)


def test_a_failed_branch_skips_the_join_at_once_while_other_branches_run() -> None:
    run = Run(Plan(id="fan", actions=[http("b1"), http("b2"), http("join", "b1", "b2")]))
    run.start("b1")
    run.start("b2")

    decisions = run.fail("b1")

    assert skipped(decisions) == {"join": "dependency_failed"}
    assert run.status == "running"  # b2 is still running
    assert not any(isinstance(e, ExecutionFailed) for e in decisions)
    run.complete("b2")
    assert run.status == "failed"
