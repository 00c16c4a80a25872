"""Which actions a caller may start now (``StateManager.get_available_actions``). Pure.

The DAG frontier (:func:`eventstore.fold.ready_actions`: pending, not dispatched, every
dependency finished), narrowed to the actions the orchestrator would run rather than skip:

* every dependency **completed**, or the action has ``run_on_dependency_failure`` (then a
  failed, skipped or cancelled dependency does not hold it back);
* nothing blocking has ended (:func:`eventstore.fold.blocking_failures`: an action failed
  without ``allow_failure``, or one was cancelled): a failing execution starts nothing new,
  again unless the action has ``run_on_dependency_failure``;
* its ``when`` condition, if any, holds (a condition that cannot be evaluated does not).
"""

from __future__ import annotations

from eventstore.conditions import ConditionError, evaluate
from eventstore.fold import blocking_failures, ready_actions
from eventstore.state import ExecutionState

__all__ = ["available_actions"]


def available_actions(state: ExecutionState) -> list[str]:
    """Ids of the actions that may start now, in plan order (``state.plan`` must be set)."""
    plan = state.plan
    if plan is None:
        raise ValueError("available_actions needs the execution's plan on the state")
    specs = {action.id: action for action in plan.actions}
    failing = bool(blocking_failures(state))
    available = []
    for action_id in ready_actions(state):
        spec = specs[action_id]
        if spec.run_if == "success":
            if failing:
                continue
            if any(state.actions[d].status != "completed" for d in spec.depends_on):
                continue
        if spec.when is not None:
            try:
                if not evaluate(spec.when, state):
                    continue
            except ConditionError:
                continue
        available.append(action_id)
    return available
