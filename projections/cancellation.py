"""What a cancellation request did (see :mod:`projections.cancel`). Pure."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["CancelOutcome", "Cancellation"]

CancelOutcome = Literal["requested", "already_requested", "already_ended"]


class Cancellation(msgspec.Struct, frozen=True, kw_only=True):
    """What a cancellation request did.

    Attributes:
        execution_id: the execution.
        outcome: ``requested`` (appended now), ``already_requested`` (an earlier request
            stands) or ``already_ended`` (completed, failed or cancelled: nothing to stop).
        status: the execution's status when asked (``cancelled`` comes later, from the
            orchestrator).
        sequence: where the request was stored (``None`` when nothing was appended).
    """

    execution_id: str
    outcome: CancelOutcome
    status: str
    sequence: int | None = None
