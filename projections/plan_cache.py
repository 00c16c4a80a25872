"""The plans of recently used executions, read from the log on a miss (least recently used out).

A plan never changes once submitted, so a cached one never goes stale.
"""

from __future__ import annotations

from collections import OrderedDict

from eventstore.codec import decode_event
from eventstore.events import PlanSubmitted
from eventstore.jetstream.log import EventLog
from eventstore.plan import Plan
from eventstore.subjects import plan_subject
from projections.errors import ExecutionNotFoundError

__all__ = ["PlanCache"]


class PlanCache:
    """Up to ``size`` executions' plans, looked up in ``log`` when missing."""

    def __init__(self, log: EventLog, size: int = 256) -> None:
        self.log = log
        self.size = size
        self._plans: OrderedDict[str, Plan] = OrderedDict()

    async def get(self, execution_id: str) -> Plan:
        """The execution's plan.

        Raises:
            ExecutionNotFoundError: the log holds no ``plan.submitted`` for it.
        """
        plan = self._plans.get(execution_id)
        if plan is not None:
            self._plans.move_to_end(execution_id)
            return plan
        record = await self.log.last_on(plan_subject(execution_id))
        if record is None:
            raise ExecutionNotFoundError(execution_id)
        event = decode_event(record.data)
        if not isinstance(event, PlanSubmitted):
            raise ExecutionNotFoundError(execution_id)
        self.remember(execution_id, event.plan)
        return event.plan

    def remember(self, execution_id: str, plan: Plan) -> None:
        """Keep ``plan`` as the execution's (it was just submitted)."""
        self._plans[execution_id] = plan
        while len(self._plans) > self.size:
            self._plans.popitem(last=False)
