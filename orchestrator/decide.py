"""``decide``: what the orchestrator appends after an event. Pure, no I/O.

``decide(state, event)`` is called *after* ``event`` was folded into ``state`` and returns the
events to append, in order. Rules (see ``docs/orchestrator.md``):

* Every ready action (pending, all dependencies finished) is decided at once: dispatched, or
  skipped because its ``when`` is false (``condition_false``) or by how its dependencies ended
  and its ``run_if`` (:func:`eventstore.routes.skip_for`). Skips propagate within one decision.
* An action whose templates cannot be resolved fails at once (code ``invalid_request``).
* A plan's ``queues: {Q: {concurrency_limit: N}}`` caps this execution alone: at most N of its
  actions of queue Q are dispatched and unfinished at once. A ready action beyond the cap waits;
  each outcome of a Q action dispatches the waiting ones, in plan order, into the freed slots.
* A failure that blocks (:mod:`eventstore.routes`: no ``continue_on_error``, no error route
  ran or is undecided) fails the execution: nothing new starts except routes; once nothing is
  in flight, what never ran is cancelled (``execution failed``), ``execution.failed`` follows.
* Every action finished and nothing blocking failed: ``execution.completed``.
* A ready ``wait`` or ``sleep`` action is not dispatched: it is recorded as waiting (see
  :mod:`orchestrator.waits`); a resume request or a fired timer gives it its one outcome.
  An action using a waitpoint's token is ready only once the waitpoint has one.
* A ready ``plan`` action starts its child execution (see :mod:`orchestrator.subplans`); the
  child's end gives it its outcome.
* A ready for-each action runs its items, at most ``concurrency`` at once, each counting as one
  action of its queue; its last item's outcome gives it its own (see :mod:`orchestrator.items`).
* A cancel request: every unfinished action is cancelled, every running child is asked to
  cancel, then ``execution.cancelled``.
* A terminal execution decides nothing.
* ``execution.retried``: its ready reset actions are decided like a new plan's roots. Decisions
  carry the key of the action's current run (:mod:`eventstore.action_keys`); an event of an
  earlier run decides nothing.

Decision events carry deterministic ids (:mod:`orchestrator.ids`), the triggering event's id as
``causation_id`` and the execution id as ``correlation_id``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime

from eventstore.conditions import ConditionError, evaluate
from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCompleted,
    ActionEvent,
    ActionFailed,
    ActionResumeRequested,
    ActionTimerFired,
    ErrorInfo,
    Event,
    ExecutionRetried,
    PlanSubmitted,
)
from eventstore.plan import Action
from eventstore.routes import skip_for
from eventstore.runs import current_action
from eventstore.state import FINISHED_ACTION_STATUSES, ActionState, ExecutionState
from eventstore.templates import TemplateError
from orchestrator import ids
from orchestrator.decision import Decision
from orchestrator.dispatch import build_request
from orchestrator.ending import EXECUTION_FAILED_REASON, cancel_all
from orchestrator.graph import PlanGraph
from orchestrator.items import ItemsStep, item_outcome, start_items
from orchestrator.subplans import NO_SUBPLANS, SubplanContext, start_child
from orchestrator.waits import TokenSource, new_token, start_wait, wait_outcome

__all__ = ["EXECUTION_FAILED_REASON", "decide"]

_NOT_SUCCEEDED = frozenset({"failed", "cancelled", "skipped"})


def decide(
    state: ExecutionState | None,
    event: Event,
    *,
    now: datetime | None = None,
    tokens: TokenSource = new_token,
    subplans: SubplanContext = NO_SUBPLANS,
) -> list[Event]:
    """The events to append after ``event`` (already folded into ``state``).

    Args:
        state: the execution's state including ``event``; ``None`` if no plan was seen.
        event: the event that triggered the decision.
        now: the moment sleeps and waitpoint timeouts count from, and ``{{now}}`` in
            requests (default: when ``event`` occurred); the orchestrator passes the moment
            the log stored ``event``, so a decision taken again renders the same requests.
        tokens: makes a waitpoint's token.
        subplans: the registry plans the execution's ``plan_ref`` actions name and the depth
            limit, for starting sub-plans (see :mod:`orchestrator.subplans`).

    Returns:
        Decisions in the order they must be appended; empty when there is nothing to do.

    Example:
        >>> state = fold.apply_event(None, submitted)  # doctest: +SKIP
        >>> [e.action_id for e in decide(state, submitted)]  # doctest: +SKIP
        ['fetch-user']
    """
    if state is None or state.plan is None or state.terminal:
        return []
    if state.cancel_requested:
        return cancel_all(state, event.event_id)
    if now is None:
        now = datetime.fromisoformat(event.occurred_at.replace("Z", "+00:00"))
    source = None
    if isinstance(event, ActionEvent):
        source = current_action(state, event.action_id)
        if source is None:
            return []  # an event of an earlier run (or of no action of the plan)
    elif isinstance(event, ExecutionRetried) and event.run != state.run:
        return []  # a retry the fold refused
    decision = _Decision(state, event.event_id, now, tokens, subplans)
    if isinstance(event, ActionCompleted | ActionFailed) and decision.item_done(event.action_id):
        decision.conclude()
        return decision.events
    if isinstance(event, ActionResumeRequested | ActionTimerFired):
        assert source is not None
        # The wait's one outcome, and what it makes ready, in one decision: its dependents
        # need not wait for the outcome to come back through the consumer.
        outcome = wait_outcome(state, source, event.event_id)
        if outcome is None:
            return []
        decision.finish_wait(source, outcome)
    if source is not None:
        decision.refill(source)
    decision.advance(_candidates(decision.graph, event, source), source)
    decision.conclude()
    return decision.events


def _candidates(graph: PlanGraph, event: Event, source: str | None) -> Iterable[str]:
    if isinstance(event, PlanSubmitted | ExecutionRetried):
        # A retry's reset actions are pending again; every other action is finished.
        return graph.specs.keys()
    if source is not None:
        return graph.dependents.get(source, ())
    return ()


class _Decision(Decision):
    """The frontier walk: which actions this event makes ready, and how each is decided."""

    def advance(self, candidates: Iterable[str], source: str | None) -> None:
        """Decide every ready or doomed candidate, then the dependents of what finished now.

        ``source`` is the action whose outcome made the candidates worth a look.
        """
        queue = deque((candidate, source) for candidate in candidates)
        while queue:
            action_id, cause = queue.popleft()
            if not (self._ready(action_id) or self._doomed_by(action_id, cause)):
                continue
            if self._decide_action(self.graph.specs[action_id]):
                queue.extend(
                    (dependent, action_id) for dependent in self.graph.dependents[action_id]
                )
            if self.view[action_id].wait is not None:
                # Its token exists now: the actions that hand it out may be ready.
                queue.extend((user, None) for user in self.graph.token_users.get(action_id, ()))

    def refill(self, finished: str) -> None:
        """Dispatch waiting actions into the slots ``finished`` freed on its capped queue.

        An action waits only once it would otherwise be dispatched, so the queue's ready
        actions are taken in plan order until the cap is reached again.
        """
        spec = self.graph.specs.get(finished)
        limited = None if spec is None else self.graph.limited.get(spec.queue_name)
        if spec is None or limited is None:
            return
        waiting = self._scan(spec.queue_name, limited)
        for action_id in waiting:
            if not self._has_slot(spec.queue_name):
                return
            if self._ready(action_id):
                self.advance((action_id,), None)

    def _doomed_by(self, action_id: str, source: str | None) -> bool:
        """A dependency failed or was skipped: the action is skipped now, whatever else runs."""
        if source is None or self.view[source].status not in _NOT_SUCCEEDED:
            return False
        action = self.view[action_id]
        return (
            action.status == "pending"
            and action.dispatched_at is None
            and self.graph.specs[action_id].run_if == "success"
        )

    def _ready(self, action_id: str) -> bool:
        action = self.view[action_id]
        if action.status != "pending" or action.dispatched_at is not None:
            return False
        decided, actions = self.decided, self.state.actions
        # Outcomes tend to arrive in dispatch order: the last dependency is the likeliest to
        # be unfinished, so a big fan-in is usually rejected after one look.
        for dependency in reversed(self.graph.specs[action_id].depends_on):
            upstream = decided.get(dependency) or actions[dependency]
            if upstream.status not in FINISHED_ACTION_STATUSES:
                return False
        for waitpoint in self.graph.tokens_used.get(action_id, ()):
            wait = self.view[waitpoint].wait
            if (wait is None or wait.token is None) and not self.view[waitpoint].finished:
                return False
        return True

    def _decide_action(self, spec: Action) -> bool:
        """Decide one ready action; ``True`` if it is finished by this decision."""
        skip = skip_for(spec, [self.view[d] for d in spec.depends_on])
        if skip is not None:
            self._skip(spec, *skip)
            return True
        if self.blocking and spec.run_if == "success":
            return False  # the execution is failing: start nothing new
        if spec.when is not None:
            try:
                holds = evaluate(spec.when, self.state, self.view)
            except ConditionError as exc:
                self._fail(spec, ErrorCode.INVALID_CONDITION, str(exc))
                return True
            if not holds:
                self._skip(spec, "condition_false", f"when on {spec.when.path} is false")
                return True
        if spec.waits:
            return self._wait(spec)
        if not self._has_slot(spec.queue_name):
            return False  # the plan's cap on the queue is reached: wait for a slot
        if spec.runs_plan:
            return self._start_child(spec)
        if spec.for_each is not None:
            return self._take_items(start_items(self, spec, self._room(spec.queue_name)))
        key = self.key(spec.id)
        try:
            request = build_request(
                spec,
                self.state,
                event_id=ids.requested_id(self.execution, key),
                causation_id=self.cause,
                actions=self.view,
                key=key,
                now=self.now,
            )
        except TemplateError as exc:
            self._fail(spec, ErrorCode.INVALID_REQUEST, f"cannot build the request: {exc}")
            return True
        self.events.append(request)
        self.decided[spec.id] = ActionState(
            action_id=spec.id, queue=request.queue, dispatched_at=request.occurred_at
        )
        self.dispatched_now += 1
        if request.queue in self.slots_used:
            self.slots_used[request.queue] += 1
        return False

    def _wait(self, spec: Action) -> bool:
        """Record a ``wait``/``sleep`` action as waiting; ``True`` if it is already over."""
        try:
            started = start_wait(
                spec, self.state, self.view, now=self.now, cause=self.cause, tokens=self.tokens
            )
        except TemplateError as exc:
            self._fail(spec, ErrorCode.INVALID_REQUEST, f"cannot start waiting: {exc}")
            return True
        self.events.append(started.waiting)
        self.decided[spec.id] = started.state
        if started.outcome is None:
            return False
        self.finish_wait(spec.id, started.outcome, started.state)
        return True

    def _start_child(self, spec: Action) -> bool:
        """Start a sub-plan's child execution; ``True`` if the action failed instead."""
        started = start_child(
            spec, self.state, self.view, cause=self.cause, now=self.now, context=self.subplans
        )
        if isinstance(started, ErrorInfo):
            self._fail(spec, started.code, started.message)
            return True
        self.events.extend(started.events)
        self.decided[spec.id] = started.state
        self.dispatched_now += 1
        if spec.queue_name in self.slots_used:  # queues.plan caps the running children
            self.slots_used[spec.queue_name] += 1
        return False

    def item_done(self, key: str) -> bool:
        """An item's outcome: its action's next items, or its outcome and what that makes
        ready; ``False`` if ``key`` is no item of a running for-each action."""
        step = item_outcome(self, key, self._room, bool(self.blocking))
        if step is None:
            return False
        if self._take_items(step):
            self.advance(self.graph.dependents[step.state.action_id], step.state.action_id)
        self.refill(step.state.action_id)
        return True

    def _take_items(self, step: ItemsStep) -> bool:
        """Take a for-each action's step into the decision; ``True`` if it finished now."""
        action_id = step.state.action_id
        self.events.extend(step.events)
        self.decided[action_id] = step.state
        self.dispatched_now += step.dispatched
        queue = self.graph.specs[action_id].queue_name
        if queue in self.slots_used:
            self.slots_used[queue] += step.dispatched - step.freed
        if step.state.finished:
            self.finished_now += 1
            self.blocking.note(action_id)
        return step.state.finished
