"""The plans already found valid but for their ``input``: checked once, not on every submit.

The same plan is submitted again and again with a different ``input``. Everything a plan's
validity depends on but its ``input`` (nesting, numbers, ids, dependencies, templates...) is a
pure function of the plan with an empty ``input``, its *skeleton*. A skeleton found valid is kept
here by its exact encoding, so the next plan with the same skeleton checks only its ``input``.
Only valid skeletons are kept, and at most :data:`MAX_SKELETONS` of them (the oldest go first):
an invalid or unseen plan is always checked in full.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from eventstore.plan import Plan
from eventstore.plan_validation.limits import PlanLimits

__all__ = ["MAX_SKELETONS", "ValidSkeletons"]

MAX_SKELETONS = 4096
"""How many valid skeletons are kept (their encodings, a few KiB each at most in practice)."""


class ValidSkeletons:
    """The skeletons found valid under each :class:`PlanLimits`, least recently used first out."""

    def __init__(self, capacity: int = MAX_SKELETONS) -> None:
        self._capacity = capacity
        self._known: OrderedDict[tuple[PlanLimits, bytes], None] = OrderedDict()

    @staticmethod
    def key(plan: Plan, limits: PlanLimits) -> tuple[PlanLimits, bytes] | None:
        """What identifies ``plan``'s skeleton under ``limits``; ``None`` for a plan built in
        code too deep to encode (the full check says so)."""
        try:
            return limits, msgspec.json.encode(msgspec.structs.replace(plan, input={}))
        except RecursionError:
            return None

    def __contains__(self, key: tuple[PlanLimits, bytes] | None) -> bool:
        if key is None or key not in self._known:
            return False
        self._known.move_to_end(key)
        return True

    def add(self, key: tuple[PlanLimits, bytes] | None) -> None:
        """Remember a skeleton found valid."""
        if key is None:
            return
        self._known[key] = None
        self._known.move_to_end(key)
        while len(self._known) > self._capacity:
            self._known.popitem(last=False)

    def __len__(self) -> int:
        return len(self._known)
