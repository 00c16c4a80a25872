"""Schedules: list, read, add, pause or resume, remove, trigger now.

Reads use the client identity; every change goes through the admin connection (the client
identity may not write schedule definitions), see :class:`tep.api.backend.ApiBackend`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Request
from starlette.responses import Response

from eventstore.cron import CronError, TimeZoneError
from eventstore.schedules import ScheduleError, ScheduleState
from projections import schedules as ops
from tep.api.auth import ApiProblem, Operator, Reader
from tep.api.envelopes import ScheduleList, TriggerResult
from tep.api.models import ScheduleCreate, ScheduleUpdate
from tep.api.problems import ProblemItem, validation_problem
from tep.api.routes_executions import backend_of
from tep.api.schemas import MsgspecResponse, documented_path, json_content, link, responds

__all__ = ["router"]

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])

# Another name is no schedule's: 404 `schedule-not-found`, as for a name not taken.
ScheduleName = Annotated[
    str, documented_path("the schedule's name", pattern="^[A-Za-z0-9_-]{1,64}$", max_length=64)
]
_BY_NAME = {"name": "$response.body#/name"}
_LINKS = {
    "GetSchedule": link("get_schedule", **_BY_NAME),
    "UpdateSchedule": link("update_schedule", **_BY_NAME),
    "RemoveSchedule": link("remove_schedule", **_BY_NAME),
    "TriggerSchedule": link("trigger_schedule", **_BY_NAME),
}
_INFO = {"description": "the schedule", "content": json_content("ScheduleInfo"), "links": _LINKS}
_TRIGGERED = {"GetExecution": link("get_execution", execution_id="$response.body#/execution_id")}


@router.get(
    "", response_class=MsgspecResponse, summary="List schedules", responses=responds("ScheduleList")
)
async def list_schedules(request: Request, caller: Reader) -> MsgspecResponse:
    """Every schedule with its last and next fire and its last execution's status."""
    backend = backend_of(request)
    infos = await ops.list_schedules(backend.manager.log, backend.statuses)
    return MsgspecResponse(ScheduleList(schedules=infos, count=len(infos)))


@router.post(
    "",
    status_code=201,
    response_class=MsgspecResponse,
    summary="Add a schedule",
    responses={201: _INFO},
)
async def add_schedule(body: ScheduleCreate, request: Request, caller: Operator) -> MsgspecResponse:
    """Validate the name, expression, zone and plan (400 lists every problem), then store it."""
    backend = backend_of(request)
    try:
        definition = ops.new_definition(
            body.name,
            body.cron,
            body.plan,
            backend.manager.settings,
            tz=body.tz,
            input=body.input,
            catch_up=body.catch_up,
        )
    except (ScheduleError, CronError, TimeZoneError) as exc:
        item = ProblemItem(loc=["body", _field_of(exc)], message=str(exc))
        raise ApiProblem(validation_problem([item])) from None
    await ops.add_schedule(await backend.admin_log(), definition)
    info = ops.schedule_info(definition, ScheduleState(), datetime.now(UTC))
    location = {"Location": f"/v1/schedules/{body.name}"}
    return MsgspecResponse(info, status_code=201, headers=location)


def _field_of(exc: Exception) -> str:
    if isinstance(exc, CronError):
        return "cron"
    return "tz" if isinstance(exc, TimeZoneError) else "name"


@router.get(
    "/{name}", response_class=MsgspecResponse, summary="One schedule", responses={200: _INFO}
)
async def get_schedule(name: ScheduleName, request: Request, caller: Reader) -> MsgspecResponse:
    """The schedule, as listed."""
    backend = backend_of(request)
    return MsgspecResponse(await ops.get_schedule(backend.manager.log, name, backend.statuses))


@router.patch(
    "/{name}",
    response_class=MsgspecResponse,
    summary="Pause or resume a schedule",
    responses={200: _INFO},
)
async def update_schedule(
    name: ScheduleName, body: ScheduleUpdate, request: Request, caller: Operator
) -> MsgspecResponse:
    """Pause (no tick fires) or resume (the ticks of the pause never fire)."""
    backend = backend_of(request)
    await ops.set_paused(await backend.admin_log(), name, body.paused)
    return MsgspecResponse(await ops.get_schedule(backend.manager.log, name, backend.statuses))


@router.delete("/{name}", status_code=204, summary="Remove a schedule", response_class=Response)
async def remove_schedule(name: ScheduleName, request: Request, caller: Operator) -> Response:
    """Remove the schedule and its state (its executions stay)."""
    await ops.remove_schedule(await backend_of(request).admin_log(), name)
    return Response(status_code=204)


@router.post(
    "/{name}/trigger",
    response_class=MsgspecResponse,
    summary="Start one execution now",
    responses=responds("TriggerResult", links=_TRIGGERED),
)
async def trigger_schedule(
    name: ScheduleName, request: Request, caller: Operator
) -> MsgspecResponse:
    """Start one execution of the schedule's plan now (``<name>-manual-<time>``)."""
    execution_id = await ops.trigger_schedule(await backend_of(request).admin_log(), name)
    return MsgspecResponse(TriggerResult(name=name, execution_id=execution_id))
