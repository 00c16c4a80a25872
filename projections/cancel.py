"""Asking an execution to stop: one ``execution.cancel.requested``, checked against the log.

The request is idempotent: for an execution already being cancelled, or already ended,
nothing is appended and the outcome says so. The orchestrator dispatches nothing new once
cancellation is requested; running actions finish and the execution ends as cancelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventstore.events import ExecutionCancelRequested
from eventstore.fold import fold
from eventstore.state import ExecutionState
from eventstore.subjects import execution_id_problem
from projections.cancellation import Cancellation, CancelOutcome
from projections.errors import ExecutionNotFoundError, InvalidExecutionIdError
from projections.view import detached_state

if TYPE_CHECKING:
    from eventstore.jetstream.log import EventLog

__all__ = ["CancelOutcome", "Cancellation", "request_cancel"]


async def request_cancel(
    log: EventLog, execution_id: str, reason: str | None = None
) -> tuple[Cancellation, ExecutionState]:
    """Append ``execution.cancel.requested`` unless the execution ended or is being cancelled.

    Returns:
        What happened, and the execution's state as read before the request.

    Raises:
        InvalidExecutionIdError: ``execution_id`` cannot name an execution.
        ExecutionNotFoundError: the log has no such execution.
    """
    problem = execution_id_problem(execution_id)
    if problem:
        raise InvalidExecutionIdError(execution_id, problem)
    state = fold(await log.read_execution(execution_id))
    if state is None:
        raise ExecutionNotFoundError(execution_id)
    state = detached_state(state)
    if state.terminal:
        outcome: CancelOutcome = "already_ended"
    elif state.cancel_requested:
        outcome = "already_requested"
    else:
        request = ExecutionCancelRequested(execution_id=execution_id, reason=reason)
        stored = await log.append(request)
        done = Cancellation(
            execution_id=execution_id,
            outcome="requested",
            status=state.status,
            sequence=stored.sequence,
        )
        return done, state
    return Cancellation(execution_id=execution_id, outcome=outcome, status=state.status), state
