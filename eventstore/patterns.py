"""Builders for common plan shapes. Pure; every result is a validated :class:`Plan`.

Each builder takes :class:`~eventstore.plan.Action` values (their ``depends_on``, ``when`` and
retry settings are extended, not discarded), wires them together and runs the plan through
:func:`~eventstore.plan_validation.parse_plan`, so what it returns can be submitted as is.

Example:
    >>> from eventstore.plan import Action, RequestSpec
    >>> def call(action_id: str) -> Action:
    ...     return Action(id=action_id, request=RequestSpec(url=f"http://svc/{action_id}"))
    >>> plan = sequential_pipeline("etl", [call("extract"), call("transform"), call("load")])
    >>> [a.depends_on for a in plan.actions]
    [[], ['extract'], ['transform']]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from eventstore.conditions import negate_condition
from eventstore.errors import TepError
from eventstore.plan import Action, Condition, Plan, QueueConfig, RetryPolicy
from eventstore.plan_validation import parse_plan

__all__ = [
    "PatternError",
    "batch",
    "conditional_branch",
    "fan_out_fan_in",
    "negate_condition",
    "retry_with_fallback",
    "sequential_pipeline",
]

T = TypeVar("T")


class PatternError(TepError, ValueError):
    """A builder's arguments cannot make the pattern (before any plan is validated)."""


def _after(action: Action, *dependencies: str) -> Action:
    """``action`` with ``dependencies`` appended to its ``depends_on`` (no duplicates)."""
    merged = list(dict.fromkeys([*action.depends_on, *dependencies]))
    return msgspec.structs.replace(action, depends_on=merged)


def _finish(
    plan_id: str,
    actions: Sequence[Action],
    input: Mapping[str, Any] | None,
    queues: Mapping[str, QueueConfig] | None = None,
) -> Plan:
    plan = Plan(
        id=plan_id, actions=list(actions), input=dict(input or {}), queues=dict(queues or {})
    )
    return parse_plan(plan)


def sequential_pipeline(
    plan_id: str, steps: Sequence[Action], *, input: Mapping[str, Any] | None = None
) -> Plan:
    """Run ``steps`` one after another: each depends on the one before.

    A step can use the previous step's result as ``{{actions.<previous>.output...}}``; any
    earlier step is upstream too.

    Raises:
        PlanValidationError: the steps do not make a valid plan (e.g. duplicate ids).
    """
    chained = [
        _after(step, steps[index - 1].id) if index else step for index, step in enumerate(steps)
    ]
    return _finish(plan_id, chained, input)


def fan_out_fan_in(
    plan_id: str,
    branches: Sequence[Action],
    join: Action,
    *,
    source: Action | None = None,
    input: Mapping[str, Any] | None = None,
) -> Plan:
    """Run ``branches`` in parallel (after ``source``, if given), then ``join`` after them all.

    ``join`` may reference every branch's output. If a branch fails, ``join`` is skipped unless
    it has ``run_if="always"`` (then it runs however the branches ended, and handles their
    failures).

    Example:
        >>> from eventstore.plan import Action
        >>> plan = fan_out_fan_in(
        ...     "scatter",
        ...     [Action(id=f"part-{n}", type="noop") for n in range(3)],
        ...     Action(id="merge", type="noop"),
        ... )
        >>> plan.action("merge").depends_on
        ['part-0', 'part-1', 'part-2']

    Raises:
        PlanValidationError: the actions do not make a valid plan.
    """
    head = [source] if source is not None else []
    fanned = [_after(branch, source.id) if source else branch for branch in branches]
    joined = _after(join, *(branch.id for branch in branches))
    return _finish(plan_id, [*head, *fanned, joined], input)


def conditional_branch(
    plan_id: str,
    check: Action,
    condition: Condition,
    if_true: Action,
    if_false: Action | None = None,
    *,
    input: Mapping[str, Any] | None = None,
) -> Plan:
    """Run ``check``, then ``if_true`` when ``condition`` holds, else ``if_false``.

    ``condition.path`` usually points into the check's result, e.g.
    ``Condition(path="actions.check.output.approved", truthy=True)``. The branch not taken is
    skipped by its condition, so the execution still completes. ``if_false`` runs under
    :func:`~eventstore.conditions.negate_condition` of ``condition``; pass ``if_false`` with its
    own ``when`` to choose another test (required for ``in`` conditions).

    Raises:
        PlanValidationError: the actions do not make a valid plan.
        ConditionError: ``condition`` cannot be negated and ``if_false`` has no ``when``.
    """
    true_branch = msgspec.structs.replace(_after(if_true, check.id), when=condition)
    actions = [check, true_branch]
    if if_false is not None:
        when = if_false.when if if_false.when is not None else negate_condition(condition)
        actions.append(msgspec.structs.replace(_after(if_false, check.id), when=when))
    return _finish(plan_id, actions, input)


def retry_with_fallback(
    plan_id: str,
    primary: Action,
    fallback: Action,
    retry: RetryPolicy,
    *,
    input: Mapping[str, Any] | None = None,
) -> Plan:
    """Try ``primary`` with ``retry``; run ``fallback`` only if it still failed.

    ``primary`` gets the retry policy and ``fallback`` as its error route (``on_error``), and
    ``fallback`` depends on it: the fallback runs only once the primary failed for good, and
    then handles its failure; when the primary succeeds, the fallback is skipped
    (``no_failure``). Either way the execution completes (unless the fallback fails too). The
    fallback sees the primary's error as ``{{actions.<primary>.error.code}}`` / ``.message``.

    Raises:
        PlanValidationError: the actions do not make a valid plan.
    """
    routes = list(dict.fromkeys([*primary.on_error, fallback.id]))
    first = msgspec.structs.replace(primary, retry=retry, on_error=routes)
    return _finish(plan_id, [first, _after(fallback, primary.id)], input)


def batch(
    plan_id: str,
    items: Sequence[T],
    chunk_size: int,
    make_action: Callable[[int, list[T]], Action],
    *,
    sequential: bool = False,
    then: Action | None = None,
    concurrency_limit: int | None = None,
    input: Mapping[str, Any] | None = None,
) -> Plan:
    """Split ``items`` into chunks of ``chunk_size`` and make one action per chunk.

    Args:
        plan_id: the plan's id.
        items: what to process.
        chunk_size: items per action (the last chunk may be smaller).
        make_action: ``(chunk_index, chunk) -> Action``; ids must be unique, e.g.
            ``f"chunk-{chunk_index}"``.
        sequential: chain the chunks one after another instead of running them in parallel.
        then: an action to run after every chunk (a fan-in), if any.
        concurrency_limit: at most this many chunk actions of this execution run at once
            (the plan's cap on the chunks' queue; all chunks must share one queue).
        input: the plan's input.

    Example:
        >>> from eventstore.plan import Action
        >>> plan = batch("emails", list(range(5)), 2,
        ...              lambda n, chunk: Action(id=f"send-{n}", type="noop", input=chunk))
        >>> [a.input for a in plan.actions]
        [[0, 1], [2, 3], [4]]

    Raises:
        PatternError: ``chunk_size`` below 1, or chunks on several queues with a concurrency
            limit.
        PlanValidationError: the actions do not make a valid plan.
    """
    if chunk_size < 1:
        raise PatternError(f"chunk_size must be at least 1 (got {chunk_size})")
    chunks = [list(items[start : start + chunk_size]) for start in range(0, len(items), chunk_size)]
    actions = [make_action(index, chunk) for index, chunk in enumerate(chunks)]
    if sequential:
        actions = [
            _after(action, actions[index - 1].id) if index else action
            for index, action in enumerate(actions)
        ]
    queues: dict[str, QueueConfig] = {}
    if concurrency_limit is not None and actions:
        names = {action.queue_name for action in actions}
        if len(names) != 1:
            raise PatternError(
                f"a concurrency limit needs one queue for all chunks (got {sorted(names)})"
            )
        queues[names.pop()] = QueueConfig(concurrency_limit=concurrency_limit)
    if then is not None:
        actions.append(_after(then, *(action.id for action in actions)))
    return _finish(plan_id, actions, input, queues)
