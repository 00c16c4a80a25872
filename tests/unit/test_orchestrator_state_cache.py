"""The leader's state cache remembers executions that ended, so an outcome stored with the end
(a for-each's, a wait's) is known to decide nothing without reading the history again."""

from __future__ import annotations

from eventstore.events import ActionCompleted, ActionFailed, ErrorInfo, ExecutionRetried
from eventstore.plan import Action, Plan
from eventstore.state import ExecutionState
from orchestrator.cache import StateCache
from orchestrator.graph import graph_of
from orchestrator.plan_memo import PlanMemo, forget_plan


def completed(execution_id: str) -> ActionCompleted:
    return ActionCompleted(execution_id=execution_id, action_id="each", attempt=1, output={})


def test_an_outcome_after_the_end_is_known_only_for_executions_that_ended_here() -> None:
    cache = StateCache(10)
    cache.put("e1", ExecutionState(execution_id="e1", plan_id="p"))
    assert not cache.after_end(completed("e1"))

    cache.end("e1")

    assert cache.get("e1") is None and len(cache) == 0
    assert cache.after_end(completed("e1"))
    failed = ActionFailed(
        execution_id="e1", action_id="x", attempt=1, error=ErrorInfo(message="m", code="c")
    )
    assert cache.after_end(failed)
    retried = ExecutionRetried(execution_id="e1", run=2, reset=["each"])
    assert not cache.after_end(retried)  # it re-opens the execution
    assert not cache.after_end(completed("e2"))


def test_caching_the_state_again_or_dropping_it_forgets_the_end() -> None:
    cache = StateCache(10)
    cache.end("e1")
    cache.put("e1", ExecutionState(execution_id="e1", plan_id="p"))  # a retry re-opened it
    assert not cache.after_end(completed("e1"))
    cache.end("e2")
    cache.drop("e2")
    assert not cache.after_end(completed("e2"))
    cache.end("e3")
    cache.drop_where(lambda e: e == "e3")
    assert not cache.after_end(completed("e3"))


def test_dropping_a_partition_keeps_the_other_executions() -> None:
    cache = StateCache(10)
    for execution_id in ("a1", "a2", "b1"):
        cache.put(execution_id, ExecutionState(execution_id=execution_id, plan_id="p"))
    cache.end("a3")
    cache.end("b2")
    cache.drop_where(lambda e: e.startswith("a"))
    assert [cache.get(e) is not None for e in ("a1", "a2", "b1")] == [False, False, True]
    assert not cache.after_end(completed("a3")) and cache.after_end(completed("b2"))


def test_ended_executions_are_remembered_up_to_the_capacity() -> None:
    cache = StateCache(2)
    for execution_id in ("e1", "e2", "e3"):
        cache.end(execution_id)
    assert [cache.after_end(completed(e)) for e in ("e1", "e2", "e3")] == [False, True, True]


def _plan(plan_id: str) -> Plan:
    return Plan(id=plan_id, actions=[Action(id="a", type="noop")])


def test_an_execution_that_ends_or_leaves_the_cache_releases_its_plan_s_memos() -> None:
    # Kept until the least recently used fell out, every ended execution's plan and graph
    # stayed in memory: the orchestrator's RSS grew with each run up to the memo's bound.
    cache = StateCache(2)
    start = len(graph_of)
    plans = {e: _plan(e) for e in ("e1", "e2", "e3", "e4")}
    for execution_id, plan in plans.items():
        graph_of(plan)
        cache.put(execution_id, ExecutionState(execution_id=execution_id, plan_id="p", plan=plan))
    assert len(graph_of) == start + 2  # e1 and e2 left the cache (capacity 2), and their graphs

    cache.end("e3")
    assert len(graph_of) == start + 1
    cache.drop("e4")
    assert len(graph_of) == start

    first = _plan("e5")
    graph_of(first)
    cache.put("e5", ExecutionState(execution_id="e5", plan_id="p", plan=first))
    cache.put("e5", ExecutionState(execution_id="e5", plan_id="p", plan=_plan("e5")))  # reloaded
    assert len(graph_of) == start  # the first decoding's graph went with it
    assert graph_of(plans["e1"]).plan is plans["e1"]  # asked again: derived again


def test_a_plan_memo_derives_once_per_plan_object_and_forgets_on_request() -> None:
    calls: list[str] = []
    memo: PlanMemo[str] = PlanMemo(lambda plan: calls.append(plan.id) or plan.id, size=2)
    first, twin = _plan("x"), _plan("x")

    assert memo(first) == "x" and memo(first) == "x" and calls == ["x"]
    assert memo(twin) == "x" and calls == ["x", "x"]  # equal but another object
    memo(_plan("y"))
    assert len(memo) == 2  # the least recently used (first) fell out
    memo.forget(twin)
    assert len(memo) == 1
    forget_plan(None)  # an execution whose plan was never decoded
