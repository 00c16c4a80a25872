"""The SSE wire format: what the server writes and what the client reads back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from eventstore.state import ExecutionState
from tep.api.stream import end_event, sse_states, state_event
from tep.client.sse import SseParser
from tep.client.streaming import StreamFollower

pytestmark = pytest.mark.anyio


def state(sequence: int, status: str = "running") -> ExecutionState:
    return ExecutionState(
        execution_id="exe_1",
        plan_id="p",
        status=status,
        last_sequence=sequence,  # type: ignore[arg-type]
    )


def parse(chunks: list[bytes]) -> list[tuple[str, str | None, str]]:
    parser = SseParser()
    events = []
    for line in b"".join(chunks).decode().split("\n"):
        event = parser.feed(line)
        if event is not None:
            events.append((event.event, event.id, event.data))
    return events


async def collect(states: list[ExecutionState], until_end: bool) -> list[bytes]:
    async def produce() -> AsyncIterator[ExecutionState]:
        for item in states:
            yield item

    async def final() -> ExecutionState | None:
        return states[-1] if states else state(9, "completed")

    return [
        chunk
        async for chunk in sse_states(produce(), heartbeat_s=5, until_end=until_end, final=final)
    ]


async def test_each_state_is_one_event_with_its_sequence_as_id() -> None:
    chunks = await collect([state(3), state(5), state(8, "completed")], until_end=True)
    events = parse(chunks)
    assert chunks[0] == b"retry: 2000\n\n"
    assert [(e, i) for e, i, _ in events] == [
        ("state", "3"),
        ("state", "5"),
        ("state", "8"),
        ("end", "8"),
    ]
    decoded = msgspec.json.decode(events[1][2].encode(), type=ExecutionState)
    assert decoded.last_sequence == 5 and decoded.plan is None
    assert msgspec.json.decode(events[-1][2]) == {
        "execution_id": "exe_1",
        "status": "completed",
        "last_sequence": 8,
    }


async def test_resuming_after_the_end_still_says_end() -> None:
    events = parse(await collect([], until_end=True))
    assert [e for e, _, _ in events] == ["end"]


async def test_without_until_end_no_end_event() -> None:
    events = parse(await collect([state(1), state(2, "completed")], until_end=False))
    assert [e for e, _, _ in events] == ["state", "state"]


def test_the_parser_follows_the_sse_rules() -> None:
    parser = SseParser()
    lines = [": comment", "retry: 1500", "id: 7", "event: state", 'data: {"a":', "data: 1}", ""]
    events = [parser.feed(line) for line in lines]
    [event] = [e for e in events if e is not None]
    assert (event.event, event.id, event.data) == ("state", "7", '{"a":\n1}')
    assert parser.retry_ms == 1500 and parser.last_id == "7"
    assert parser.feed("") is None  # no data: nothing dispatched
    assert parser.feed("data:x") is None and parser.feed("").data == "x"  # type: ignore[union-attr]


def test_the_follower_resumes_after_the_last_state_it_gave_out() -> None:
    follower = StreamFollower(after=0, until_end=True)
    assert follower.request("exe_1")[1] == {"after": 0, "until_end": "true"}
    parser = SseParser()
    for line in state_event(state(4)).decode().split("\n"):
        got = follower.feed(parser, line)
        if got is not None:
            assert got.last_sequence == 4
    path, params, headers = follower.request("exe_1")
    assert path == "/v1/executions/exe_1/stream" and headers["Last-Event-ID"] == "4"
    assert "after" not in params
    assert [follower.delay_s() for _ in range(3)] == [0.1, 0.2, 0.4]
    for line in end_event(state(5, "completed")).decode().split("\n"):
        follower.feed(parser, line)
    assert follower.ended
