"""A plan whose input is stored by reference, checked against its ``input_schema`` at admission.

The pure admission (:func:`orchestrator.intake.admit_plan`) cannot look inside a reference; the
client that stored the input checked it first, but a ``plan.submitted`` published around the
client library may not have been. So the orchestrator fetches such an input once and rejects the
plan (``invalid_plan``) when it does not match, or cannot be read.
"""

from __future__ import annotations

from eventstore.events import ExecutionFailed, PlanSubmitted
from eventstore.jetstream.payloads import PayloadStore
from eventstore.payloads import PayloadError, is_payload_ref
from eventstore.plan_validation.typed_checks import input_schema_problems
from orchestrator.intake import rejection

__all__ = ["checked_input"]


async def checked_input(
    store: PayloadStore, event: PlanSubmitted, data: bytes
) -> PlanSubmitted | ExecutionFailed:
    """``event`` if its input is inline or matches its schema, else the plan's rejection.

    Raises:
        TepError: the payload bucket did not answer (a retry may help).
    """
    plan = event.plan
    if plan.input_schema is None or not is_payload_ref(plan.input):
        return event
    try:
        value = await store.resolve(plan.input)
    except PayloadError as exc:
        return rejection(event.execution_id, data, [f"plan: input stored by reference: {exc}"])
    problems = input_schema_problems(value, plan.input_schema)
    return rejection(event.execution_id, data, problems) if problems else event
