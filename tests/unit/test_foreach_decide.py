"""``decide`` for for-each actions: items at most ``concurrency`` at once, outputs in order, the
action's one outcome with its last item's, failures, cancellation and queue caps."""

from __future__ import annotations

import random
from typing import Any

import pytest

from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionItemsStarted,
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
from eventstore.items import ITEMS_MARKER, MAX_ITEMS
from eventstore.payload_reading import PayloadNeeded, PayloadReader, reading_payloads
from eventstore.payloads import encode_payload
from eventstore.plan import Action, Plan, QueueConfig, RequestSpec
from eventstore.state import ExecutionState
from orchestrator.decide import decide

URL = "http://127.0.0.1:9/items/{{item}}"


def each(action_id: str = "each", *deps: str, **fields: Any) -> Action:
    fields.setdefault("request", RequestSpec(url=URL))
    return Action(id=action_id, depends_on=list(deps), **fields)


def after(action_id: str, *deps: str, url: str = "http://127.0.0.1:9/after") -> Action:
    return Action(id=action_id, depends_on=list(deps), request=RequestSpec(url=url))


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

    def complete(self, key: str, output: dict[str, Any] | None = None) -> list[Event]:
        self.feed(ActionStarted(execution_id=self.execution_id, action_id=key, attempt=1))
        return self.feed(
            ActionCompleted(
                execution_id=self.execution_id, action_id=key, attempt=1, output=output or {}
            )
        )

    def fail(self, key: str, message: str = "boom") -> list[Event]:
        error = ErrorInfo(message=message, code="http_5xx", status_code=500)
        return self.feed(
            ActionFailed(execution_id=self.execution_id, action_id=key, attempt=1, error=error)
        )

    @property
    def status(self) -> str:
        return self.s.status

    @property
    def s(self) -> ExecutionState:
        assert self.state is not None
        return self.state

    def in_flight(self) -> set[str]:
        """Item keys dispatched and not finished, from the history."""
        requested = {e.action_id for e in self.history if isinstance(e, ActionExecuteRequested)}
        ended = {
            e.action_id
            for e in self.history
            if isinstance(e, ActionCompleted | ActionFailed | ActionCancelled)
        }
        return {k for k in requested - ended if "@" in k}


def requested(events: list[Event]) -> list[str]:
    return [e.action_id for e in events if isinstance(e, ActionExecuteRequested)]


def of(events: list[Event], kind: type[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def test_a_ready_for_each_starts_its_first_concurrency_items_with_item_and_index() -> None:
    spec = each(
        for_each=[{"sku": "a"}, {"sku": "b"}, {"sku": "c"}],
        concurrency=2,
        request=RequestSpec(
            method="POST",
            url="http://h/items/{{item.sku}}?n={{index}}",
            headers={"X-Index": "{{index}}"},
            json={"item": "{{item}}", "index": "{{index}}", "text": "#{{index}}: {{item.sku}}"},
        ),
    )
    run = Run(Plan(id="p", actions=[spec]))
    started, *dispatched = run.first
    assert isinstance(started, ActionItemsStarted)
    assert (started.action_id, started.count, started.concurrency) == ("each", 3, 2)
    assert started.event_id == "e1.each.items"
    assert [getattr(d, "action_id", None) for d in dispatched] == ["each@0", "each@1"]
    first = dispatched[0]
    assert isinstance(first, ActionExecuteRequested) and first.request is not None
    assert first.event_id == "e1.each@0.requested"
    assert first.request.url == "http://h/items/a?n=0"
    assert first.request.headers == {"X-Index": "0"}
    assert first.request.json == {"item": {"sku": "a"}, "index": 0, "text": "#0: a"}
    action = run.s.actions["each"]
    assert action.status == "running" and run.s.status == "running"
    assert action.items is not None
    assert (action.items.count, action.items.dispatched, action.items.in_flight) == (3, 2, 2)


def test_concurrency_is_never_exceeded_and_outputs_come_back_in_index_order() -> None:
    rng = random.Random(7)
    plan = Plan(
        id="p",
        actions=[
            each(for_each=list(range(40)), concurrency=7),
            after("next", "each", url="http://h/{{actions.each.output.items[39].n}}"),
        ],
    )
    run = Run(plan)
    peak = len(run.in_flight())
    last: list[Event] = []
    while run.in_flight():
        key = rng.choice(sorted(run.in_flight()))
        last = run.complete(key, {"n": int(key.split("@")[1])})
        peak = max(peak, len(run.in_flight()))
    assert peak == 7
    requests = requested(run.history)
    assert requests[:-1] == [f"each@{i}" for i in range(40)]  # each item once, in order
    # The action's outcome, and its dependent, in the last item's decision.
    outcome = of(last, ActionCompleted)
    assert [e.action_id for e in outcome] == ["each"]
    assert outcome[0].output == {ITEMS_MARKER: {"count": 40}}
    assert outcome[0].event_id == "e1.each.items-done"
    dependent = of(last, ActionExecuteRequested)
    assert [d.action_id for d in dependent] == ["next"]
    assert dependent[0].request is not None and dependent[0].request.url == "http://h/39"
    action = run.s.actions["each"]
    assert action.status == "completed"
    assert action.output == {"items": [{"n": i} for i in range(40)]}
    assert action.items is not None and action.items.completed == 40
    assert all(item.output is None for item in action.items.items)  # held once: in the output
    run.complete("next")
    assert run.s.status == "completed"


def test_zero_items_complete_at_once_and_the_dependents_run_in_the_same_decision() -> None:
    plan = Plan(
        id="p",
        input={"users": []},
        actions=[
            each(for_each="{{input.users}}"),
            after("next", "each"),
        ],
    )
    run = Run(plan)
    assert [type(e).__name__ for e in run.first] == [
        "ActionItemsStarted",
        "ActionCompleted",
        "ActionExecuteRequested",
    ]
    assert run.s.actions["each"].output == {"items": []}
    run.complete("next")
    assert run.s.status == "completed"


def test_a_for_each_over_an_upstream_output() -> None:
    plan = Plan(
        id="p",
        actions=[
            after("list"),
            each(
                "each",
                "list",
                for_each="{{actions.list.output.users}}",
                request=RequestSpec(url="http://h/users/{{item.id}}/{{index}}"),
            ),
        ],
    )
    run = Run(plan)
    assert requested(run.first) == ["list"]
    decisions = run.complete("list", {"users": [{"id": 10}, {"id": 11}]})
    assert [r.request.url for r in of(decisions, ActionExecuteRequested)] == [
        "http://h/users/10/0",
        "http://h/users/11/1",
    ]
    run.complete("each@1", {"v": 1})
    run.complete("each@0", {"v": 0})
    assert run.s.actions["each"].output == {"items": [{"v": 0}, {"v": 1}]}
    assert run.s.status == "completed"


def test_continue_on_error_lists_the_failed_items_and_the_execution_completes() -> None:
    plan = Plan(
        id="p", actions=[each(for_each=["a", "b", "c", "d"], concurrency=4, continue_on_error=True)]
    )
    run = Run(plan)
    run.complete("each@0", {"v": "a"})
    assert run.fail("each@1", "no b") == []
    run.fail("each@3", "no d")
    last = run.complete("each@2", {"v": "c"})
    assert [type(e).__name__ for e in last] == ["ActionCompleted", "ExecutionCompleted"]
    assert isinstance(last[0], ActionCompleted)
    assert last[0].output == {ITEMS_MARKER: {"count": 4, "failed": 2}}
    action = run.s.actions["each"]
    assert action.status == "completed"
    assert action.output is not None
    assert action.output["items"] == [{"v": "a"}, None, {"v": "c"}, None]
    assert [f["index"] for f in action.output["failed"]] == [1, 3]
    assert action.output["failed"][0]["error"]["message"] == "no b"
    assert action.output["failed"][0]["error"]["code"] == "http_5xx"
    assert action.items is not None and action.items.items[1].status == "failed"


def test_the_first_failed_item_cancels_the_rest_and_fails_the_action_at_once() -> None:
    plan = Plan(
        id="p", actions=[each(for_each=list(range(20)), concurrency=5), after("next", "each")]
    )
    run = Run(plan)
    run.complete("each@0")
    assert run.in_flight() == {f"each@{i}" for i in (1, 2, 3, 4, 5)}
    decisions = run.fail("each@3", "item three broke")
    cancelled = [e.action_id for e in of(decisions, ActionCancelled)]
    assert cancelled == ["each@1", "each@2", "each@4", "each@5"]
    assert all(e.event_id == f"e1.{e.action_id}.cancelled" for e in of(decisions, ActionCancelled))
    failed = of(decisions, ActionFailed)
    assert [f.action_id for f in failed] == ["each"]
    assert failed[0].error.code == ErrorCode.ITEM_FAILED
    assert failed[0].error.message == "item 3 of 20 failed: http_5xx: item three broke"
    assert of(decisions, ActionSkipped)[0].action_id == "next"
    end = of(decisions, ExecutionFailed)
    assert end and end[0].failed_actions == ["each"]
    assert requested(decisions) == []  # nothing new after the failure
    items = run.s.actions["each"].items
    assert items is not None and (items.completed, items.failed, items.cancelled) == (1, 1, 4)
    assert run.s.status == "failed"


def test_a_late_outcome_of_a_cancelled_item_decides_nothing() -> None:
    run = Run(Plan(id="p", actions=[each(for_each=[1, 2, 3], concurrency=3)]))
    run.fail("each@0")
    assert run.s.status == "failed"
    assert run.complete("each@1") == []


def test_an_item_whose_request_cannot_be_built_fails_and_fails_the_action() -> None:
    spec = each(
        for_each=[{"sku": "a"}, {"nosku": True}, {"sku": "c"}],
        concurrency=3,
        request=RequestSpec(url="http://h/{{item.sku}}"),
    )
    run = Run(Plan(id="p", actions=[spec]))
    kinds = [(type(e).__name__, getattr(e, "action_id", "")) for e in run.first]
    assert kinds == [
        ("ActionItemsStarted", "each"),
        ("ActionExecuteRequested", "each@0"),
        ("ActionFailed", "each@1"),
        ("ActionCancelled", "each@0"),
        ("ActionFailed", "each"),
        ("ExecutionFailed", ""),
    ]
    failure = run.first[4]
    assert isinstance(failure, ActionFailed)
    assert failure.error.message.startswith("item 1 of 3 failed: invalid_request: cannot build")
    assert "{{item.sku}} resolves to nothing" in failure.error.message


def test_with_continue_on_error_an_item_that_cannot_be_built_is_listed_and_the_rest_run() -> None:
    spec = each(
        for_each=[{"sku": "a"}, {}, {"sku": "c"}],
        concurrency=2,
        continue_on_error=True,
        request=RequestSpec(url="http://h/{{item.sku}}"),
    )
    run = Run(Plan(id="p", actions=[spec]))
    assert requested(run.first) == ["each@0", "each@2"]
    run.complete("each@0", {"v": "a"})
    run.complete("each@2", {"v": "c"})
    output = run.s.actions["each"].output
    assert output is not None and output["items"] == [{"v": "a"}, None, {"v": "c"}]
    assert output["failed"][0]["index"] == 1
    assert output["failed"][0]["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert run.s.status == "completed"


def test_more_than_the_limit_of_resolved_items_fails_with_the_limit_named() -> None:
    plan = Plan(
        id="p",
        input={"many": list(range(MAX_ITEMS + 1))},
        actions=[
            each(for_each="{{input.many}}"),
        ],
    )
    run = Run(plan)
    (failed, end) = run.first
    assert isinstance(failed, ActionFailed) and isinstance(end, ExecutionFailed)
    assert failed.error.code == ErrorCode.INVALID_REQUEST
    assert f"{MAX_ITEMS + 1} items, above the limit of {MAX_ITEMS} items per action" in (
        failed.error.message
    )


def test_a_for_each_over_something_else_than_an_array_fails_naming_the_type() -> None:
    plan = Plan(id="p", input={"one": {"a": 1}}, actions=[each(for_each="{{input.one}}")])
    (failed, _) = Run(plan).first
    assert isinstance(failed, ActionFailed)
    assert failed.error.code == ErrorCode.INVALID_REQUEST
    assert "is an object, not an array" in failed.error.message or "not an array" in (
        failed.error.message
    )
    missing = Plan(id="p", actions=[each(for_each="{{input.nothing}}")])
    (failed, _) = Run(missing).first
    assert isinstance(failed, ActionFailed)
    assert "{{input.nothing}} resolves to nothing" in failed.error.message


def test_a_cancel_request_cancels_the_running_items_too() -> None:
    run = Run(Plan(id="p", actions=[each(for_each=list(range(10)), concurrency=3)]))
    run.complete("each@0")
    decisions = run.feed(ExecutionCancelRequested(execution_id="e1", reason="stop"))
    assert [e.action_id for e in of(decisions, ActionCancelled)] == [
        "each@1",
        "each@2",
        "each@3",
        "each",
    ]
    assert isinstance(decisions[-1], ExecutionCancelled)
    items = run.s.actions["each"].items
    assert items is not None and items.cancelled == 3
    assert run.s.actions["each"].status == "cancelled"


def test_a_redelivered_item_outcome_dispatches_nothing_more() -> None:
    run = Run(Plan(id="p", actions=[each(for_each=list(range(10)), concurrency=3)]))
    first = run.complete("each@0")
    assert requested(first) == ["each@3"]
    assert state_decides_nothing_again(run)


def state_decides_nothing_again(run: Run) -> bool:
    """The last item outcome, decided again on the state that already holds its decisions."""
    outcome = next(e for e in reversed(run.history) if isinstance(e, ActionCompleted))
    return decide(run.state, outcome) == []


def test_items_count_against_the_plans_cap_on_their_queue() -> None:
    plan = Plan(
        id="p",
        queues={"http": QueueConfig(concurrency_limit=3)},
        actions=[each(for_each=list(range(6)), concurrency=5), after("other")],
    )
    run = Run(plan)
    assert requested(run.first) == ["each@0", "each@1", "each@2"]  # "other" waits for a slot
    # Each freed slot goes to the next item first; once none is left, to "other".
    assert requested(run.complete("each@0")) == ["each@3"]
    assert requested(run.complete("each@1")) == ["each@4"]
    assert requested(run.complete("each@2")) == ["each@5"]
    assert requested(run.complete("each@3")) == ["other"]
    for key in ("each@4", "other", "each@5"):
        run.complete(key)
    assert run.s.status == "completed"


def test_while_another_action_fails_no_new_item_starts_and_the_action_is_cancelled() -> None:
    plan = Plan(id="p", actions=[each(for_each=list(range(10)), concurrency=2), after("other")])
    run = Run(plan)
    assert requested(run.first) == ["each@0", "each@1", "other"]
    run.fail("other")
    assert run.s.status == "running"  # items still in flight
    assert requested(run.complete("each@0")) == []
    last = run.complete("each@1")
    assert [type(e).__name__ for e in last] == ["ActionCancelled", "ExecutionFailed"]
    assert isinstance(last[0], ActionCancelled) and last[0].action_id == "each"
    assert run.status == "failed"


def test_items_of_a_later_run_carry_the_run_in_their_keys() -> None:
    plan = Plan(id="p", actions=[after("first"), each("each", "first", for_each=[1, 2])])
    run = Run(plan)
    run.s.actions["each"].run = 2  # as a retry that reset it leaves it
    decisions = run.complete("first")
    assert [getattr(e, "action_id", None) for e in decisions] == ["each~2", "each~2@0", "each~2@1"]
    run.complete("each~2@0", {"v": 1})
    assert requested(run.complete("each@1")) == []  # an earlier run's key: ignored
    run.complete("each~2@1", {"v": 2})
    assert run.s.actions["each"].output == {"items": [{"v": 1}, {"v": 2}]}
    assert run.s.status == "completed"


def test_every_item_key_is_decided_exactly_once_in_a_random_run() -> None:
    rng = random.Random(11)
    plan = Plan(
        id="p", actions=[each(for_each=list(range(60)), concurrency=9, continue_on_error=True)]
    )
    run = Run(plan)
    while run.in_flight():
        key = rng.choice(sorted(run.in_flight()))
        if rng.random() < 0.2:
            run.fail(key)
        else:
            run.complete(key, {"k": key})
    assert run.s.status == "completed"
    outcomes = [e for e in run.history if isinstance(e, ActionCompleted | ActionFailed)]
    keys = [e.action_id for e in outcomes]
    assert len(keys) == len(set(keys)) == 61
    assert len(of(run.history, ExecutionCompleted)) == 1


def test_an_upstream_output_stored_by_reference_is_looked_into() -> None:
    listing = each("each", "list", for_each="{{actions.list.output.items}}")
    run = Run(Plan(id="p", actions=[after("list"), listing]))
    stored = encode_payload({"items": ["a", "b"]})
    reader = PayloadReader()
    completed = ActionCompleted(
        execution_id="e1", action_id="list", attempt=1, output=stored.ref.marker()
    )
    run.state = apply_event(run.state, completed)
    with pytest.raises(PayloadNeeded):
        decide(run.state, completed)  # the processor fetches it, then decides again
    reader.add(stored.ref, {"items": ["a", "b"]})
    with reading_payloads(reader):
        decisions = decide(run.state, completed)
    assert requested(decisions) == ["each@0", "each@1"]
    urls = [d.request.url for d in of(decisions, ActionExecuteRequested)]
    assert urls == ["http://127.0.0.1:9/items/a", "http://127.0.0.1:9/items/b"]
