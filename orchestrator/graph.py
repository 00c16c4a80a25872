"""A plan's DAG as lookup tables: specs by id and the reverse edges (dependents). Pure.

Deciding after each outcome looks only at the dependents of the action that finished, so a
1,000-action fan-out costs O(dependents) per event instead of a scan of the whole plan.
"""

from __future__ import annotations

from collections import OrderedDict

from eventstore.dag import dependents_index
from eventstore.plan import Action, Plan

__all__ = ["PlanGraph", "graph_of"]

_MEMO_SIZE = 1024


class PlanGraph:
    """Lookup tables of one plan.

    Attributes:
        plan: the plan.
        specs: action id -> action.
        dependents: action id -> ids of the actions that depend on it, in plan order.
        roots: ids of actions without dependencies, in plan order.
    """

    __slots__ = ("dependents", "plan", "roots", "specs")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.specs: dict[str, Action] = {a.id: a for a in plan.actions}
        self.dependents: dict[str, list[str]] = dependents_index(plan)
        self.roots: list[str] = [a.id for a in plan.actions if not a.depends_on]


_memo: OrderedDict[int, PlanGraph] = OrderedDict()


def graph_of(plan: Plan) -> PlanGraph:
    """The (memoized) graph of ``plan``; plans are immutable, so the tables never go stale."""
    key = id(plan)
    graph = _memo.get(key)
    if graph is not None and graph.plan is plan:
        _memo.move_to_end(key)
        return graph
    graph = PlanGraph(plan)
    _memo[key] = graph
    if len(_memo) > _MEMO_SIZE:
        _memo.popitem(last=False)
    return graph
