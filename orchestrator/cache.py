"""A bounded, least-recently-used map of execution states kept by the leader, and a note of
the executions that ended here."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from eventstore.events import ActionCompleted, ActionFailed, Event
from eventstore.state import ExecutionState
from orchestrator.plan_memo import forget_plan

__all__ = ["StateCache"]


class StateCache:
    """Execution id -> state, evicting the least recently used beyond ``capacity``.

    Besides, up to ``capacity`` executions that ended are remembered without their state: an
    outcome consumed after the end (the orchestrator's own outcome of a for-each or a wait,
    stored with the end) then needs no reload of a history that may hold thousands of events.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: OrderedDict[str, ExecutionState] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()

    def get(self, execution_id: str) -> ExecutionState | None:
        """The cached state, marked as recently used; ``None`` on a miss."""
        state = self._states.get(execution_id)
        if state is not None:
            self._states.move_to_end(execution_id)
        return state

    def put(self, execution_id: str, state: ExecutionState) -> None:
        """Cache ``state``, evicting the least recently used entry if full."""
        self._ended.pop(execution_id, None)
        previous = self._states.get(execution_id)
        if previous is not None and previous.plan is not state.plan:
            forget_plan(previous.plan)  # a reload from the log decoded the plan again
        self._states[execution_id] = state
        self._states.move_to_end(execution_id)
        while len(self._states) > self.capacity:
            forget_plan(self._states.popitem(last=False)[1].plan)

    def drop(self, execution_id: str) -> None:
        """Forget one execution (its next event reloads it from the log)."""
        self._release(execution_id)
        self._ended.pop(execution_id, None)

    def end(self, execution_id: str) -> None:
        """Forget the state of an execution whose end was just stored, noting that it ended."""
        self._release(execution_id)
        self._ended[execution_id] = None
        self._ended.move_to_end(execution_id)
        while len(self._ended) > self.capacity:
            self._ended.popitem(last=False)

    def _release(self, execution_id: str) -> None:
        """Drop the cached state and what was derived from its plan."""
        state = self._states.pop(execution_id, None)
        if state is not None:
            forget_plan(state.plan)

    def after_end(self, event: Event) -> bool:
        """Whether ``event`` is an action's outcome in an execution that ended here, with
        nothing cached for it since (a retry that re-opens it is folded from the log and
        cached): deciding on it would decide nothing."""
        return (
            isinstance(event, ActionCompleted | ActionFailed) and event.execution_id in self._ended
        )

    def drop_where(self, belongs: Callable[[str], bool]) -> None:
        """Forget every execution whose id ``belongs``."""
        for execution_id in [e for e in (*self._states, *self._ended) if belongs(e)]:
            self.drop(execution_id)

    def __len__(self) -> int:
        return len(self._states)
