"""Values a request holds by reference, fetched for the call.

A template that takes a large upstream output whole (``"json": "{{actions.fetch.output}}"``)
leaves its reference in the request (see :mod:`orchestrator.dispatch`): the executor fetches
the value from the payload bucket right before the call, so the target or handler gets the
value itself. Secrets are resolved before this, so the text of a stored value is never taken
for a ``{{secrets.*}}`` template.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore.error_codes import ErrorCode
from eventstore.events import ActionExecuteRequested
from eventstore.jetstream.payloads import PayloadStore
from eventstore.payloads import PayloadCorruptError, PayloadMissingError, find_refs
from executor.errors import NonRetryableError

__all__ = ["holds_references", "with_payloads"]


def holds_references(request: ActionExecuteRequested) -> bool:
    """Whether the request's JSON body or input holds a value by reference."""
    body = request.request.json if request.request is not None else None
    return bool(find_refs([body, request.input]))


async def with_payloads(
    request: ActionExecuteRequested, store: PayloadStore
) -> ActionExecuteRequested:
    """The request with every value its JSON body and input hold by reference written out.

    Raises:
        NonRetryableError: ``invalid_request`` when a value cannot be read (expired with
            the log, or corrupt).
    """
    if not holds_references(request):
        return request
    spec = request.request
    try:
        document: Any = await store.resolve(
            {"json": spec.json if spec is not None else None, "input": request.input}
        )
    except (PayloadMissingError, PayloadCorruptError) as exc:
        raise NonRetryableError(
            f"a value the request refers to cannot be read: {exc}", code=ErrorCode.INVALID_REQUEST
        ) from exc
    if spec is not None:
        spec = msgspec.structs.replace(spec, json=document["json"])
    return msgspec.structs.replace(request, request=spec, input=document["input"])
