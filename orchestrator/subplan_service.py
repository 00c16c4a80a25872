"""What sub-plans need of the world around the pure decision: registry plans, and the end of
a child reported to its parent.

Before deciding, the processor asks :meth:`SubplanService.context_for` for the registry plans
that the execution's pending ``plan_ref`` actions name (read from the plan registry, a found
plan kept for a second); ``decide`` then starts children without I/O
(:mod:`orchestrator.subplans`).

When a child ends, :meth:`SubplanService.child_ended` folds its parent from the log and
appends the outcome of the parent's sub-plan action, guarded on the action's events being
unchanged since it was read: a cancellation (or a second report of the same end) that got
there first leaves nothing more to store. The outcome comes back to the orchestrator like an
executor's, and the parent goes on from there.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from eventstore import fold
from eventstore.config import TepSettings
from eventstore.error_codes import ErrorCode
from eventstore.errors import ConcurrencyError, EventTooLargeError
from eventstore.events import ActionCompleted, ActionFailed, ActionStarted, ErrorInfo
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.payloads import PayloadStore, store_large_output
from eventstore.jetstream.plan_registry import PlanRegistry
from eventstore.payloads import PayloadTooLargeError
from eventstore.plan import Plan
from eventstore.plan_registry import PlanRegistryError
from eventstore.records import Guard, RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import action_filter, action_ids, action_subject, plan_subject
from orchestrator.subplans import (
    SubplanContext,
    child_outcome,
    children_to_start,
    plan_refs_wanted,
)

__all__ = ["SubplanService"]

_log = logging.getLogger("tep.orchestrator")

_CACHE_S = 1.0
"""How long a plan read from the registry is used before it is read again."""
_CACHED_NAMES = 1024
_REPORT_ROUNDS = 8


class SubplanService:
    """Registry reads (cached) and child-end reports of one orchestrator.

    Args:
        log: the event log.
        settings: the depth limit (``TEP_MAX_SUBPLAN_DEPTH``) and the largest event.
        payloads: where an outcome's output above the inline limit is stored (by reference).
        clock: seconds, for the cache (monotonic).
    """

    def __init__(
        self,
        log: EventLog,
        settings: TepSettings,
        *,
        payloads: PayloadStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.settings = settings
        self.payloads = payloads
        self.clock = clock
        self._registry: PlanRegistry | None = None
        self._cache: OrderedDict[str, tuple[Plan, float]] = OrderedDict()

    # ------------------------------------------------------------------ starting

    async def context_for(self, state: ExecutionState | None) -> SubplanContext:
        """What ``decide`` needs to start the execution's sub-plans now."""
        names = set() if state is None else plan_refs_wanted(state)
        found: dict[str, Plan] = {}
        for name in sorted(names):
            plan = await self._plan(name)
            if plan is not None:
                found[name] = plan
        taken: dict[str, int] = {}
        for key, child in children_to_start(state):
            sequence = await self._taken(child, key, state)
            if sequence is not None:
                _log.warning(
                    "a sub-plan's child id is taken by a plan.submitted its parent did not write",
                    extra={"execution_id": child, "sequence": sequence},
                )
                taken[child] = sequence
        return SubplanContext(
            registry=found,
            max_depth=self.settings.max_subplan_depth,
            max_event_bytes=self.settings.max_msg_bytes,
            taken=taken,
        )

    async def _taken(self, child: str, key: str, state: ExecutionState | None) -> int | None:
        """The sequence of a ``plan.submitted`` of ``child`` that its parent did not write
        (one direct get per child about to start; ``None``: the id is free, or the parent's
        action did start it and ``state`` is behind)."""
        record = await self.log.last_on(plan_subject(child), leader=True)
        if record is None or state is None:
            return None
        started = action_subject(ActionStarted, state.execution_id, key)
        if await self.log.last_on(started, leader=True) is not None:
            return None  # the parent started it: deciding on a fresher state says so
        return record.sequence

    async def _plan(self, name: str) -> Plan | None:
        now = self.clock()
        cached = self._cache.get(name)
        if cached is not None and now - cached[1] < _CACHE_S:
            return cached[0]
        registry = self._registry or await PlanRegistry.open(self.log.nc, self.log.js)
        if registry is None:
            return None  # no plan was ever put; looked for again next time
        self._registry = registry
        try:
            registered = await registry.get(name)
        except PlanRegistryError as exc:
            _log.warning("plan registry: %s", exc, extra={"plan": name})
            return None
        if registered is None:
            self._cache.pop(name, None)
            return None  # not cached: a put right now is seen by the next look
        self._cache[name] = (registered.plan, now)
        self._cache.move_to_end(name)
        while len(self._cache) > _CACHED_NAMES:
            self._cache.popitem(last=False)
        return registered.plan

    # ------------------------------------------------------------------- ending

    async def child_ended(self, child: ExecutionState, cause: str) -> None:
        """Give the parent's sub-plan action of the ended ``child`` its outcome (at most once).

        Raises:
            ConcurrencyError: the parent's action kept changing while the outcome was written
                (the caller retries the child's end later).
        """
        link = child.parent
        assert link is not None and child.terminal
        for _ in range(_REPORT_ROUNDS):
            records = await self.log.read_execution(link.execution_id)
            parent = fold.fold(records)
            if parent is None:
                _log.warning(
                    "the parent of an ended child is not in the log",
                    extra={"execution_id": child.execution_id, "parent": link.execution_id},
                )
                return
            outcome = child_outcome(parent, child, cause=cause)
            if outcome is None:
                return  # the action ended otherwise (cancelled, reported already, reset)
            guard = Guard(
                _last_on_action(records, link.execution_id, link.action_id),
                action_filter(link.execution_id, link.action_id),
            )
            try:
                await self._append(outcome, guard)
            except ConcurrencyError:
                continue
            return
        raise ConcurrencyError(link.execution_id, 0)

    async def _append(self, outcome: ActionCompleted | ActionFailed, guard: Guard) -> None:
        try:
            if self.payloads is not None:
                outcome = await store_large_output(self.payloads, outcome)
            await self.log.append(outcome, guard=guard)
        except (PayloadTooLargeError, EventTooLargeError) as exc:
            error = ErrorInfo(
                message=f"the outputs of the child execution are too large: {exc}",
                code=ErrorCode.OUTPUT_TOO_LARGE,
            )
            failed = ActionFailed(
                execution_id=outcome.execution_id,
                action_id=outcome.action_id,
                event_id=outcome.event_id,
                causation_id=outcome.causation_id,
                correlation_id=outcome.correlation_id,
                attempt=outcome.attempt,
                error=error,
            )
            await self.log.append(failed, guard=guard)


def _last_on_action(records: Sequence[RecordedEvent], execution_id: str, key: str) -> int:
    """The sequence of the newest of ``records`` on :func:`action_filter` of ``key``."""
    wanted = (execution_id, key)
    return max((r.sequence for r in records if action_ids(r.subject) == wanted), default=0)
