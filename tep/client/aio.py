"""``AsyncTepClient``: the HTTP API from asyncio code (httpx)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
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

__all__ = ["AsyncTepClient"]

T = TypeVar("T")


class AsyncTepClient:
    """The tep HTTP API (see docs/api.md); every error answered raises :class:`TepApiError`.

    Args:
        base_url: e.g. ``http://127.0.0.1:8700``.
        token: the bearer token.
        timeout: seconds per request (a waitpoint resume may wait up to its own timeout).
        transport: an httpx transport (tests, proxies).

    Example:
        >>> async with AsyncTepClient("http://127.0.0.1:8700", token) as api:  # doctest: +SKIP
        ...     started = await api.submit(plan)
        ...     async for state in api.stream(started.execution_id):
        ...         print(state.status)
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def close(self) -> None:
        """Close the connections."""
        await self.http.aclose()

    async def __aenter__(self) -> AsyncTepClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, call: calls.Call[T]) -> T:
        headers = dict(call.headers or {})
        content = call.content()
        if content is not None:
            headers["Content-Type"] = "application/json"
        response = await self.http.request(
            call.method, call.path, params=call.params, content=content, headers=headers
        )
        if response.is_error:
            raise TepApiError.from_response(response)
        return call.decode(response.content)

    # ---------------------------------------------------------------- executions

    async def submit(
        self,
        plan: Plan | Mapping[str, Any],
        *,
        input: Mapping[str, Any] | None = None,
        execution_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Start an execution (``input`` merged into the plan's); a repeated
        ``idempotency_key`` returns the first one's (``created`` false)."""
        return await self._run(
            calls.submit(
                plan, input=input, execution_id=execution_id, idempotency_key=idempotency_key
            )
        )

    async def list_executions(self, **filters: Any) -> ExecutionPage:
        """One page of executions: ``status``, ``plan``, ``submitted_after``,
        ``submitted_before``, ``q``, ``order``, ``limit``, ``cursor``."""
        return await self._run(calls.list_executions(**filters))

    async def iter_executions(self, **filters: Any) -> AsyncIterator[ExecutionSummary]:
        """Every execution matching the filters, page after page."""
        cursor = None
        while True:
            page = await self.list_executions(**filters, cursor=cursor)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get_execution(
        self,
        execution_id: str,
        *,
        at: int | datetime | str | None = None,
        min_sequence: int | None = None,
        resolve: bool = False,
    ) -> ExecutionState:
        """The execution's state; ``at`` a stream sequence or a time: as of then."""
        return await self._run(
            calls.get_execution(execution_id, at=at, min_sequence=min_sequence, resolve=resolve)
        )

    async def events(
        self, execution_id: str, *, after: int = 0, limit: int | None = None, resolve: bool = False
    ) -> EventPage:
        """The execution's events, in log order (after a sequence, at most ``limit``)."""
        return await self._run(
            calls.events(execution_id, after=after, limit=limit, resolve=resolve)
        )

    async def stream(
        self,
        execution_id: str,
        *,
        after: int | None = None,
        until_end: bool = True,
        reconnect: bool = True,
        read_timeout: float = 60.0,
    ) -> AsyncIterator[ExecutionState]:
        """Every state of the execution as it changes (from the current one, or after the
        sequence ``after``), ending after a terminal state with ``until_end``. A dropped
        connection is reopened with ``Last-Event-ID``: no state is missed or repeated."""
        follower = StreamFollower(after=after, until_end=until_end)
        while True:
            path, params, headers = follower.request(execution_id)
            try:
                timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
                async with self.http.stream(
                    "GET", path, params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.is_error:
                        await response.aread()
                        raise TepApiError.from_response(response)
                    parser = SseParser(last_id=follower.last_id)
                    async for line in response.aiter_lines():
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
            await asyncio.sleep(follower.delay_s())

    # ---------------------------------------------------------------- operations

    async def cancel(self, execution_id: str, reason: str | None = None) -> Cancellation:
        """Ask the execution to stop (idempotent: ``outcome`` says what happened)."""
        return await self._run(calls.cancel(execution_id, reason))

    async def retry(
        self,
        execution_id: str,
        *,
        from_actions: Sequence[str] = (),
        only_failed: bool = False,
        reason: str | None = None,
    ) -> RetryResult:
        """Run an ended execution again from ``from_actions`` (or what failed)."""
        return await self._run(
            calls.retry(
                execution_id, from_actions=from_actions, only_failed=only_failed, reason=reason
            )
        )

    async def resume(
        self,
        execution_id: str,
        action_id: str,
        data: Any = None,
        *,
        wait: bool = True,
        timeout_s: float = 10.0,
    ) -> ActionState:
        """Complete a waitpoint with ``data``; with ``wait``, once its outcome is recorded."""
        return await self._run(
            calls.resume(execution_id, action_id, data, wait=wait, timeout_s=timeout_s)
        )

    async def reject(
        self,
        execution_id: str,
        action_id: str,
        reason: str,
        *,
        wait: bool = True,
        timeout_s: float = 10.0,
    ) -> ActionState:
        """Fail a waitpoint with code ``rejected``."""
        return await self._run(
            calls.reject(execution_id, action_id, reason, wait=wait, timeout_s=timeout_s)
        )

    async def complete_waitpoint(
        self,
        token: str,
        data: Any = None,
        *,
        reject: str | None = None,
        wait: bool = True,
        timeout_s: float = 10.0,
    ) -> ActionState:
        """Resume (or with ``reject``, reject) the waitpoint a token names."""
        return await self._run(
            calls.complete_waitpoint(token, data, reject=reject, wait=wait, timeout_s=timeout_s)
        )

    # ----------------------------------------------------------------- schedules

    async def list_schedules(self) -> ScheduleList:
        """Every schedule."""
        return await self._run(calls.list_schedules())

    async def get_schedule(self, name: str) -> ScheduleInfo:
        """One schedule."""
        return await self._run(calls.get_schedule(name))

    async def add_schedule(
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
        return await self._run(
            calls.add_schedule(name, cron, plan, tz=tz, input=input, catch_up=catch_up)
        )

    async def pause_schedule(self, name: str) -> ScheduleInfo:
        """Pause a schedule."""
        return await self._run(calls.set_paused(name, True))

    async def resume_schedule(self, name: str) -> ScheduleInfo:
        """Resume a schedule."""
        return await self._run(calls.set_paused(name, False))

    async def remove_schedule(self, name: str) -> None:
        """Remove a schedule (its executions stay)."""
        await self._run(calls.remove_schedule(name))

    async def trigger_schedule(self, name: str) -> TriggerResult:
        """Start one execution of a schedule's plan now."""
        return await self._run(calls.trigger_schedule(name))

    # -------------------------------------------------------------------- system

    async def stats(self) -> StatsDocument:
        """Global counters."""
        return await self._run(calls.stats())

    async def health(self) -> Health:
        """Whether the API can serve (raises on 503)."""
        return await self._run(calls.health())

    async def metrics(self) -> str:
        """The Prometheus text."""
        return await self._run(calls.metrics())

    async def openapi(self) -> dict[str, Any]:
        """The OpenAPI document."""
        return await self._run(calls.openapi())
