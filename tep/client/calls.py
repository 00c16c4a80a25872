"""Every route as a request to make and a way to read its answer: what the sync and the
async client share. Pure (no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import msgspec

from eventstore.plan import Plan
from eventstore.state import ActionState, ExecutionState
from projections.cancellation import Cancellation
from projections.schedule_info import ScheduleInfo
from tep.api.envelopes import (
    EventPage,
    ExecutionPage,
    Health,
    RetryResult,
    ScheduleList,
    StatsDocument,
    Submitted,
    TriggerResult,
)

__all__ = ["Call", "decode_state", "stream_request"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def _decoder(kind: Any) -> Callable[[bytes], Any]:
    return msgspec.json.Decoder(kind).decode


def _none(_: bytes) -> None:
    return None


def _text(content: bytes) -> str:
    return content.decode()


def _json(content: bytes) -> Any:
    return msgspec.json.decode(content)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the decoder of its successful answer."""

    method: str
    path: str
    decode: Callable[[bytes], T]
    params: Mapping[str, Any] | None = None
    body: Any = None
    headers: Mapping[str, str] | None = None

    def content(self) -> bytes | None:
        """The JSON body, if any."""
        return None if self.body is None else _encoder.encode(self.body)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _params(**values: Any) -> dict[str, Any]:
    """Query parameters without the unset ones; booleans as true/false, times as ISO-8601."""
    params: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, datetime):
            value = value.isoformat()
        params[name] = value
    return params


def _plan_document(plan: Plan | Mapping[str, Any]) -> Any:
    return msgspec.to_builtins(plan) if isinstance(plan, Plan) else dict(plan)


def submit(
    plan: Plan | Mapping[str, Any],
    *,
    input: Mapping[str, Any] | None = None,
    execution_id: str | None = None,
    idempotency_key: str | None = None,
) -> Call[Submitted]:
    body: dict[str, Any] = {"plan": _plan_document(plan)}
    if input is not None:
        body["input"] = dict(input)
    if execution_id is not None:
        body["execution_id"] = execution_id
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    return Call("POST", "/v1/executions", _decoder(Submitted), body=body)


def list_executions(
    *,
    status: str | None = None,
    plan: str | None = None,
    submitted_after: datetime | str | None = None,
    submitted_before: datetime | str | None = None,
    q: str | None = None,
    order: str = "desc",
    limit: int = 50,
    cursor: str | None = None,
) -> Call[ExecutionPage]:
    params = _params(
        status=status,
        plan=plan,
        submitted_after=submitted_after,
        submitted_before=submitted_before,
        q=q,
        order=order,
        limit=limit,
        cursor=cursor,
    )
    return Call("GET", "/v1/executions", _decoder(ExecutionPage), params=params)


def get_execution(
    execution_id: str,
    *,
    at: int | datetime | str | None = None,
    min_sequence: int | None = None,
    resolve: bool = False,
) -> Call[ExecutionState]:
    params = _params(at=at, min_sequence=min_sequence, resolve=resolve or None)
    path = f"/v1/executions/{_segment(execution_id)}"
    return Call("GET", path, _decoder(ExecutionState), params=params)


def events(
    execution_id: str, *, after: int = 0, limit: int | None = None, resolve: bool = False
) -> Call[EventPage]:
    params = _params(after=after or None, limit=limit, resolve=resolve or None)
    path = f"/v1/executions/{_segment(execution_id)}/events"
    return Call("GET", path, _decoder(EventPage), params=params)


def cancel(execution_id: str, reason: str | None = None) -> Call[Cancellation]:
    path = f"/v1/executions/{_segment(execution_id)}/cancel"
    return Call("POST", path, _decoder(Cancellation), body={"reason": reason})


def retry(
    execution_id: str,
    *,
    from_actions: Sequence[str] = (),
    only_failed: bool = False,
    reason: str | None = None,
) -> Call[RetryResult]:
    body = {"from": list(from_actions), "only_failed": only_failed, "reason": reason}
    path = f"/v1/executions/{_segment(execution_id)}/retry"
    return Call("POST", path, _decoder(RetryResult), body=body)


def resume(
    execution_id: str, action_id: str, data: Any, *, wait: bool, timeout_s: float
) -> Call[ActionState]:
    path = f"/v1/executions/{_segment(execution_id)}/actions/{_segment(action_id)}/resume"
    body = {"data": data, "wait": wait, "timeout_s": timeout_s}
    return Call("POST", path, _decoder(ActionState), body=body)


def reject(
    execution_id: str, action_id: str, reason: str, *, wait: bool, timeout_s: float
) -> Call[ActionState]:
    path = f"/v1/executions/{_segment(execution_id)}/actions/{_segment(action_id)}/reject"
    body = {"reason": reason, "wait": wait, "timeout_s": timeout_s}
    return Call("POST", path, _decoder(ActionState), body=body)


def complete_waitpoint(
    token: str, data: Any, *, reject: str | None, wait: bool, timeout_s: float
) -> Call[ActionState]:
    body = {"data": data, "reject": reject, "wait": wait, "timeout_s": timeout_s}
    return Call("POST", f"/v1/waitpoints/{_segment(token)}", _decoder(ActionState), body=body)


def list_schedules() -> Call[ScheduleList]:
    return Call("GET", "/v1/schedules", _decoder(ScheduleList))


def get_schedule(name: str) -> Call[ScheduleInfo]:
    return Call("GET", f"/v1/schedules/{_segment(name)}", _decoder(ScheduleInfo))


def add_schedule(
    name: str,
    cron: str,
    plan: Plan | Mapping[str, Any],
    *,
    tz: str = "UTC",
    input: Mapping[str, Any] | None = None,
    catch_up: str = "one",
) -> Call[ScheduleInfo]:
    body = {
        "name": name,
        "cron": cron,
        "tz": tz,
        "plan": _plan_document(plan),
        "input": dict(input or {}),
        "catch_up": catch_up,
    }
    return Call("POST", "/v1/schedules", _decoder(ScheduleInfo), body=body)


def set_paused(name: str, paused: bool) -> Call[ScheduleInfo]:
    path = f"/v1/schedules/{_segment(name)}"
    return Call("PATCH", path, _decoder(ScheduleInfo), body={"paused": paused})


def remove_schedule(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/schedules/{_segment(name)}", _none)


def trigger_schedule(name: str) -> Call[TriggerResult]:
    return Call("POST", f"/v1/schedules/{_segment(name)}/trigger", _decoder(TriggerResult))


def stats() -> Call[StatsDocument]:
    return Call("GET", "/v1/stats", _decoder(StatsDocument))


def health() -> Call[Health]:
    return Call("GET", "/healthz", _decoder(Health))


def metrics() -> Call[str]:
    return Call("GET", "/metrics", _text)


def openapi() -> Call[dict[str, Any]]:
    return Call("GET", "/openapi.json", _json)


def stream_request(
    execution_id: str, *, last_id: str | None, after: int | None, until_end: bool
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The path, query and headers of (re)opening an execution's event stream."""
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    params = _params(after=after if last_id is None else None, until_end=until_end)
    return f"/v1/executions/{_segment(execution_id)}/stream", params, headers


_state_decoder = msgspec.json.Decoder(ExecutionState)


def decode_state(data: bytes) -> ExecutionState:
    """A stream event's data into the state."""
    return _state_decoder.decode(data)
