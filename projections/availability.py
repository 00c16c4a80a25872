"""Which actions a caller may start now (``StateManager.get_available_actions``). Pure.

The DAG frontier (:func:`eventstore.fold.ready_actions`: pending, not dispatched, every
dependency finished) of the plan with its error routes as edges
(:func:`eventstore.routes.with_routes`), narrowed to the actions the orchestrator would run
rather than skip:

* how its dependencies ended allows it (:func:`eventstore.routes.skip_for`): with ``run_if``
  ``success`` (the default) every dependency completed; with ``failed`` (an error route) at
  least one failed; with ``always`` however they ended;
* nothing blocking has ended (:func:`eventstore.fold.blocking_failures`: a failure no error
  route handled or will handle, without ``continue_on_error``, or a cancelled action): a
  failing execution starts nothing new except routes (``run_if`` ``failed`` or ``always``);
* its ``when`` condition, if any, holds (a condition that cannot be evaluated does not).
"""

from __future__ import annotations

import msgspec

from eventstore.conditions import ConditionError, evaluate
from eventstore.fold import blocking_failures, ready_actions
from eventstore.routes import skip_for, with_routes
from eventstore.state import ExecutionState

__all__ = ["available_actions"]


def available_actions(state: ExecutionState) -> list[str]:
    """Ids of the actions that may start now, in plan order (``state.plan`` must be set)."""
    if state.plan is None:
        raise ValueError("available_actions needs the execution's plan on the state")
    plan = with_routes(state.plan)
    if plan is not state.plan:
        state = msgspec.structs.replace(state, plan=plan)
    specs = {action.id: action for action in plan.actions}
    failing = bool(blocking_failures(state))
    available = []
    for action_id in ready_actions(state):
        spec = specs[action_id]
        if skip_for(spec, [state.actions[d] for d in spec.depends_on]) is not None:
            continue
        if failing and spec.run_if == "success":
            continue
        if spec.when is not None:
            try:
                if not evaluate(spec.when, state):
                    continue
            except ConditionError:
                continue
        available.append(action_id)
    return available
