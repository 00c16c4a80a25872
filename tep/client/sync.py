"""``TepClient``: the HTTP API from synchronous code (httpx)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from eventstore.plan import Plan
from eventstore.state import ActionState, ExecutionState
from projections.cancellation import Cancellation
from projections.schedule_info import ScheduleInfo
from projections.view import ExecutionSummary
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
from tep.client import calls
from tep.client.errors import TepApiError
from tep.client.sse import SseParser
from tep.client.streaming import STREAM_ERRORS, StreamFollower

__all__ = ["TepClient"]

T = TypeVar("T")


class TepClient:
    """The tep HTTP API (see docs/api.md); every error answered raises :class:`TepApiError`.

    Args:
        base_url: e.g. ``http://127.0.0.1:8700``.
        token: the bearer token.
        timeout: seconds per request (a waitpoint resume may wait up to its own timeout).
        transport: an httpx transport (tests, proxies).

    Example:
        >>> with TepClient("http://127.0.0.1:8700", token) as api:  # doctest: +SKIP
        ...     started = api.submit(plan)
        ...     for state in api.stream(started.execution_id):
        ...         print(state.status)
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def __enter__(self) -> TepClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, call: calls.Call[T]) -> T:
        headers = dict(call.headers or {})
        content = call.content()
        if content is not None:
            headers["Content-Type"] = "application/json"
        response = self.http.request(
            call.method, call.path, params=call.params, content=content, headers=headers
        )
        if response.is_error:
            raise TepApiError.from_response(response)
        return call.decode(response.content)

    # ---------------------------------------------------------------- executions

    def submit(
        self,
        plan: Plan | Mapping[str, Any],
        *,
        input: Mapping[str, Any] | None = None,
        execution_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Start an execution (``input`` merged into the plan's); a repeated
        ``idempotency_key`` returns the first one's (``created`` false)."""
        return self._run(
            calls.submit(
                plan, input=input, execution_id=execution_id, idempotency_key=idempotency_key
            )
        )

    def list_executions(self, **filters: Any) -> ExecutionPage:
        """One page of executions: ``status``, ``plan``, ``submitted_after``,
        ``submitted_before``, ``q``, ``order``, ``limit``, ``cursor``."""
        return self._run(calls.list_executions(**filters))

    def iter_executions(self, **filters: Any) -> Iterator[ExecutionSummary]:
        """Every execution matching the filters, page after page."""
        cursor = None
        while True:
            page = self.list_executions(**filters, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_execution(
        self,
        execution_id: str,
        *,
        at: int | datetime | str | None = None,
        min_sequence: int | None = None,
        resolve: bool = False,
    ) -> ExecutionState:
        """The execution's state; ``at`` a stream sequence or a time: as of then."""
        return self._run(
            calls.get_execution(execution_id, at=at, min_sequence=min_sequence, resolve=resolve)
        )

    def events(
        self, execution_id: str, *, after: int = 0, limit: int | None = None, resolve: bool = False
    ) -> EventPage:
        """The execution's events, in log order (after a sequence, at most ``limit``)."""
        return self._run(calls.events(execution_id, after=after, limit=limit, resolve=resolve))

    def stream(
        self,
        execution_id: str,
        *,
        after: int | None = None,
        until_end: bool = True,
        reconnect: bool = True,
        read_timeout: float = 60.0,
    ) -> Iterator[ExecutionState]:
        """Every state of the execution as it changes (from the current one, or after the
        sequence ``after``), ending after a terminal state with ``until_end``. A dropped
        connection is reopened with ``Last-Event-ID``: no state is missed or repeated."""
        follower = StreamFollower(after=after, until_end=until_end)
        while True:
            path, params, headers = follower.request(execution_id)
            try:
                timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
                with self.http.stream(
                    "GET", path, params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.is_error:
                        response.read()
                        raise TepApiError.from_response(response)
                    parser = SseParser(last_id=follower.last_id)
                    for line in response.iter_lines():
                        state = follower.feed(parser, line)
                        if state is not None:
                            yield state
                        if follower.ended:
                            return
            except STREAM_ERRORS:
                if not reconnect:
                    raise
            if not reconnect:
                return
            time.sleep(follower.delay_s())

    # ---------------------------------------------------------------- operations

    def cancel(self, execution_id: str, reason: str | None = None) -> Cancellation:
        """Ask the execution to stop (idempotent: ``outcome`` says what happened)."""
        return self._run(calls.cancel(execution_id, reason))

    def retry(
        self,
        execution_id: str,
        *,
        from_actions: Sequence[str] = (),
        only_failed: bool = False,
        reason: str | None = None,
    ) -> RetryResult:
        """Run an ended execution again from ``from_actions`` (or what failed)."""
        return self._run(
            calls.retry(
                execution_id, from_actions=from_actions, only_failed=only_failed, reason=reason
            )
        )

    def resume(
        self,
        execution_id: str,
        action_id: str,
        data: Any = None,
        *,
        wait: bool = True,
        timeout_s: float = 10.0,
    ) -> ActionState:
        """Complete a waitpoint with ``data``; with ``wait``, once its outcome is recorded."""
        return self._run(
            calls.resume(execution_id, action_id, data, wait=wait, timeout_s=timeout_s)
        )

    def reject(
        self,
        execution_id: str,
        action_id: str,
        reason: str,
        *,
        wait: bool = True,
        timeout_s: float = 10.0,
    ) -> ActionState:
        """Fail a waitpoint with code ``rejected``."""
        return self._run(
            calls.reject(execution_id, action_id, reason, wait=wait, timeout_s=timeout_s)
        )

    def complete_waitpoint(
        self,
        token: str,
        data: Any = None,
        *,
        reject: str | None = None,
        wait: bool = True,
        timeout_s: float = 10.0,
    ) -> ActionState:
        """Resume (or with ``reject``, reject) the waitpoint a token names."""
        return self._run(
            calls.complete_waitpoint(token, data, reject=reject, wait=wait, timeout_s=timeout_s)
        )

    # ----------------------------------------------------------------- schedules

    def list_schedules(self) -> ScheduleList:
        """Every schedule."""
        return self._run(calls.list_schedules())

    def get_schedule(self, name: str) -> ScheduleInfo:
        """One schedule."""
        return self._run(calls.get_schedule(name))

    def add_schedule(
        self,
        name: str,
        cron: str,
        plan: Plan | Mapping[str, Any],
        *,
        tz: str = "UTC",
        input: Mapping[str, Any] | None = None,
        catch_up: str = "one",
    ) -> ScheduleInfo:
        """Add a schedule."""
        return self._run(
            calls.add_schedule(name, cron, plan, tz=tz, input=input, catch_up=catch_up)
        )

    def pause_schedule(self, name: str) -> ScheduleInfo:
        """Pause a schedule."""
        return self._run(calls.set_paused(name, True))

    def resume_schedule(self, name: str) -> ScheduleInfo:
        """Resume a schedule."""
        return self._run(calls.set_paused(name, False))

    def remove_schedule(self, name: str) -> None:
        """Remove a schedule (its executions stay)."""
        self._run(calls.remove_schedule(name))

    def trigger_schedule(self, name: str) -> TriggerResult:
        """Start one execution of a schedule's plan now."""
        return self._run(calls.trigger_schedule(name))

    # -------------------------------------------------------------------- system

    def stats(self) -> StatsDocument:
        """Global counters."""
        return self._run(calls.stats())

    def health(self) -> Health:
        """Whether the API can serve (raises on 503)."""
        return self._run(calls.health())

    def metrics(self) -> str:
        """The Prometheus text."""
        return self._run(calls.metrics())

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document."""
        return self._run(calls.openapi())
