"""Executions: submit, list, read (now or as of a point in history), events, live stream."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from eventstore.fold import fold
from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import ID_PATTERN
from projections.errors import ExecutionNotFoundError
from projections.history import parse_at
from projections.view import LISTING_STATUSES, detached_state
from tep.api.auth import ApiProblem, Reader, Submitter
from tep.api.backend import ApiBackend
from tep.api.envelopes import EventPage, ExecutionPage, Submitted
from tep.api.models import SubmitRequest
from tep.api.pagination import Order, page_of, parse_time
from tep.api.problems import ProblemItem, validation_problem
from tep.api.schemas import (
    MsgspecResponse,
    documented_path,
    link,
    responds,
    sse_event_schema,
)
from tep.api.stream import sse_states

__all__ = ["EXECUTION_LINKS", "router"]

router = APIRouter(prefix="/v1/executions", tags=["executions"])

ExecutionId = Annotated[
    str,
    documented_path(
        "the execution id",
        pattern=ID_PATTERN.pattern.removesuffix("\\Z") + "$",  # checked by the StateManager
        max_length=128,
    ),
]
ListingStatus = Literal["pending", "running", "completed", "failed", "cancelled", "waiting"]
assert set(LISTING_STATUSES) == set(ListingStatus.__args__)  # type: ignore[attr-defined]

_MAX_PAGE = 500
_SSE = "text/event-stream"

_BY_ID = {"execution_id": "$response.body#/execution_id"}
_FIRST_ACTION = {**_BY_ID, "action_id": "$response.body#/state/plan/actions/0/id"}
EXECUTION_LINKS = {
    "GetExecution": link("get_execution", **_BY_ID),
    "ListEvents": link("list_events", **_BY_ID),
    "Stream": link("stream", **_BY_ID),
    "Cancel": link("cancel", **_BY_ID),
    "Retry": link("retry", **_BY_ID),
    "ResumeFirstAction": link("resume", **_FIRST_ACTION),
    "RejectFirstAction": link("reject", **_FIRST_ACTION),
}
"""The links of an answer naming an execution (``execution_id``, ``state``)."""


def backend_of(request: Request) -> ApiBackend:
    """The app's backend."""
    backend: ApiBackend = request.app.state.backend
    return backend


def bad_request(parameter: str, message: str) -> ApiProblem:
    """400 naming one query or header parameter."""
    return ApiProblem(validation_problem([ProblemItem(loc=[parameter], message=message)]))


def _with_input(plan: dict[str, Any], values: dict[str, Any] | None) -> dict[str, Any]:
    if not values:
        return plan
    current = plan.get("input")
    return {**plan, "input": {**(current if isinstance(current, dict) else {}), **values}}


@router.post(
    "",
    status_code=201,
    response_class=MsgspecResponse,
    summary="Start an execution of a plan",
    responses={
        **responds("Submitted", 201, "started", EXECUTION_LINKS),
        **responds(
            "Submitted",
            200,
            "an earlier submission with this idempotency key started it",
            EXECUTION_LINKS,
        ),
    },
)
async def submit(
    body: SubmitRequest,
    request: Request,
    caller: Submitter,
    idempotency_key: Annotated[
        str | None, Header(min_length=1, max_length=256, description="as the body's field")
    ] = None,
) -> MsgspecResponse:
    """Validate the plan (every problem listed in a 400) and publish its ``plan.submitted``."""
    key = body.idempotency_key or idempotency_key
    submission = await backend_of(request).manager.submit(
        _with_input(body.plan, body.input), execution_id=body.execution_id, idempotency_key=key
    )
    state = submission.state
    answer = Submitted(
        execution_id=state.execution_id,
        created=submission.created,
        sequence=state.last_sequence,
        state=state,
    )
    return MsgspecResponse(
        answer,
        status_code=201 if submission.created else 200,
        headers={"Location": f"/v1/executions/{state.execution_id}"},
    )


@router.get(
    "",
    response_class=MsgspecResponse,
    summary="List executions",
    responses=responds("ExecutionPage"),
)
async def list_executions(
    request: Request,
    caller: Reader,
    status: Annotated[ListingStatus | None, Query(description="only this status")] = None,
    plan: Annotated[str | None, Query(description="only executions of this plan id")] = None,
    submitted_after: Annotated[
        str | None, Query(description="only those submitted at or after (ISO-8601)")
    ] = None,
    submitted_before: Annotated[
        str | None, Query(description="only those submitted before (ISO-8601)")
    ] = None,
    q: Annotated[str | None, Query(description="only those whose id contains this")] = None,
    order: Annotated[Order, Query(description="desc: newest first")] = "desc",
    limit: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="a page's next_cursor")] = None,
) -> MsgspecResponse:
    """Executions from the view's index, filtered, newest first, a page at a time."""
    try:
        after = parse_time(submitted_after, "submitted_after") if submitted_after else None
        before = parse_time(submitted_before, "submitted_before") if submitted_before else None
    except ValueError as exc:
        raise bad_request(str(exc).partition(":")[0], str(exc)) from None
    summaries = await backend_of(request).manager.list_executions(status=status, plan_id=plan)
    try:
        page = page_of(
            summaries,
            limit=limit,
            order=order,
            cursor=cursor,
            submitted_after=after,
            submitted_before=before,
            search=q,
        )
    except ValueError as exc:
        raise bad_request("cursor", str(exc)) from None
    return MsgspecResponse(
        ExecutionPage(
            items=page.items, next_cursor=page.next_cursor, total=page.total, counts=page.counts
        )
    )


@router.get(
    "/{execution_id}",
    response_class=MsgspecResponse,
    summary="An execution's state, now or as of a point in its history",
    responses=responds("ExecutionState", description="the state"),
)
async def get_execution(
    execution_id: ExecutionId,
    request: Request,
    caller: Reader,
    at: Annotated[
        str | None,
        Query(
            description="time travel: a stream sequence (e.g. 42) or an ISO-8601 time; the "
            "state folded from the history up to there"
        ),
    ] = None,
    min_sequence: Annotated[
        int | None, Query(ge=0, description="wait until the view has applied this sequence")
    ] = None,
    resolve: Annotated[bool, Query(description="write out values stored by reference")] = False,
) -> MsgspecResponse:
    """The execution's state from the view (or the log while the view has not caught up)."""
    manager = backend_of(request).manager
    if at is not None:
        try:
            point = parse_at(at)
        except ValueError as exc:
            raise bad_request("at", str(exc)) from None
        state = await manager.get_execution_state(execution_id, at=point, resolve=resolve)
        if state is None:
            if await manager.in_log(execution_id):
                raise bad_request("at", f"execution {execution_id} did not exist yet at {at}")
            raise ExecutionNotFoundError(execution_id)
        return MsgspecResponse(state)
    if min_sequence is not None:
        await _check_appended(backend_of(request), min_sequence)
    state = await manager.get_execution_state(
        execution_id, min_sequence=min_sequence, resolve=resolve
    )
    if state is None:
        state = await _from_log(backend_of(request), execution_id)
    return MsgspecResponse(state)


async def _check_appended(backend: ApiBackend, sequence: int) -> None:
    """400 for a sequence the log has not reached: no wait for the view would get there."""
    manager = backend.manager
    if sequence <= await manager.view_checkpoint():
        return
    last = await manager.log.last_sequence()
    if sequence > last:
        raise bad_request("min_sequence", f"the log is at sequence {last}, not {sequence} yet")


async def _from_log(backend: ApiBackend, execution_id: str) -> ExecutionState:
    """The state folded from the log, for an execution the view has not caught up with."""
    folded = fold(await backend.manager.history(execution_id))
    if folded is None:
        raise ExecutionNotFoundError(execution_id)
    return detached_state(folded)


@router.get(
    "/{execution_id}/events",
    response_class=MsgspecResponse,
    summary="An execution's events",
    responses=responds("EventPage"),
)
async def list_events(
    execution_id: ExecutionId,
    request: Request,
    caller: Reader,
    after: Annotated[int, Query(ge=0, description="only events above this sequence")] = 0,
    limit: Annotated[int | None, Query(ge=1, description="at most this many")] = None,
    resolve: Annotated[bool, Query(description="write out values stored by reference")] = False,
) -> MsgspecResponse:
    """Every event of the execution from the log, in order (``after``/``limit`` to page)."""
    manager = backend_of(request).manager
    records = await manager.history(execution_id)
    if not records:
        raise ExecutionNotFoundError(execution_id)
    chosen = [r for r in records if r.sequence > after]
    if limit is not None:
        chosen = chosen[:limit]
    if resolve and chosen:
        resolved = await manager.payloads.resolve(msgspec.to_builtins(chosen))
        chosen = msgspec.convert(resolved, list[RecordedEvent])
    last = chosen[-1].sequence if chosen else 0
    return MsgspecResponse(EventPage(execution_id=execution_id, events=chosen, last_sequence=last))


@router.get(
    "/{execution_id}/stream",
    summary="Server-Sent Events of every state of the execution",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`event: state` per state (`id` = its stream sequence, `data` = "
            "the ExecutionState), `event: end` after a terminal one with until_end",
            "content": {
                _SSE: {"schema": sse_event_schema({"state": "ExecutionState", "end": "StreamEnd"})}
            },
        }
    },
)
async def stream(
    execution_id: ExecutionId,
    request: Request,
    caller: Reader,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            description="start after this sequence (Last-Event-ID wins); default: the "
            "current state first",
        ),
    ] = None,
    until_end: Annotated[
        bool, Query(description="stop after a terminal state (else follow retries on)")
    ] = False,
    last_event_id: Annotated[str | None, Header(description="resume after this id")] = None,
) -> StreamingResponse:
    """Every state change of the execution as SSE, resumable with ``Last-Event-ID``."""
    backend = backend_of(request)
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdigit():
            raise bad_request("Last-Event-ID", "not a stream sequence")
        after = int(last_event_id.strip())
    if not await backend.manager.in_log(execution_id):
        raise ExecutionNotFoundError(execution_id)
    states = backend.manager.watch(execution_id, after=after, until_end=until_end)
    heartbeat: float = request.app.state.heartbeat_s

    async def final() -> ExecutionState | None:
        return await _from_log(backend, execution_id)

    return StreamingResponse(
        sse_states(states, heartbeat_s=heartbeat, until_end=until_end, final=final),
        media_type=_SSE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
