"""One decision in progress, as :func:`orchestrator.decide.decide` builds it. Pure.

A :class:`Decision` is an overlay of the actions decided so far over the execution's state,
the events it has written, the plan's queue caps as this decision uses them, and how it ends
(completed, or failed once nothing is in flight). The frontier walk that fills it is
:mod:`orchestrator.decide`.
"""

from __future__ import annotations

from collections import ChainMap
from datetime import datetime

from eventstore.action_keys import action_key
from eventstore.events import (
    ActionFailed,
    ActionSkipped,
    ErrorInfo,
    Event,
    ExecutionCompleted,
    SkipReason,
)
from eventstore.fold import blocking_failures
from eventstore.plan import Action
from eventstore.routes import Blocking
from eventstore.state import ActionState, ExecutionState
from orchestrator import ids
from orchestrator.ending import failure_end
from orchestrator.graph import LimitedQueue, graph_of
from orchestrator.subplans import SubplanContext
from orchestrator.waits import TokenSource

__all__ = ["Decision"]


def _dispatched_unfinished(action: ActionState) -> bool:
    return action.status == "running" or (
        action.status == "pending" and action.dispatched_at is not None
    )


class Decision:
    """One decision in progress: an overlay of the actions decided so far over the state."""

    def __init__(
        self,
        state: ExecutionState,
        cause: str,
        now: datetime,
        tokens: TokenSource,
        subplans: SubplanContext,
    ) -> None:
        assert state.plan is not None
        self.now = now
        self.tokens = tokens
        self.subplans = subplans
        self.state = state
        self.execution = state.execution_id
        self.cause = cause
        self.graph = graph_of(state.plan)
        self.decided: dict[str, ActionState] = {}
        self.view: ChainMap[str, ActionState] = ChainMap(self.decided, state.actions)
        self.events: list[Event] = []
        self.finished_now = 0
        self.dispatched_now = 0
        self.blocking = Blocking(blocking_failures(state), self.graph, self.view)
        # Queue -> its actions dispatched and unfinished, counted when a capped queue is
        # first looked at, then kept up to date by this decision's own dispatches.
        self.slots_used: dict[str, int] = {}

    def key(self, action_id: str) -> str:
        """The key of the action's current run: what its decisions are about."""
        return action_key(action_id, self.state.actions[action_id].run)

    def _has_slot(self, queue: str) -> bool:
        """Whether one more action of ``queue`` may be dispatched under the plan's cap."""
        limited = self.graph.limited.get(queue)
        if limited is None:
            return True
        used = self.slots_used.get(queue)
        if used is None:
            self._scan(queue, limited)
            used = self.slots_used[queue]
        return used < limited.limit

    def _scan(self, queue: str, limited: LimitedQueue) -> list[str]:
        """Count the queue's actions in flight; return those never dispatched, in plan order."""
        decided, actions = self.decided, self.state.actions
        used = 0
        waiting = []
        # _dispatched_unfinished, inlined: this runs over the queue's actions on every outcome.
        for action_id in limited.members:
            action = decided.get(action_id) or actions[action_id]
            status = action.status
            if status == "pending":
                if action.dispatched_at is None:
                    waiting.append(action_id)
                else:
                    used += 1
            elif status == "running":
                used += 1 if action.items is None else action.items.in_flight
        self.slots_used[queue] = used
        return waiting

    def _room(self, queue: str) -> int | None:
        """How many more of the queue's actions may start under the plan's cap (or ``None``)."""
        limited = self.graph.limited.get(queue)
        if limited is None or not self._has_slot(queue):
            return None if limited is None else 0
        return limited.limit - self.slots_used[queue]

    def finish_wait(
        self, action_id: str, outcome: Event, waiting: ActionState | None = None
    ) -> None:
        """Append a wait's outcome and count its action finished in this decision."""
        self.events.append(outcome)
        before = waiting or self.view[action_id]
        finished = ActionState(action_id=action_id, wait=before.wait, queue=before.queue)
        if isinstance(outcome, ActionFailed):
            finished.status, finished.error = "failed", outcome.error
        else:
            finished.status = "completed"
            finished.output = getattr(outcome, "output", None)
        self.decided[action_id] = finished
        self.finished_now += 1
        self.blocking.note(action_id)

    def _skip(self, spec: Action, reason: SkipReason, detail: str) -> None:
        key = self.key(spec.id)
        self.events.append(
            ActionSkipped(
                execution_id=self.execution,
                action_id=key,
                event_id=ids.skipped_id(self.execution, key),
                causation_id=self.cause,
                correlation_id=self.execution,
                reason=reason,
                detail=detail,
            )
        )
        self.decided[spec.id] = ActionState(action_id=spec.id, status="skipped", skip_reason=reason)
        self.finished_now += 1
        self.blocking.note_skipped(spec)

    def _fail(self, spec: Action, code: str, message: str) -> None:
        error = ErrorInfo(message=message, code=code)
        key = self.key(spec.id)
        self.events.append(
            ActionFailed(
                execution_id=self.execution,
                action_id=key,
                event_id=ids.dispatch_failed_id(self.execution, key),
                causation_id=self.cause,
                correlation_id=self.execution,
                attempt=0,
                error=error,
            )
        )
        self.decided[spec.id] = ActionState(action_id=spec.id, status="failed", error=error)
        self.finished_now += 1
        self.blocking.note(spec.id)

    def conclude(self) -> None:
        """Append the execution's end if this decision reaches it."""
        counts = self.state.counts
        unfinished = counts.pending + counts.running + counts.waiting - self.finished_now
        if self.blocking:
            if not self._in_flight():
                self._fail_execution()
        elif unfinished == 0:
            self.events.append(
                ExecutionCompleted(
                    execution_id=self.execution,
                    event_id=ids.terminal_id(self.execution, self.state.run),
                    causation_id=self.cause,
                    correlation_id=self.execution,
                )
            )

    def _in_flight(self) -> bool:
        if self.dispatched_now:
            return True
        return any(_dispatched_unfinished(self.view[a]) for a in self.graph.specs)

    def _fail_execution(self) -> None:
        unfinished = [self.key(a) for a in self.graph.specs if not self.view[a].finished]
        failed = self.blocking.final()
        self.events.extend(
            failure_end(
                self.execution, self.cause, unfinished, failed, self.view, run=self.state.run
            )
        )
