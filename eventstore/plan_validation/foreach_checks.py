"""The for-each fields of an action: ``for_each``, ``concurrency`` and who may use ``{{item}}``
and ``{{index}}``. Pure.

``for_each`` is one whole template naming an array (``"{{actions.list.output.items}}"``,
``"{{input.users}}"``) or a literal JSON array of at most
:data:`~eventstore.items.MAX_ITEMS` elements, used as written. It runs only on actions an
executor runs: a ``wait``, ``sleep`` or ``plan`` action is run by the orchestrator.
``concurrency`` (1 to :data:`~eventstore.items.MAX_CONCURRENCY`, default
:data:`~eventstore.items.DEFAULT_CONCURRENCY`) goes with ``for_each`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from eventstore.items import MAX_CONCURRENCY, MAX_ITEMS, array_reference
from eventstore.plan import Action
from eventstore.plan_validation.bounds import Bound, bound_problems
from eventstore.templates import Reference, TemplateError, find_references

__all__ = ["FOR_EACH_CONCURRENCY", "for_each_problems", "item_reference_problem"]

FOR_EACH_CONCURRENCY = Bound(1, MAX_CONCURRENCY, "must be at least 1 (got {value})", "1000")
"""``concurrency`` of a for-each action."""

UpstreamCheck = Callable[[str, str, str], str | None]
"""``(where, reference, target) -> problem``: whether an action may read ``target``'s result."""

_ITEM_KINDS = frozenset({"item", "index"})
_SOURCES = frozenset({"input", "actions"})


def for_each_problems(label: str, action: Action, upstream: UpstreamCheck) -> Iterable[str]:
    """What is wrong with the for-each fields of ``action`` (any action).

    Args:
        label: how problems name the action, e.g. ``action "send"``.
        action: the action.
        upstream: the plan's check that an action referenced by a template is upstream.
    """
    source = action.for_each
    if source is None:
        if action.concurrency is not None:
            yield f"{label}: concurrency: only an action with for_each takes concurrency"
        return
    yield from bound_problems(label, "concurrency", action.concurrency, FOR_EACH_CONCURRENCY)
    if action.waits or action.runs_plan:
        runner = "the orchestrator" if action.waits else "the orchestrator as a sub-plan"
        yield (
            f'{label}: for_each: a "{action.type}" action is run by {runner}; for_each runs '
            "only actions an executor runs"
        )
    if isinstance(source, list):
        yield from _literal_problems(label, source)
        return
    expected = (
        '"{{actions.<id>.output.<path>}}" or "{{input.<path>}}" naming an array, or a literal array'
    )
    try:
        ref = array_reference(source)
    except TemplateError as exc:
        yield f"{label}: for_each: {exc}"
        return
    if ref is None:
        yield f'{label}: for_each: "{source}" must be one whole template such as {expected}'
    elif ref.kind not in _SOURCES:
        yield f"{label}: for_each: {{{{{ref.text}}}}} names no array; use {expected}"
    elif ref.kind == "actions" and ref.target is not None:
        if ref.path[:1] != ("output",):
            yield f"{label}: for_each: {{{{{ref.text}}}}} names no array; use {expected}"
        elif problem := upstream("for_each", f"template {{{{{ref.text}}}}}", ref.target):
            yield problem


def _literal_problems(label: str, values: list[object]) -> Iterable[str]:
    if len(values) > MAX_ITEMS:
        yield (
            f"{label}: for_each: {len(values)} items, above the limit of {MAX_ITEMS} items per "
            "action"
        )
        return
    try:
        templated = bool(find_references(values))
    except TemplateError:
        templated = True
    if templated:
        yield (
            f"{label}: for_each: a literal array is used as written, its templates ({{{{...}}}}) "
            "are not rendered; name an array with one template instead"
        )


def item_reference_problem(label: str, where: str, action: Action, ref: Reference) -> str | None:
    """Why ``action`` may not use the template ``ref`` found in ``where``; ``None`` if it may.

    ``{{item}}``, ``{{item.<path>}}`` and ``{{index}}`` exist only in an action with
    ``for_each``.
    """
    if ref.kind not in _ITEM_KINDS or action.for_each is not None:
        return None
    return (
        f"{label}: {where}: template {{{{{ref.text}}}}} is only available in an action with "
        "for_each"
    )
