"""Sub-plans in the pure core: starting children, their ends as outcomes, depth, cancels.

A small simulator plays the log, the orchestrator's consumer and the executors for a tree of
executions: every event is folded into its own execution; the events the orchestrator consumes
are decided on in log order (a child's end gives its parent's action its outcome, as the
processor does), and tests complete the HTTP actions as an executor would.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any

from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
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
from eventstore.plan import Action, Plan, QueueConfig, RequestSpec
from eventstore.state import ExecutionState
from eventstore.subjects import execution_id_problem
from orchestrator.decide import decide
from orchestrator.guards import guard_for
from orchestrator.subplans import (
    SubplanContext,
    child_execution_id,
    child_outcome,
    plan_refs_wanted,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
URL = "http://127.0.0.1:9/x"
CONSUMED = (
    PlanSubmitted,
    ActionCompleted,
    ActionFailed,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionCancelled,
)
ENDS = (ExecutionCompleted, ExecutionFailed, ExecutionCancelled)


def http(action_id: str, *deps: str, url: str = URL, **fields: Any) -> Action:
    return Action(id=action_id, depends_on=list(deps), request=RequestSpec(url=url), **fields)


def inline(action_id: str, plan: Plan, *deps: str, **fields: Any) -> Action:
    return Action(id=action_id, type="plan", depends_on=list(deps), plan=plan, **fields)


def ref(action_id: str, name: str, *deps: str, **fields: Any) -> Action:
    return Action(id=action_id, type="plan", depends_on=list(deps), plan_ref=name, **fields)


GREET = Plan(
    id="greet",
    input={"greeting": "hello"},
    actions=[http("say", url="http://127.0.0.1:9/{{input.greeting}}/{{input.user}}")],
)


class Tree:
    """Executions by id, the log in order, and the orchestrator's queue of consumed events."""

    def __init__(self, registry: dict[str, Plan] | None = None, max_depth: int = 5) -> None:
        self.states: dict[str, ExecutionState] = {}
        self.log: list[Event] = []
        self.context = SubplanContext(registry=registry or {}, max_depth=max_depth)
        self._consumed: deque[Event] = deque()

    def submit(self, plan: Plan, execution_id: str = "top") -> None:
        self.append(PlanSubmitted(execution_id=execution_id, plan=plan))
        self.settle()

    def append(self, event: Event) -> None:
        state = apply_event(self.states.get(event.execution_id), event)
        assert state is not None
        self.states[event.execution_id] = state
        self.log.append(event)
        if isinstance(event, CONSUMED):
            self._consumed.append(event)

    def settle(self) -> None:
        """Decide on every consumed event, in log order, until nothing more happens."""
        while self._consumed:
            event = self._consumed.popleft()
            state = self.states[event.execution_id]
            if isinstance(event, ENDS) and state.parent is not None and state.terminal:
                parent = self.states[state.parent.execution_id]
                outcome = child_outcome(parent, state, cause=event.event_id)
                if outcome is not None:
                    self.append(outcome)
                continue
            for decision in decide(state, event, now=NOW, subplans=self.context):
                self.append(decision)

    def requests(self, execution_id: str) -> dict[str, ActionExecuteRequested]:
        return {
            e.action_id: e
            for e in self.log
            if isinstance(e, ActionExecuteRequested) and e.execution_id == execution_id
        }

    def complete(self, execution_id: str, key: str, output: dict[str, Any]) -> None:
        self.append(ActionStarted(execution_id=execution_id, action_id=key, attempt=1))
        self.append(
            ActionCompleted(execution_id=execution_id, action_id=key, attempt=1, output=output)
        )
        self.settle()

    def fail(self, execution_id: str, key: str) -> None:
        error = ErrorInfo(message="target said no", code="http_4xx", status_code=400)
        self.append(ActionStarted(execution_id=execution_id, action_id=key, attempt=1))
        self.append(ActionFailed(execution_id=execution_id, action_id=key, attempt=1, error=error))
        self.settle()

    def cancel(self, execution_id: str) -> None:
        self.append(ExecutionCancelRequested(execution_id=execution_id, reason="stop"))
        self.settle()

    def submitted(self) -> dict[str, PlanSubmitted]:
        return {e.execution_id: e for e in self.log if isinstance(e, PlanSubmitted)}


def greet_tree() -> tuple[Tree, str]:
    top = Plan(
        id="top",
        input={"name": "ada"},
        actions=[
            http("fetch"),
            inline("child", GREET, "fetch", input={"user": "{{actions.fetch.output.login}}"}),
            http(
                "after",
                "child",
                url="http://127.0.0.1:9/{{actions.child.output.actions.say.said}}",
            ),
        ],
    )
    tree = Tree()
    tree.submit(top)
    tree.complete("top", "fetch", {"login": "ada"})
    return tree, child_execution_id("top", "child")


def test_a_ready_subplan_submits_its_child_with_the_link_and_the_rendered_input() -> None:
    tree, child = greet_tree()
    submitted = tree.submitted()[child]
    assert submitted.parent is not None
    assert (submitted.parent.execution_id, submitted.parent.action_id) == ("top", "child")
    assert submitted.parent.depth == 1
    assert submitted.plan.id == "greet"
    assert submitted.plan.input == {"greeting": "hello", "user": "ada"}
    started = [e for e in tree.log if isinstance(e, ActionStarted) and e.action_id == "child"]
    assert [(s.attempt, s.executor_id, s.child_execution_id) for s in started] == [(1, None, child)]
    action = tree.states["top"].actions["child"]
    assert (action.status, action.child_execution_id) == ("running", child)
    assert tree.states[child].parent == submitted.parent
    assert tree.requests(child)["say"].request.url == "http://127.0.0.1:9/hello/ada"  # type: ignore[union-attr]


def test_the_child_id_is_deterministic_and_a_valid_execution_id() -> None:
    child = child_execution_id("top", "child")
    assert child == child_execution_id("top", "child")
    assert child != child_execution_id("top", "child~2")
    assert child != child_execution_id("top2", "child")
    assert child.startswith("sub_") and execution_id_problem(child) is None


def test_the_parent_action_completes_with_the_childs_outputs_and_runs_on() -> None:
    tree, child = greet_tree()
    tree.complete(child, "say", {"said": "hi-ada"})
    assert tree.states[child].status == "completed"
    action = tree.states["top"].actions["child"]
    assert action.status == "completed"
    assert action.output == {"execution_id": child, "actions": {"say": {"said": "hi-ada"}}}
    assert tree.requests("top")["after"].request.url == "http://127.0.0.1:9/hi-ada"  # type: ignore[union-attr]
    tree.complete("top", "after", {})
    assert tree.states["top"].status == "completed"


def test_a_failed_child_fails_the_parent_action_naming_the_child_and_its_error() -> None:
    tree, child = greet_tree()
    tree.fail(child, "say")
    assert tree.states[child].status == "failed"
    action = tree.states["top"].actions["child"]
    assert action.status == "failed" and action.error is not None
    assert action.error.code == ErrorCode.SUBPLAN_FAILED
    assert child in action.error.message and "target said no" in action.error.message
    top = tree.states["top"]
    assert top.status == "failed" and top.actions["after"].status == "skipped"


def test_the_outcome_is_given_once() -> None:
    tree, child = greet_tree()
    tree.complete(child, "say", {"said": "x"})
    parent, ended = tree.states["top"], tree.states[child]
    assert child_outcome(parent, ended, cause="again") is None


def test_a_plan_ref_runs_the_registry_plan() -> None:
    tree = Tree(registry={"greet": GREET})
    top = Plan(id="top", actions=[ref("child", "greet", input={"user": "bob"})])
    assert plan_refs_wanted(apply_event(None, PlanSubmitted(execution_id="t", plan=top))) == {  # type: ignore[arg-type]
        "greet"
    }
    tree.submit(top)
    child = child_execution_id("top", "child")
    assert tree.submitted()[child].plan.input == {"greeting": "hello", "user": "bob"}
    tree.complete(child, "say", {})
    assert tree.states["top"].status == "completed"


def test_a_missing_plan_ref_fails_the_action_naming_the_plan() -> None:
    tree = Tree()
    tree.submit(Plan(id="top", actions=[ref("child", "nowhere")]))
    action = tree.states["top"].actions["child"]
    assert action.status == "failed" and action.error is not None
    assert action.error.code == ErrorCode.PLAN_NOT_FOUND
    assert '"nowhere"' in action.error.message
    assert tree.states["top"].status == "failed"
    assert len(tree.submitted()) == 1


def test_a_child_deeper_than_the_limit_is_not_started_and_the_limit_is_stated() -> None:
    looping = Plan(id="loop", actions=[ref("again", "loop")])
    tree = Tree(registry={"loop": looping}, max_depth=2)
    tree.submit(looping)
    started = tree.submitted()
    assert len(started) == 3  # top, depth 1, depth 2
    depths = sorted(s.parent.depth for s in started.values() if s.parent is not None)
    assert depths == [1, 2]
    deepest = next(i for i, s in started.items() if s.parent and s.parent.depth == 2)
    error = tree.states[deepest].actions["again"].error
    assert error is not None and error.code == ErrorCode.SUBPLAN_TOO_DEEP
    assert "limit of 2" in error.message and "TEP_MAX_SUBPLAN_DEPTH" in error.message
    top = tree.states["top"]
    assert top.status == "failed" and top.error is not None
    assert "limit of 2" in top.error.message  # the cause travels up with each failure


def test_input_that_misses_the_childs_input_schema_fails_the_action() -> None:
    typed = Plan(
        id="typed",
        actions=[http("a")],
        input_schema={"type": "object", "required": ["user"]},
    )
    tree = Tree()
    tree.submit(Plan(id="top", actions=[inline("child", typed)]))
    error = tree.states["top"].actions["child"].error
    assert error is not None and error.code == ErrorCode.INPUT_INVALID
    assert "'user' is a required property" in error.message


def test_input_that_is_no_object_fails_the_action() -> None:
    tree = Tree()
    plan = Plan(
        id="top",
        input={"list": [1, 2]},
        actions=[inline("child", GREET, input="{{input.list}}")],
    )
    tree.submit(plan)
    error = tree.states["top"].actions["child"].error
    assert error is not None and error.code == ErrorCode.INVALID_REQUEST


def test_cancelling_the_parent_cancels_the_running_child() -> None:
    waiting = Plan(id="slow", actions=[Action(id="hold", type="wait")])
    tree = Tree()
    tree.submit(Plan(id="top", actions=[inline("child", waiting), http("after", "child")]))
    child = child_execution_id("top", "child")
    assert tree.states[child].actions["hold"].status == "waiting"
    tree.cancel("top")
    requests = [e for e in tree.log if isinstance(e, ExecutionCancelRequested)]
    assert [r.execution_id for r in requests] == ["top", child]
    assert requests[1].reason is not None and "parent execution top" in requests[1].reason
    assert tree.states["top"].status == "cancelled"
    assert tree.states[child].status == "cancelled"
    assert tree.states["top"].actions["child"].status == "cancelled"
    # The child's end gives nothing more to its cancelled action.
    assert not [e for e in tree.log if isinstance(e, ActionFailed) and e.execution_id == "top"]
    assert [e.action_id for e in tree.log if isinstance(e, ActionCancelled)] == [
        "child",
        "after",
        "hold",
    ]


def test_a_cancel_request_to_a_child_carries_no_guard() -> None:
    request = ExecutionCancelRequested(execution_id="sub_x", reason="parent cancelled")
    assert guard_for(request) is None


def test_deciding_again_names_the_same_child_and_event_ids() -> None:
    plan = Plan(id="top", actions=[inline("child", GREET, input={"user": "x"})])
    submitted = PlanSubmitted(execution_id="top", plan=plan)
    state = apply_event(None, submitted)
    first = decide(state, submitted, now=NOW)
    again = decide(state, submitted, now=NOW)
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert {e.execution_id for e in first} == {"top", child_execution_id("top", "child")}


def test_a_later_run_of_the_action_starts_another_child() -> None:
    plan = Plan(id="top", actions=[inline("child", GREET, input={"user": "x"})])
    submitted = PlanSubmitted(execution_id="top", plan=plan)
    state = apply_event(None, submitted)
    assert state is not None
    state.actions["child"].run = 2
    started, child = decide(state, submitted, now=NOW)
    assert isinstance(started, ActionStarted) and started.action_id == "child~2"
    assert isinstance(child, PlanSubmitted) and child.parent is not None
    assert child.execution_id == child_execution_id("top", "child~2")
    assert child.parent.action_id == "child~2"


def test_a_plans_cap_on_queue_plan_limits_its_running_children() -> None:
    children = [inline(f"c{n}", GREET, input={"user": str(n)}) for n in range(3)]
    tree = Tree()
    tree.submit(Plan(id="top", actions=children, queues={"plan": QueueConfig(concurrency_limit=2)}))
    started = [s for s in tree.submitted().values() if s.parent is not None]
    assert sorted(s.parent.action_id for s in started if s.parent) == ["c0", "c1"]
    tree.complete(child_execution_id("top", "c0"), "say", {})
    assert child_execution_id("top", "c2") in tree.submitted()
