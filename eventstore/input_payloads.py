"""A plan's large input, taken out of the plan document before it is validated. Pure.

A plan document must fit ``TEP_MAX_PLAN_BYTES`` and its ``plan.submitted`` event one message;
its ``input`` need not. :func:`detach_input` replaces an input above the inline limit with its
reference (see :mod:`eventstore.payloads`) and returns the payload for the client to store
before it publishes the plan; the plan is then validated with the reference in the input's
place. The input is checked first for what the plan's validation would check in it (nesting,
finite numbers, the plan's ``input_schema``): an input with a problem stays in the document,
so the validation reports the problem as for any plan.

Example:
    >>> document, payload = detach_input(raw, settings.payload_limits, max_depth=64)
    ... # doctest: +SKIP
    >>> if payload is not None:  # doctest: +SKIP
    ...     await store.put(payload)
    >>> plan = parse_plan(document)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from eventstore.errors import PlanValidationError
from eventstore.payloads import (
    EncodedPayload,
    PayloadError,
    PayloadLimits,
    PayloadTooLargeError,
    claim_check,
    is_payload_ref,
)
from eventstore.plan import Plan
from eventstore.plan_validation.document import decode_json
from eventstore.plan_validation.limits import document_problems
from eventstore.plan_validation.typed_checks import input_schema_problems

__all__ = ["detach_input"]


def detach_input(
    document: bytes | str | Mapping[str, Any] | Plan,
    limits: PayloadLimits,
    *,
    max_depth: int,
) -> tuple[bytes | str | Mapping[str, Any] | Plan, EncodedPayload | None]:
    """The plan document with a large input replaced by its reference, and the payload.

    Args:
        document: the plan, in any form :func:`~eventstore.plan_validation.parse_plan` takes.
        limits: the inline limit and the hard cap.
        max_depth: the deepest nesting a plan may have (``TEP_MAX_JSON_DEPTH``).

    Returns:
        ``(document, None)`` when the input stays inline (small, absent, not an object, or
        with a problem the validation reports), else the document with the input's marker
        and the payload to store before the plan is published.

    Raises:
        PlanValidationError: the input is above the hard cap.
    """
    if isinstance(document, Plan):
        payload = _payload(document.input, document.input_schema, limits, max_depth)
        if payload is None:
            return document, None
        return msgspec.structs.replace(document, input=payload.ref.marker()), payload
    if isinstance(document, bytes | bytearray | memoryview | str):
        if len(document) <= limits.inline_bytes:
            return document, None  # the input, a part of it, is no larger
        raw = document.encode("utf-8", "surrogatepass") if isinstance(document, str) else document
        try:
            decoded = decode_json(bytes(raw), max_depth=max_depth)
        except PlanValidationError:
            return document, None  # the validation says what is wrong with it
        if not isinstance(decoded, dict):
            return document, None
        detached, payload = _detached(decoded, limits, max_depth)
        return (document, None) if payload is None else (detached, payload)
    if isinstance(document, Mapping):
        return _detached(document, limits, max_depth)
    return document, None


def _detached(
    document: Mapping[str, Any], limits: PayloadLimits, max_depth: int
) -> tuple[Mapping[str, Any], EncodedPayload | None]:
    schema = document.get("input_schema")
    payload = _payload(
        document.get("input"), schema if isinstance(schema, dict) else None, limits, max_depth
    )
    if payload is None:
        return document, None
    return {**document, "input": payload.ref.marker()}, payload


def _payload(
    value: Any, schema: dict[str, Any] | None, limits: PayloadLimits, max_depth: int
) -> EncodedPayload | None:
    """The payload of an input to store by reference, or ``None`` to keep it inline."""
    if not isinstance(value, dict) or is_payload_ref(value):
        return None
    # The input sits one level below the document, so it may nest one level less.
    if document_problems(value, max_depth - 1) or input_schema_problems(value, schema):
        return None
    try:
        _, payload = claim_check(value, limits, what="the plan input")
    except PayloadTooLargeError as exc:
        raise PlanValidationError([f"plan: input: {exc}"]) from None
    except PayloadError:
        return None  # not JSON: the validation says where
    return payload
