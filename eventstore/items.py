"""How the events of a for-each action's items fold into its state. Pure.

Each item runs under its own action key (``<id>@<index>``, ``<id>~<run>@<index>``, see
:mod:`eventstore.action_keys`) and keeps its own attempts; the action itself is running from
its ``action.items.started`` until the orchestrator writes its one outcome.

The outcome of a for-each action that completed does not repeat its items' outputs: its
``action.completed`` carries ``{"tep_items": {"count": N}}`` (plus ``"failed": k`` with
``continue_on_error``), and the fold builds the action's output from the items' own
``action.completed`` events, which the log holds before it: ``{"items": [output_0, ...]}`` in
index order (a failed item's slot is ``null``) and, with ``continue_on_error``,
``"failed": [{"index": i, "error": {...}}, ...]``. The outputs then move from the items into
that output, so the state holds each once.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import msgspec

from eventstore.action_keys import action_key
from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionCompleted,
    ActionEvent,
    ActionExecuteRequested,
    ActionFailed,
    ActionItemsStarted,
    ActionStarted,
)
from eventstore.state import (
    FINISHED_ACTION_STATUSES,
    ActionState,
    ExecutionState,
    ItemsState,
    ItemState,
)
from eventstore.templates import TEMPLATE, Reference, find_references

__all__ = [
    "DEFAULT_CONCURRENCY",
    "ITEMS_MARKER",
    "MAX_CONCURRENCY",
    "MAX_ITEMS",
    "apply_item_event",
    "array_reference",
    "collected_output",
    "describe_items",
    "items_marker",
    "items_output",
    "items_started_problem",
    "start_items",
    "unfinished_item_keys",
    "unfinished_items",
]

MAX_ITEMS = 10_000
"""The most items one for-each action runs."""
DEFAULT_CONCURRENCY = 10
"""Items of one for-each action running at once when the plan does not say (``concurrency``)."""
MAX_CONCURRENCY = 1_000
"""The largest ``concurrency`` a plan may set."""
ITEMS_MARKER = "tep_items"
"""The key of a for-each action's ``action.completed`` output: build it from the items."""


@functools.lru_cache(maxsize=1024)
def array_reference(source: str) -> Reference | None:
    """The reference a ``for_each`` template consists of, or ``None`` when ``source`` is not
    one whole template (surrounding blanks aside).

    Raises:
        TemplateError: the template is malformed.
    """
    text = source.strip()
    if TEMPLATE.fullmatch(text) is None:
        return None
    references = find_references(text)
    return references[0] if len(references) == 1 else None


def items_started_problem(event: ActionItemsStarted) -> str | None:
    """Why the fold does not believe ``event`` (``None``: it may): a count or a concurrency
    outside the limits. (Only what the event itself shows: the projector folds without the
    plan, and both must agree.)"""
    if not 0 <= event.count <= MAX_ITEMS:
        return f"action.items.started with {event.count} items (the limit is {MAX_ITEMS})"
    if not 1 <= event.concurrency <= MAX_CONCURRENCY:
        return f"action.items.started with concurrency {event.concurrency}"
    return None


def start_items(action: ActionState, event: ActionItemsStarted) -> bool:
    """Fold ``action.items.started``: the action's items exist now (none dispatched yet).

    Returns:
        Whether the items started now (``False`` for a repeat or a finished action); the
        caller then counts the action running.
    """
    if action.finished or action.items is not None:
        return False
    action.items = ItemsState(count=event.count, concurrency=event.concurrency)
    action.dispatched_at = action.dispatched_at or event.occurred_at
    action.started_at = action.started_at or event.occurred_at
    return True


def _item(items: ItemsState, index: int) -> ItemState:
    listed = items.items
    while len(listed) <= index:
        listed.append(ItemState(index=len(listed)))
    return listed[index]


def apply_item_event(
    state: ExecutionState, action: ActionState, index: int, event: ActionEvent, sequence: int
) -> None:
    """Fold one event of item ``index`` of the for-each ``action``.

    Like an action's, an item's state changes only until it finished; events of an index the
    action does not have, or before its items started, change nothing.
    """
    del state, sequence  # the action's own status changes only with its outcome
    items = action.items
    if items is None or not 0 <= index < items.count:
        return
    if isinstance(event, ActionExecuteRequested):
        _item(items, index)
        items.dispatched = max(items.dispatched, index + 1)
        return
    item = _item(items, index)
    if item.status in FINISHED_ACTION_STATUSES:
        return  # a late event after the item's outcome (or its cancellation)
    match event:
        case ActionStarted(attempt=attempt):
            item.attempts = max(item.attempts, attempt)
            item.started_at = item.started_at or event.occurred_at
            item.status = "running"
        case ActionAttemptFailed(attempt=attempt, error=error):
            item.attempts = max(item.attempts, attempt)
            item.error = error
        case ActionCompleted(attempt=attempt, output=output, duration_ms=duration):
            item.attempts = max(item.attempts, attempt)
            item.output, item.error = output, None
            _finish(item, event, duration)
            item.status = "completed"
            items.completed += 1
        case ActionFailed(attempt=attempt, error=error):
            item.attempts = max(item.attempts, attempt)
            item.error = error
            _finish(item, event, None)
            item.status = "failed"
            items.failed += 1
        case ActionCancelled():
            item.completed_at = event.occurred_at
            item.status = "cancelled"
            items.cancelled += 1


def _finish(item: ItemState, event: ActionEvent, duration: float | None) -> None:
    item.completed_at = event.occurred_at
    if duration is None and item.started_at is not None:
        try:
            duration = round(_seconds(item.started_at, event.occurred_at) * 1000, 3)
        except ValueError:
            duration = None
    item.duration_ms = duration


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def items_marker(items: ItemsState, *, list_failures: bool) -> dict[str, Any]:
    """The output of a for-each action's ``action.completed`` (see the module docstring)."""
    summary: dict[str, Any] = {"count": items.count}
    if list_failures:
        summary["failed"] = items.failed
    return {ITEMS_MARKER: summary}


def collected_output(items: ItemsState, *, list_failures: bool) -> dict[str, Any]:
    """``{"items": [...]}`` (and ``"failed": [...]``) from the items, in index order."""
    outputs: list[Any] = [None] * items.count
    failed: list[dict[str, Any]] = []
    for item in items.items:
        if item.status == "completed":
            outputs[item.index] = item.output
        elif item.status == "failed" and list_failures:
            error = None if item.error is None else msgspec.to_builtins(item.error)
            failed.append({"index": item.index, "error": error})
    document: dict[str, Any] = {"items": outputs}
    if list_failures:
        document["failed"] = failed
    return document


def items_output(action: ActionState, output: dict[str, Any]) -> dict[str, Any]:
    """The output an ``action.completed`` gives ``action``: ``output`` itself, or for a
    for-each action's marker its items' outputs, moved out of the items."""
    items = action.items
    summary = output.get(ITEMS_MARKER) if items is not None else None
    if items is None or len(output) != 1 or not isinstance(summary, dict):
        return output
    document = collected_output(items, list_failures="failed" in summary)
    for item in items.items:
        item.output = None
    return document


def unfinished_items(action: ActionState) -> list[int]:
    """The indexes of the action's dispatched items that have not finished, in order."""
    items = action.items
    if items is None or not items.in_flight:
        return []
    return [
        item.index
        for item in items.items[: items.dispatched]
        if item.status not in FINISHED_ACTION_STATUSES
    ]


def unfinished_item_keys(action: ActionState) -> list[str]:
    """The keys of the action's dispatched items that have not finished (what a cancellation
    must stop), in index order."""
    return [action_key(action.action_id, action.run, i) for i in unfinished_items(action)]


def describe_items(items: ItemsState) -> str:
    """``340/500 items done, 2 failed, 20 in flight`` (what ``tep status`` shows)."""
    parts = [f"{items.finished}/{items.count} items done"]
    if items.failed:
        parts.append(f"{items.failed} failed")
    if items.cancelled:
        parts.append(f"{items.cancelled} cancelled")
    if items.in_flight:
        parts.append(f"{items.in_flight} in flight")
    return ", ".join(parts)
