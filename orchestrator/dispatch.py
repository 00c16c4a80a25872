"""Turning a ready action into an ``action.execute.requested`` event. Pure.

Plan input, upstream results and the execution's variables (``{{execution.id}}``,
``{{execution.run}}``, ``{{plan.id}}``, ``{{now}}``) are substituted now; ``{{secrets.*}}`` and
``{{env.*}}`` stay as written for the executor to resolve at call time, so a secret never
enters the log. The action's ``output_schema`` goes along for the executor to check.
A value stored by reference that a template takes whole (``{{actions.fetch.output}}`` of a
large output) stays a reference in the request, and the executor fetches it at call time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from eventstore.events import ActionExecuteRequested
from eventstore.plan import Action, RequestSpec, RetryPolicy
from eventstore.state import ActionState, ExecutionState
from eventstore.templates import as_text, render
from orchestrator.context import CONTEXT_KINDS, template_context

__all__ = ["DISPATCH_KINDS", "build_request", "render_request"]

DISPATCH_KINDS = CONTEXT_KINDS
_DEFAULT_RETRY = RetryPolicy()


def render_request(request: RequestSpec, context: Mapping[str, Any]) -> RequestSpec:
    """``request`` with input and action references substituted.

    URL, header and query values are always text (a reference to a number renders as ``42``);
    ``json`` keeps JSON types (``"{{input.count}}"`` alone becomes the number itself).

    Raises:
        TemplateError: a reference resolves to nothing.
    """

    def text(value: str) -> str:
        return as_text(render(value, context, kinds=DISPATCH_KINDS)) if "{{" in value else value

    def texts(values: dict[str, str]) -> dict[str, str]:
        if not any("{{" in k or "{{" in v for k, v in values.items()):
            return values
        return {text(k): text(v) for k, v in values.items()}

    return msgspec.structs.replace(
        request,
        url=text(request.url),
        headers=texts(request.headers),
        query=texts(request.query),
        json=render(request.json, context, kinds=DISPATCH_KINDS),
        body=None if request.body is None else text(request.body),
    )


def build_request(
    action: Action,
    state: ExecutionState,
    *,
    event_id: str,
    causation_id: str | None = None,
    actions: Mapping[str, ActionState] | None = None,
    key: str | None = None,
    now: datetime | None = None,
    item: tuple[int, Any] | None = None,
) -> ActionExecuteRequested:
    """The dispatch event for ``action`` with every input/action reference resolved.

    Args:
        action: the plan's action.
        state: the execution (input and upstream results).
        event_id: the event's (deterministic) id.
        causation_id: the id of the event that made the action ready.
        actions: action states to read instead of ``state.actions``.
        key: the action key the request is for (default: the action's id, its first run).
        now: the moment of the decision, rendered for ``{{now}}``.
        item: ``(index, element)`` when the request is for an item of a for-each action.

    Raises:
        TemplateError: a reference resolves to nothing (e.g. a field the upstream output lacks).
    """
    context = template_context(state, actions, now=now, item=item)
    request = None if action.request is None else render_request(action.request, context)
    timeout_s = action.timeout_s
    if timeout_s is None and request is not None:
        timeout_s = request.timeout_s
    return ActionExecuteRequested(
        execution_id=state.execution_id,
        action_id=action.id if key is None else key,
        event_id=event_id,
        causation_id=causation_id,
        correlation_id=state.execution_id,
        action_type=action.type,
        queue=action.queue_name,
        request=request,
        input=render(action.input, context, kinds=DISPATCH_KINDS),
        retry=action.retry or _DEFAULT_RETRY,
        timeout_s=timeout_s,
        output_schema=msgspec.UNSET if action.output_schema is None else action.output_schema,
    )
