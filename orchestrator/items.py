"""Deciding for-each actions: their items, at most ``concurrency`` at once, and their one
outcome. Pure.

A ready for-each action resolves its array (a literal, or a whole template such as
``{{actions.list.output.items}}``, at most :data:`~eventstore.items.MAX_ITEMS` elements; else it
fails with ``invalid_request`` naming the type or the limit), records ``action.items.started``
and dispatches its first items: one ``action.execute.requested`` per item under the item's
key (``<key>@<index>``), rendered with ``{{item}}`` and ``{{index}}``. Each item's outcome
dispatches the next ones, in index order, so at most ``concurrency`` are in flight (and no more
than the plan's cap on the action's queue allows: an item counts as one action of its queue).

The action's own outcome is decided with its last item's: completed (its output built from the
items, see :mod:`eventstore.items`) once every item finished, or, without
``continue_on_error``, failed with ``item_failed`` at the first failed item, whose unfinished
siblings are cancelled in the same decision. While the execution is failing for another
action, no new item starts; once none is in flight the action is cancelled.

Nothing is kept between decisions: the array is resolved again from the (finished, immutable)
upstream output or plan input each time, a lookup that costs no copy, and what was dispatched
is in the state's counters, so each outcome costs the same, however many items there are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import msgspec

from eventstore.action_keys import action_key, parse_action_key
from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionFailed,
    ActionItemsStarted,
    ErrorInfo,
    Event,
)
from eventstore.items import (
    DEFAULT_CONCURRENCY,
    MAX_ITEMS,
    array_reference,
    collected_output,
    items_marker,
    unfinished_items,
)
from eventstore.payload_reading import PayloadUnavailableError, expand
from eventstore.plan import Action
from eventstore.plan_validation.document import json_type
from eventstore.state import ActionState, ActionStatus, ExecutionState, ItemsState, ItemState
from eventstore.templates import MISSING, TemplateError, action_view, resolve_path
from orchestrator import ids
from orchestrator.dispatch import build_request
from orchestrator.ending import EXECUTION_FAILED_REASON
from orchestrator.graph import graph_of

__all__ = ["Deciding", "ItemsStep", "Room", "item_outcome", "resolve_items", "start_items"]

Room = Callable[[str], int | None]
"""How many more actions (or items) of a queue the plan's cap lets start now; ``None``: no cap."""


class ItemsStep(NamedTuple):
    """What one decision does to a for-each action.

    Attributes:
        events: to append, in order.
        state: the action as the decision leaves it (for the decision's overlay).
        dispatched: items dispatched now (and still in flight).
        freed: items dispatched before and cancelled now (their queue's slots are free again).
    """

    events: list[Event]
    state: ActionState
    dispatched: int
    freed: int


def resolve_items(
    spec: Action, state: ExecutionState, actions: Mapping[str, ActionState]
) -> list[Any]:
    """The array ``spec.for_each`` names, as it is now.

    Raises:
        TemplateError: it resolves to nothing, to something else than an array, or to more
            than :data:`~eventstore.items.MAX_ITEMS` elements.
        PayloadNeeded: it is (or lies in) a value stored by reference that is not at hand.
    """
    source = spec.for_each
    if isinstance(source, list):
        values: Any = source
    else:
        ref = array_reference(str(source))
        if ref is None:
            raise TemplateError(f"for_each {source!r} is not one template")
        root: Any = MISSING
        if ref.kind == "input":
            root = state.input
        elif ref.kind == "actions" and ref.target is not None and ref.target in actions:
            root = action_view(actions[ref.target])
        values = MISSING if root is MISSING else resolve_path(root, ref.path)
        if values is MISSING:
            raise TemplateError(f"for_each {source} resolves to nothing")
        try:
            values = expand(values)  # an array stored by reference
        except PayloadUnavailableError as exc:
            raise TemplateError(f"for_each {source}: {exc}") from None
    if not isinstance(values, list):
        raise TemplateError(f"for_each {source} is {json_type(values)}, not an array")
    if len(values) > MAX_ITEMS:
        raise TemplateError(
            f"for_each {source} has {len(values)} items, above the limit of {MAX_ITEMS} items "
            "per action"
        )
    return values


class Deciding(Protocol):
    """What a decision in progress shows the for-each rules."""

    @property
    def state(self) -> ExecutionState:
        """The execution as folded so far."""

    @property
    def view(self) -> Mapping[str, ActionState]:
        """The actions as decided so far (the state with the decision's overlay)."""

    @property
    def cause(self) -> str:
        """The id of the event decided on."""

    @property
    def now(self) -> datetime:
        """The moment of the decision."""


def start_items(decision: Deciding, spec: Action, room: int | None) -> ItemsStep:
    """Start a ready for-each action: ``action.items.started`` and its first items, or its
    failure (``invalid_request``) when its array cannot be resolved.

    Args:
        decision: the decision in progress.
        spec: the action.
        room: how many more actions of its queue the plan's cap lets start (``None``: no cap).
    """
    state, actions = decision.state, decision.view
    base = actions[spec.id]
    try:
        values = resolve_items(spec, state, actions)
    except TemplateError as exc:
        progress = _Progress(decision, spec, base, None)
        message = f"cannot run for_each: {exc}"
        return progress.fail(ErrorInfo(message=message, code=ErrorCode.INVALID_REQUEST))
    key = action_key(spec.id, base.run)
    started = ActionItemsStarted(
        execution_id=state.execution_id,
        action_id=key,
        event_id=ids.items_started_id(state.execution_id, key),
        causation_id=decision.cause,
        correlation_id=state.execution_id,
        count=len(values),
        concurrency=spec.concurrency or DEFAULT_CONCURRENCY,
    )
    items = ItemsState(count=started.count, concurrency=started.concurrency)
    running = msgspec.structs.replace(
        base,
        status="running",
        queue=spec.queue_name,
        dispatched_at=started.occurred_at,
        started_at=started.occurred_at,
        items=items,
    )
    progress = _Progress(decision, spec, running, items)
    progress.events.append(started)
    progress.fill(values, room)
    return progress.settle(stop=False)


def item_outcome(decision: Deciding, key: str, room: Room, stop: bool) -> ItemsStep | None:
    """After the outcome of the item ``key`` (already folded into the state): the next items,
    or the action's outcome.

    Args:
        decision: the decision in progress.
        key: the item's key.
        room: the plan's cap on a queue, as room left now.
        stop: the execution is failing: start no new item (unless the action is an error
            route, which runs because something failed).

    Returns:
        ``None`` when ``key`` is no item of a running for-each action's current run.
    """
    parsed = parse_action_key(key)
    plan = decision.state.plan
    spec = None if parsed is None or plan is None else graph_of(plan).specs.get(parsed.action_id)
    if parsed is None or parsed.item is None or spec is None:
        return None
    base = decision.view[spec.id]
    if base.items is None or base.finished or parsed.run != base.run:
        return None
    items = msgspec.structs.replace(base.items)
    stop = stop and spec.run_if == "success"
    progress = _Progress(decision, spec, base, items)
    if items.failed and not spec.continue_on_error:
        return progress.settle(stop=stop)
    if not stop and items.dispatched < items.count:
        try:
            values = resolve_items(spec, decision.state, decision.view)
        except TemplateError as exc:  # pragma: no cover - it resolved when the items started
            return progress.fail(ErrorInfo(message=str(exc), code=ErrorCode.INVALID_REQUEST))
        progress.fill(values, room(spec.queue_name))
    return progress.settle(stop=stop)


class _Progress:
    """One for-each action within one decision; ``items`` is the decision's copy of its
    counters (the item list is shared with the state until this decision must change it), or
    ``None`` when its items never started."""

    def __init__(
        self, decision: Deciding, spec: Action, base: ActionState, items: ItemsState | None
    ) -> None:
        self.decision = decision
        self.spec = spec
        self.base = base
        self.items = items or ItemsState(count=0, concurrency=1)
        self.started = items is not None
        self.execution = decision.state.execution_id
        self.key = action_key(spec.id, base.run)
        self.events: list[Event] = []
        self.requested: list[int] = []
        self.own_list = False

    def _common(self, key: str, event_id: str) -> dict[str, Any]:
        return {
            "execution_id": self.execution,
            "action_id": key,
            "event_id": event_id,
            "causation_id": self.decision.cause,
            "correlation_id": self.execution,
        }

    def fill(self, values: list[Any], room: int | None) -> None:
        """Dispatch the next items in index order while fewer than ``concurrency`` are in
        flight (and ``room`` allows). An item whose request cannot be built fails at once."""
        spec, items = self.spec, self.items
        while items.dispatched < items.count and items.in_flight < items.concurrency:
            if room is not None and len(self.requested) >= room:
                return
            index = items.dispatched
            item_key = action_key(spec.id, self.base.run, index)
            items.dispatched += 1
            try:
                request = build_request(
                    spec,
                    self.decision.state,
                    event_id=ids.requested_id(self.execution, item_key),
                    causation_id=self.decision.cause,
                    actions=self.decision.view,
                    key=item_key,
                    now=self.decision.now,
                    item=(index, values[index]),
                )
            except TemplateError as exc:
                message = f"cannot build the request of item {index}: {exc}"
                error = ErrorInfo(message=message, code=ErrorCode.INVALID_REQUEST)
                self._item_failed(index, item_key, error)
                if not spec.continue_on_error:
                    return
                continue
            self.events.append(request)
            self.requested.append(index)

    def _item_failed(self, index: int, item_key: str, error: ErrorInfo) -> None:
        common = self._common(item_key, ids.dispatch_failed_id(self.execution, item_key))
        self.events.append(ActionFailed(**common, attempt=0, error=error))
        if not self.own_list:  # copy on write: the state's list is not this decision's
            self.items.items = list(self.items.items)
            self.own_list = True
        listed = self.items.items
        while len(listed) <= index:
            listed.append(ItemState(index=len(listed)))
        listed[index] = ItemState(index=index, status="failed", error=error)
        self.items.failed += 1

    def settle(self, *, stop: bool) -> ItemsStep:
        """The action's outcome if this decision reaches it; the step either way."""
        items = self.items
        if items.failed and not self.spec.continue_on_error:
            index, error = _first_failure(items)
            detail = f"{error.code}: {error.message}" if error is not None else "failed"
            message = f"item {index} of {items.count} failed: {detail}"
            return self.fail(ErrorInfo(message=message, code=ErrorCode.ITEM_FAILED))
        if items.finished == items.count:
            return self._complete()
        if stop and items.in_flight == 0:
            return self._cancel()
        return self._step(self.base.status)

    def fail(self, error: ErrorInfo) -> ItemsStep:
        """Fail the action: its unfinished items are cancelled first."""
        freed = self._cancel_items()
        if self.started:
            common = self._common(self.key, ids.items_outcome_id(self.execution, self.key))
            self.events.append(ActionFailed(**common, attempt=1, error=error))
        else:  # as any action whose request cannot be built
            common = self._common(self.key, ids.dispatch_failed_id(self.execution, self.key))
            self.events.append(ActionFailed(**common, attempt=0, error=error))
        return self._step("failed", error=error, freed=freed)

    def _complete(self) -> ItemsStep:
        listed = self.spec.continue_on_error
        common = self._common(self.key, ids.items_outcome_id(self.execution, self.key))
        output = items_marker(self.items, list_failures=listed)
        self.events.append(ActionCompleted(**common, attempt=1, output=output))
        document = collected_output(self.items, list_failures=listed)
        return self._step("completed", output=document)

    def _cancel(self) -> ItemsStep:
        common = self._common(self.key, ids.cancelled_id(self.execution, self.key))
        self.events.append(ActionCancelled(**common, reason=EXECUTION_FAILED_REASON))
        return self._step("cancelled")

    def _cancel_items(self) -> int:
        """Cancel the dispatched items that have not finished; how many of them were
        dispatched before this decision."""
        requested = set(self.requested)
        earlier = set(unfinished_items(self.base)) - requested
        for index in sorted(earlier | requested):
            item_key = action_key(self.spec.id, self.base.run, index)
            common = self._common(item_key, ids.cancelled_id(self.execution, item_key))
            self.events.append(ActionCancelled(**common, reason="another item failed"))
        self.items.cancelled += len(earlier) + len(requested)
        self.requested.clear()  # cancelled as soon as dispatched: they hold no slot
        return len(earlier)

    def _step(
        self,
        status: ActionStatus,
        *,
        output: dict[str, Any] | None = None,
        error: ErrorInfo | None = None,
        freed: int = 0,
    ) -> ItemsStep:
        state = msgspec.structs.replace(
            self.base, status=status, items=self.items, output=output, error=error
        )
        if status != self.base.status and status != "running":
            state.completed_at = self.events[-1].occurred_at
        return ItemsStep(self.events, state, len(self.requested), freed)


def _first_failure(items: ItemsState) -> tuple[int, ErrorInfo | None]:
    for item in items.items:
        if item.status == "failed":
            return item.index, item.error
    return -1, None  # pragma: no cover - called only when an item failed
