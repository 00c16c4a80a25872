"""Sub-plan actions: starting a child execution, its end as the action's outcome, and
cancelling children with their parent. Pure.

A ready action of type ``plan`` is not dispatched to any queue. In one atomic decision the
orchestrator appends

* ``action.started`` on the parent's action key, ``attempt`` 1, no executor, with the child's
  id in ``child_execution_id`` (the fold marks the action running and links it), and
* the child's ``plan.submitted``: the inline ``plan`` or the registry's ``plan_ref`` plan,
  its input the plan's own merged with the rendered ``input`` templates, and
  ``parent = ParentLink(<parent>, <action key>, depth)``.

The child's id is derived from the parent's id and the action key (:func:`child_execution_id`),
so a decision taken again names the same child, and the log stores it once. The child runs as
any execution. When it ends (the orchestrator consumes ``execution.completed|failed|
cancelled``), its parent's action gets its one outcome (:func:`child_outcome`):
``action.completed`` with ``{"execution_id": <child>, "actions": {<id>: <output>, ...}}`` (the
outputs of the child's completed actions), or ``action.failed`` with code ``subplan_failed``
naming the child and its error. A cancelled parent asks each running child to cancel
(:func:`cancel_children`).

Nothing starts when the child cannot: a ``plan_ref`` the registry does not hold fails the
action with ``plan_not_found``, a child deeper than the depth limit with ``subplan_too_deep``,
input that does not render to an object with ``invalid_request`` and input that does not match
the child plan's ``input_schema`` with ``input_invalid``, and a child whose id the log already
holds a ``plan.submitted`` for (published by someone else before the orchestrator started it:
the id is derived, so anyone can compute it) with ``subplan_failed``: that execution is not
this action's child, and its end is never taken for the action's outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from eventstore.action_keys import action_key
from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCompleted,
    ActionFailed,
    ActionStarted,
    ErrorInfo,
    Event,
    ExecutionCancelRequested,
    ParentLink,
    PlanSubmitted,
)
from eventstore.plan import Action, Plan
from eventstore.plan_validation.limits import DEFAULT_PLAN_LIMITS, event_size_problem
from eventstore.plan_validation.subplan_checks import DEFAULT_MAX_SUBPLAN_DEPTH
from eventstore.plan_validation.typed_checks import input_schema_problems
from eventstore.runs import current_action
from eventstore.state import ActionState, ExecutionState
from eventstore.templates import TemplateError, render
from orchestrator import ids
from orchestrator.context import CONTEXT_KINDS, template_context
from orchestrator.plan_memo import PlanMemo

__all__ = [
    "CHILD_ID_PREFIX",
    "NO_SUBPLANS",
    "ChildStart",
    "SubplanContext",
    "cancel_children",
    "child_execution_id",
    "child_outcome",
    "children_to_start",
    "may_be_child",
    "plan_refs_wanted",
    "start_child",
]

CHILD_ID_PREFIX = "sub_"
_MAX_MESSAGE_CHARS = 2000


class SubplanContext(NamedTuple):
    """What deciding a sub-plan action needs from outside: the registry's plans that the
    execution's pending ``plan_ref`` actions name (a name missing here is not registered),
    the depth limit, the largest event, and the ids of children about to start that the log
    already holds a ``plan.submitted`` for (with its sequence): taken by someone else."""

    registry: Mapping[str, Plan] = {}
    max_depth: int = DEFAULT_MAX_SUBPLAN_DEPTH
    max_event_bytes: int = DEFAULT_PLAN_LIMITS.max_event_bytes
    taken: Mapping[str, int] = {}


NO_SUBPLANS = SubplanContext()
"""No registry plans, the default limits."""


class ChildStart(NamedTuple):
    """A child decided now: the events to append and the parent action's state after them."""

    events: list[Event]
    state: ActionState


def child_execution_id(parent_id: str, key: str) -> str:
    """The id of the child that the action key ``key`` of execution ``parent_id`` starts:
    ``sub_`` and 32 hex digits of a hash of both (the same for every replica and retry)."""
    digest = hashlib.sha256(f"{parent_id}/{key}".encode()).hexdigest()
    return CHILD_ID_PREFIX + digest[:32]


def may_be_child(execution_id: str) -> bool:
    """Whether ``execution_id`` can be a sub-plan's child (every child's id starts with
    :data:`CHILD_ID_PREFIX`): the end of any other execution has no parent to tell."""
    return execution_id.startswith(CHILD_ID_PREFIX)


# Asked before every decision, and most plans have none.
_plan_refs: PlanMemo[tuple[tuple[str, str], ...]] = PlanMemo(
    lambda plan: tuple((a.id, a.plan_ref) for a in plan.actions if a.plan_ref is not None)
)
"""``(action id, registry name)`` of the plan's ``plan_ref`` actions."""

_subplan_actions: PlanMemo[tuple[Action, ...]] = PlanMemo(
    lambda plan: tuple(a for a in plan.actions if a.runs_plan)
)
"""The plan's actions that run a sub-plan."""


def children_to_start(state: ExecutionState | None) -> list[tuple[str, str]]:
    """``(action key, child id)`` of each child the execution's ready, unstarted sub-plan
    actions would start (what to look for in the log before deciding: see
    :class:`SubplanContext`)."""
    if state is None or state.plan is None or state.terminal:
        return []
    found = []
    for spec in _subplan_actions(state.plan):
        action = state.actions[spec.id]
        if action.status != "pending" or action.dispatched_at is not None:
            continue
        if all(state.actions[dep].finished for dep in spec.depends_on):
            key = action_key(spec.id, action.run)
            found.append((key, child_execution_id(state.execution_id, key)))
    return found


def plan_refs_wanted(state: ExecutionState) -> set[str]:
    """The registry names of the execution's ``plan_ref`` actions that have not started."""
    if state.plan is None or state.terminal:
        return set()
    return {
        name
        for action_id, name in _plan_refs(state.plan)
        if (action := state.actions.get(action_id)) is not None
        and action.status == "pending"
        and action.dispatched_at is None
    }


def _depth(state: ExecutionState) -> int:
    return 0 if state.parent is None else state.parent.depth


def start_child(
    spec: Action,
    state: ExecutionState,
    actions: Mapping[str, ActionState],
    *,
    cause: str,
    now: datetime,
    context: SubplanContext,
) -> ChildStart | ErrorInfo:
    """The decision that starts the child of the ready sub-plan action ``spec``, or the error
    that fails the action instead.

    Args:
        spec: the sub-plan action.
        state: the parent execution.
        actions: the action states to render ``input`` against (the decision's overlay).
        cause: the id of the event decided on.
        now: the moment of the decision (``{{now}}``).
        context: the registry's plans, the depth limit and the largest event.
    """
    parent = state.execution_id
    run = state.actions[spec.id].run
    key = action_key(spec.id, run)
    child = child_execution_id(parent, key)
    if child in context.taken:
        return ErrorInfo(
            message=f"sub-plan action {spec.id}: its child's id {child} was taken by a "
            f"plan.submitted the orchestrator did not write (sequence {context.taken[child]}); "
            "the child is not started",
            code=ErrorCode.SUBPLAN_FAILED,
        )
    depth = _depth(state) + 1
    if depth > context.max_depth:
        return ErrorInfo(
            message=f"sub-plan action {spec.id}: its child would run at depth {depth}, deeper "
            f"than the limit of {context.max_depth} (setting TEP_MAX_SUBPLAN_DEPTH)",
            code=ErrorCode.SUBPLAN_TOO_DEEP,
        )
    plan = spec.plan
    if plan is None:
        assert spec.plan_ref is not None
        plan = context.registry.get(spec.plan_ref)
        if plan is None:
            return ErrorInfo(
                message=f'sub-plan action {spec.id}: no plan named "{spec.plan_ref}" in the '
                f"plan registry (tep plan put {spec.plan_ref} PLAN.json)",
                code=ErrorCode.PLAN_NOT_FOUND,
            )
    try:
        given: Any = render(
            spec.input, template_context(state, actions, now=now), kinds=CONTEXT_KINDS
        )
    except TemplateError as exc:
        return ErrorInfo(
            message=f"sub-plan action {spec.id}: cannot build the child's input: {exc}",
            code=ErrorCode.INVALID_REQUEST,
        )
    if given is not None and not isinstance(given, dict):
        return ErrorInfo(
            message=f"sub-plan action {spec.id}: input renders to {type(given).__name__}, "
            "not an object",
            code=ErrorCode.INVALID_REQUEST,
        )
    child_input = {**plan.input, **(given or {})}
    label = f"sub-plan action {spec.id}"
    mismatches = input_schema_problems(child_input, plan.input_schema, label=label)
    if mismatches:
        return ErrorInfo(message="; ".join(mismatches), code=ErrorCode.INPUT_INVALID)
    plan = msgspec.structs.replace(plan, input=child_input)
    too_large = event_size_problem(plan, context.max_event_bytes)
    if too_large is not None:
        return ErrorInfo(message=f"{label}: {too_large}", code=ErrorCode.INVALID_REQUEST)
    started = ActionStarted(
        execution_id=parent,
        action_id=key,
        event_id=ids.child_started_id(parent, key),
        causation_id=cause,
        correlation_id=parent,
        attempt=1,
        child_execution_id=child,
    )
    submitted = PlanSubmitted(
        execution_id=child,
        event_id=ids.child_submitted_id(child),
        causation_id=cause,
        correlation_id=parent,
        plan=plan,
        parent=ParentLink(execution_id=parent, action_id=key, depth=depth),
    )
    after = ActionState(
        action_id=spec.id,
        status="running",
        attempts=1,
        queue=state.actions[spec.id].queue,
        dispatched_at=started.occurred_at,
        started_at=started.occurred_at,
        child_execution_id=child,
        run=run,
    )
    return ChildStart([started, submitted], after)


def _outputs(child: ExecutionState) -> dict[str, Any]:
    return {
        action_id: action.output
        for action_id, action in child.actions.items()
        if action.status == "completed" and action.output is not None
    }


def _bounded(message: str) -> str:
    if len(message) <= _MAX_MESSAGE_CHARS:
        return message
    return message[: _MAX_MESSAGE_CHARS - 3] + "..."


def child_outcome(
    parent: ExecutionState, child: ExecutionState, *, cause: str
) -> ActionCompleted | ActionFailed | None:
    """The outcome the ended ``child`` gives its parent's sub-plan action, or ``None`` when
    the action no longer waits for this child (it ended, was cancelled, or was reset by a
    retry).

    Args:
        parent: the parent execution, folded from its history.
        child: the child, ended.
        cause: the id of the child's end event.
    """
    link = child.parent
    if link is None or not child.terminal or link.execution_id != parent.execution_id:
        return None
    action_id = current_action(parent, link.action_id)
    action = None if action_id is None else parent.actions[action_id]
    if action is None or action.finished or action.child_execution_id != child.execution_id:
        return None
    common: dict[str, Any] = {
        "execution_id": parent.execution_id,
        "action_id": link.action_id,
        "event_id": ids.child_outcome_id(parent.execution_id, link.action_id),
        "causation_id": cause,
        "correlation_id": parent.execution_id,
        "attempt": 1,
    }
    name = child.execution_id
    if child.status == "completed":
        return ActionCompleted(**common, output={"execution_id": name, "actions": _outputs(child)})
    if child.status == "failed":
        why = child.error.message if child.error is not None else "no reason given"
        message = f"sub-plan execution {name} failed: {why}"
    else:
        reason = f": {child.cancel_reason}" if child.cancel_reason else ""
        message = f"sub-plan execution {name} was cancelled{reason}"
    error = ErrorInfo(message=_bounded(message), code=ErrorCode.SUBPLAN_FAILED)
    return ActionFailed(**common, error=error)


def cancel_children(state: ExecutionState, cause: str) -> list[Event]:
    """A cancel request for each child still running under one of the execution's actions."""
    reason = f"parent execution {state.execution_id} was cancelled"
    if state.cancel_reason:
        reason += f": {state.cancel_reason}"
    return [
        ExecutionCancelRequested(
            execution_id=action.child_execution_id,
            event_id=ids.child_cancel_id(action.child_execution_id),
            causation_id=cause,
            correlation_id=state.execution_id,
            reason=_bounded(reason),
        )
        for action in state.actions.values()
        if action.child_execution_id is not None and not action.finished
    ]
