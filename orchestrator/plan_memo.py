"""Values derived from a plan, kept per plan object while its execution runs. Pure.

Each execution decodes its own plan, and deciding asks the same questions of it after every
event (its graph, its sub-plan actions), so the answers are memoized by the plan object's
identity. An execution's answers are dropped when it ends or leaves the cache
(:func:`forget_plan`): kept until the least recently used fell out, every ended execution's
plan stayed in memory up to the bound, and the orchestrator's RSS grew with every run.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from eventstore.plan import Plan

__all__ = ["PlanMemo", "forget_plan"]

T = TypeVar("T")

# Room for every execution in flight (the state cache's default size and more): at 1,024,
# 2,000 in flight rebuilt a graph per event.
DEFAULT_SIZE = 16_384

_MEMOS: list[PlanMemo[Any]] = []


class PlanMemo(Generic[T]):
    """``derive(plan)``, computed once per plan object, least recently used beyond ``size``.

    Example:
        >>> ids = PlanMemo(lambda plan: [a.id for a in plan.actions])  # doctest: +SKIP
        >>> ids(plan)  # doctest: +SKIP
    """

    def __init__(self, derive: Callable[[Plan], T], size: int = DEFAULT_SIZE) -> None:
        self._derive = derive
        self._size = size
        # Keyed by id(): hashing a frozen plan hashes every field. The plan is kept with its
        # value, so its id cannot be reused by another plan while the entry exists.
        self._entries: OrderedDict[int, tuple[Plan, T]] = OrderedDict()
        _MEMOS.append(self)

    def __call__(self, plan: Plan) -> T:
        """The value for ``plan``, derived on first use."""
        key = id(plan)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is plan:
            self._entries.move_to_end(key)
            return entry[1]
        value = self._derive(plan)
        self._entries[key] = (plan, value)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value

    def forget(self, plan: Plan) -> None:
        """Drop ``plan``'s value, if this memo holds it."""
        entry = self._entries.get(id(plan))
        if entry is not None and entry[0] is plan:
            del self._entries[id(plan)]

    def __len__(self) -> int:
        return len(self._entries)


def forget_plan(plan: Plan | None) -> None:
    """Drop every memo's value for ``plan`` (an execution that ended or left the cache)."""
    if plan is None:
        return
    for memo in _MEMOS:
        memo.forget(plan)
