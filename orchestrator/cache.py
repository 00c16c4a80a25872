"""A bounded, least-recently-used map of execution states kept by the leader."""

from __future__ import annotations

from collections import OrderedDict

from eventstore.state import ExecutionState

__all__ = ["StateCache"]


class StateCache:
    """Execution id -> state, evicting the least recently used beyond ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: OrderedDict[str, ExecutionState] = OrderedDict()

    def get(self, execution_id: str) -> ExecutionState | None:
        """The cached state, marked as recently used; ``None`` on a miss."""
        state = self._states.get(execution_id)
        if state is not None:
            self._states.move_to_end(execution_id)
        return state

    def put(self, execution_id: str, state: ExecutionState) -> None:
        """Cache ``state``, evicting the least recently used entry if full."""
        self._states[execution_id] = state
        self._states.move_to_end(execution_id)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def drop(self, execution_id: str) -> None:
        """Forget one execution (its next event reloads it from the log)."""
        self._states.pop(execution_id, None)

    def clear(self) -> None:
        """Forget everything."""
        self._states.clear()

    def __len__(self) -> int:
        return len(self._states)
