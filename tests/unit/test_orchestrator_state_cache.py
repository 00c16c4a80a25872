"""The leader's state cache remembers executions that ended, so an outcome stored with the end
(a for-each's, a wait's) is known to decide nothing without reading the history again."""

from __future__ import annotations

from eventstore.events import ActionCompleted, ActionFailed, ErrorInfo, ExecutionRetried
from eventstore.state import ExecutionState
from orchestrator.cache import StateCache


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
