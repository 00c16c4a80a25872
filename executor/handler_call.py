"""One call of a handler and the outcome event it stands for.

The call runs under the attempt's time limit with ``{{secrets.*}}`` resolved, each secret only
where it is granted (else the attempt fails with ``secret_not_allowed`` before any call);
whatever it returns or raises becomes ``action.completed``, ``action.attempt.failed`` or
``action.failed``, with secrets scrubbed from the output and the error, outputs above the hard
cap (:func:`output_limits`) failing with ``output_too_large`` and outputs that do not match the
action's ``output_schema`` with ``output_invalid`` (see :mod:`executor.output_check`). Values
the request holds by reference are fetched for the call; an output above the inline limit is
stored by reference before its event is appended (:mod:`executor.attempt`).
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import msgspec

from eventstore.config import PAYLOAD_ENVELOPE_BYTES
from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionAttemptFailed,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
)
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.payloads import PayloadStore
from eventstore.payloads import PayloadLimits, format_size
from eventstore.plan import DEFAULT_ACTION_TYPE, RequestSpec
from executor.classify import error_for_exception
from executor.config import ExecutorConfig
from executor.errors import ActionError, NonRetryableError
from executor.handlers import Handler, HandlerResult, current_attempt, set_current_attempt
from executor.outcome import completed_event, failure_event
from executor.output import checked_size, output_from_value
from executor.output_check import check_output
from executor.request_payloads import with_payloads
from executor.secret_grants import Destination
from executor.secrets import SecretScope

__all__ = ["Outcome", "call_handler", "outcome_event", "output_limits"]

Outcome = ActionCompleted | ActionAttemptFailed | ActionFailed
"""The event that ends an attempt."""


def output_limits(log: EventLog, config: ExecutorConfig) -> PayloadLimits:
    """Which outputs travel inline and which the payload bucket takes, and the largest kept.

    The largest is the hard cap ``TEP_PAYLOAD_MAX_BYTES``, or the executor's lower
    ``max_output_bytes``; inline are outputs up to ``TEP_PAYLOAD_INLINE_BYTES`` that also fit
    one message of this server beside their event.
    """
    limits = log.settings.payload_limits
    message_limit = min(
        log.nc.max_payload or log.settings.max_msg_bytes, log.settings.max_msg_bytes
    )
    largest = min(config.max_output_bytes or limits.max_bytes, limits.max_bytes)
    inline = min(limits.inline_bytes, message_limit - PAYLOAD_ENVELOPE_BYTES, largest)
    return msgspec.structs.replace(limits, inline_bytes=inline, max_bytes=largest)


async def call_handler(
    handler: Handler | None,
    request: ActionExecuteRequested,
    scope: SecretScope,
    *,
    timeout_s: float,
    queue: str,
    resolve_secrets: bool,
    payloads: PayloadStore | None = None,
) -> HandlerResult | ActionError:
    """Run ``handler`` on ``request`` within ``timeout_s``; errors are returned, not raised.

    Args:
        handler: the handler of the request's action type (``None``: there is none).
        request: the request.
        scope: resolves ``{{secrets.*}}`` and remembers what it resolved, for scrubbing.
        timeout_s: the attempt's time limit.
        queue: the queue served (named in the error of an unknown type).
        resolve_secrets: whether the request mentions secrets at all.
        payloads: where values the request holds by reference are read (after secrets were
            resolved, so a stored value's text is never taken for a template); ``None``: the
            request holds none.
    """
    if handler is None:
        return NonRetryableError(
            f"no handler for action type {request.action_type!r} on queue {queue!r}",
            code=ErrorCode.UNKNOWN_ACTION_TYPE,
        )
    try:
        if resolve_secrets:
            request = _with_secrets(request, scope)
        with anyio.fail_after(timeout_s):
            if payloads is not None:
                request = await with_payloads(request, payloads)
            value = await handler(request)
    except Exception as exc:
        return error_for_exception(exc, timeout_s=timeout_s)
    if isinstance(value, HandlerResult):
        return value
    return HandlerResult(output=value)


def outcome_event(
    request: ActionExecuteRequested,
    attempt: int,
    result: HandlerResult | ActionError,
    *,
    duration_ms: float,
    scope: SecretScope,
    max_output_bytes: int,
    rng: random.Random | None = None,
) -> Outcome:
    """The event that records ``result`` as attempt ``attempt`` of ``request``."""
    if isinstance(result, HandlerResult):
        try:
            output = scope.scrub(output_from_value(result.output))
            size = checked_size(output)
            if size > max_output_bytes:
                raise NonRetryableError(
                    f"output is {size} bytes; the limit is {max_output_bytes} bytes "
                    f"({format_size(max_output_bytes)})",
                    code=ErrorCode.OUTPUT_TOO_LARGE,
                )
            check_output(request.output_schema, output)
        except ActionError as exc:
            result = exc
        else:
            return completed_event(
                request,
                attempt,
                output,
                duration_ms=duration_ms,
                status_code=result.status_code,
                headers=scope.scrub(dict(result.headers)),
            )
    if scope.active:
        result.message = scope.scrub_text(result.message)
    return failure_event(request, attempt, result, rng=rng)


def _with_secrets(request: ActionExecuteRequested, scope: SecretScope) -> ActionExecuteRequested:
    """The request with ``{{secrets.*}}`` substituted in its request spec and input, each
    secret granted to where the request goes; the attempt then names the secrets it carries."""
    spec = request.request
    document = {
        "request": msgspec.to_builtins(spec) if spec is not None else None,
        "input": request.input,
    }
    resolved: Any = scope.resolve(
        document, destination=lambda rendered: _destination(request.action_type, rendered)
    )
    if resolved is document:
        return request
    set_current_attempt(msgspec.structs.replace(current_attempt(), secrets=scope.names))
    if spec is not None:
        spec = msgspec.convert(resolved["request"], RequestSpec)
    return msgspec.structs.replace(request, request=spec, input=resolved["input"])


def _destination(action_type: str, rendered: dict[str, Any]) -> Destination:
    """Where a request goes: the URL's host for ``http``, else the type's Python handler."""
    if action_type != DEFAULT_ACTION_TYPE:
        return Destination.handler(action_type)
    spec = rendered["request"]
    url = spec.get("url") if isinstance(spec, dict) else None
    if not isinstance(url, str):
        raise ValueError("the http request has no URL")
    return Destination.of_url(url)
