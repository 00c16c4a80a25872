"""Operating on executions: cancel, retry, resume or reject a waitpoint, complete one by token.

Each is checked against the execution's history before anything is appended (a refusal
appends nothing); the caller's token name is recorded as ``requested_by`` where events have
one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from eventstore.state import ActionState
from projections.state_manager import StateManager
from tep.api.auth import Operator, Submitter
from tep.api.envelopes import RetryResult
from tep.api.models import (
    CancelRequest,
    RejectRequest,
    ResumeRequest,
    RetryRequest,
    WaitpointCompletion,
)
from tep.api.routes_executions import EXECUTION_LINKS, ExecutionId, backend_of
from tep.api.schemas import MsgspecResponse, responds

__all__ = ["router"]

router = APIRouter(tags=["operations"])

ActionId = Annotated[str, Path(description="the action id (the waitpoint)", max_length=200)]
_ACTION = responds("ActionState", description="the action's state")


def _manager(request: Request) -> StateManager:
    return backend_of(request).manager


def _action(action: ActionState) -> MsgspecResponse:
    return MsgspecResponse(action)


@router.post(
    "/v1/executions/{execution_id}/cancel",
    response_class=MsgspecResponse,
    summary="Ask an execution to stop",
    responses=responds("Cancellation", description="what the request did"),
)
async def cancel(
    execution_id: ExecutionId,
    request: Request,
    caller: Operator,
    body: CancelRequest | None = None,
) -> MsgspecResponse:
    """Append ``execution.cancel.requested`` unless it ended or is being cancelled already."""
    reason = body.reason if body is not None else None
    return MsgspecResponse(await _manager(request).cancel(execution_id, reason))


@router.post(
    "/v1/executions/{execution_id}/retry",
    response_class=MsgspecResponse,
    summary="Run an ended execution again from a step",
    responses=responds("RetryResult", links=EXECUTION_LINKS),
)
async def retry(
    execution_id: ExecutionId,
    request: Request,
    caller: Operator,
    body: RetryRequest | None = None,
) -> MsgspecResponse:
    """Reset the named actions (or what failed) and what is downstream; 409 when refused."""
    body = body or RetryRequest()
    state = await _manager(request).retry(
        execution_id,
        from_actions=body.from_actions,
        only_failed=body.only_failed,
        requested_by=caller.name,
        reason=body.reason,
    )
    reset = [a.action_id for a in state.actions.values() if a.run == state.run]
    again = set(reset)
    result = RetryResult(
        execution_id=execution_id,
        run=state.run,
        reset=reset,
        kept=[a for a in state.actions if a not in again],
        sequence=state.last_sequence,
        state=state,
    )
    return MsgspecResponse(result)


@router.post(
    "/v1/executions/{execution_id}/actions/{action_id}/resume",
    response_class=MsgspecResponse,
    summary="Resume a waitpoint with data",
    responses=_ACTION,
)
async def resume(
    execution_id: ExecutionId,
    action_id: ActionId,
    request: Request,
    caller: Operator,
    body: ResumeRequest | None = None,
) -> MsgspecResponse:
    """Complete the waitpoint with ``data`` (checked against its schema: 400 lists each
    problem); with ``wait``, answer once the outcome is recorded."""
    body = body or ResumeRequest()
    action = await _manager(request).complete_waitpoint(
        execution_id,
        action_id,
        body.data,
        requested_by=caller.name,
        wait=body.wait,
        timeout=body.timeout_s,
    )
    return _action(action)


@router.post(
    "/v1/executions/{execution_id}/actions/{action_id}/reject",
    response_class=MsgspecResponse,
    summary="Reject a waitpoint",
    responses=_ACTION,
)
async def reject(
    execution_id: ExecutionId,
    action_id: ActionId,
    body: RejectRequest,
    request: Request,
    caller: Operator,
) -> MsgspecResponse:
    """Fail the waitpoint with code ``rejected`` and the reason."""
    action = await _manager(request).complete_waitpoint(
        execution_id,
        action_id,
        reject=body.reason,
        requested_by=caller.name,
        wait=body.wait,
        timeout=body.timeout_s,
    )
    return _action(action)


@router.post(
    "/v1/waitpoints/{token}",
    response_class=MsgspecResponse,
    summary="Complete a waitpoint by its token",
    responses=_ACTION,
)
async def complete_by_token(
    token: Annotated[str, Path(description="the waitpoint's token ({{actions.<id>.token}})")],
    request: Request,
    caller: Submitter,
    body: WaitpointCompletion | None = None,
) -> MsgspecResponse:
    """For third parties handed a waitpoint's token: resume it with data, or reject it."""
    body = body or WaitpointCompletion()
    action = await _manager(request).complete_by_token(
        token,
        body.data,
        reject=body.reject,
        requested_by=caller.name,
        wait=body.wait,
        timeout=body.timeout_s,
    )
    return _action(action)
