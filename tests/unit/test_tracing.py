"""W3C traceparent parsing and generation, the current trace, and where it ends up."""

from __future__ import annotations

import logging
import re

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import headers as h
from eventstore.events import PlanSubmitted
from eventstore.jetstream.event_messages import event_message
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.tracing import (
    TraceContext,
    client_trace,
    current_trace,
    current_trace_id,
    new_trace,
    parse_traceparent,
    trace_from_header,
    trace_from_headers,
    use_trace,
)
from tep.logging_setup import JsonFormatter, TraceFilter

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HEADER = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def test_a_valid_traceparent_is_read_as_it_is() -> None:
    parsed = parse_traceparent(VALID)

    assert parsed == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    assert parsed.header() == VALID


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        VALID.upper(),  # hex digits are lowercase
        "01" + VALID[2:],  # another version
        VALID + "-extra",
        VALID[:-1],
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # all-zero span id
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        " " + VALID,
    ],
)
def test_anything_else_is_no_trace_context(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_a_value_of_another_type_is_no_trace_context_either() -> None:
    assert parse_traceparent(b"00-bytes" * 7) is None  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_parsing_never_raises(value: str) -> None:
    parsed = parse_traceparent(value)
    if parsed is not None:
        assert parsed.header() == value


def test_an_invalid_inbound_traceparent_is_replaced_by_a_new_trace() -> None:
    replaced = trace_from_header("00-zzz-bad-01")

    assert HEADER.fullmatch(replaced.header())
    assert trace_from_header("00-zzz-bad-01").trace_id != replaced.trace_id


def test_a_valid_inbound_traceparent_is_continued() -> None:
    assert trace_from_headers({h.TRACEPARENT: VALID}) == parse_traceparent(VALID)
    assert HEADER.fullmatch(trace_from_headers(None).header())
    assert HEADER.fullmatch(trace_from_headers({}).header())


def test_new_traces_and_children() -> None:
    first, second = new_trace(), new_trace()
    child = first.child()

    assert HEADER.fullmatch(first.header()) and first.flags == "01"
    assert first.trace_id != second.trace_id
    assert child.trace_id == first.trace_id
    assert child.span_id != first.span_id
    assert parse_traceparent(child.header()) == child


def test_the_current_trace_is_set_for_a_block_only() -> None:
    outer, inner = new_trace(), new_trace()
    assert current_trace() is None

    with use_trace(outer):
        assert current_trace() is outer
        with use_trace(inner):
            assert current_trace_id() == inner.trace_id
        assert current_trace() is outer

    assert current_trace() is None and current_trace_id() is None


def test_concurrent_tasks_keep_their_own_trace() -> None:
    seen: dict[str, str | None] = {}

    async def work(name: str, trace: TraceContext) -> None:
        with use_trace(trace):
            await anyio.sleep(0.01)
            seen[name] = current_trace_id()

    async def main() -> None:
        one, two = new_trace(), new_trace()
        async with anyio.create_task_group() as group:
            group.start_soon(work, "one", one)
            group.start_soon(work, "two", two)
        assert seen == {"one": one.trace_id, "two": two.trace_id}

    anyio.run(main)


def test_a_client_write_uses_the_given_then_the_current_then_a_new_trace() -> None:
    current = new_trace()

    assert client_trace(VALID) == parse_traceparent(VALID)
    with use_trace(current):
        assert client_trace() is current
        assert client_trace("not a traceparent") is current
    assert client_trace().trace_id not in (current.trace_id, parse_traceparent(VALID).trace_id)


def _submitted() -> PlanSubmitted:
    plan = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://x/"))])
    return PlanSubmitted(execution_id="e1", plan=plan)


def test_an_event_appended_within_a_trace_carries_a_child_span_of_it() -> None:
    trace = new_trace()

    with use_trace(trace):
        _, _, first = event_message(_submitted(), 1 << 20)
        _, _, second = event_message(_submitted(), 1 << 20)

    one, two = parse_traceparent(first[h.TRACEPARENT]), parse_traceparent(second[h.TRACEPARENT])
    assert one is not None and two is not None
    assert one.trace_id == two.trace_id == trace.trace_id
    assert len({one.span_id, two.span_id, trace.span_id}) == 3


def test_an_event_appended_outside_a_trace_has_no_traceparent() -> None:
    _, _, headers = event_message(_submitted(), 1 << 20)

    assert h.TRACEPARENT not in headers


def test_log_lines_written_within_a_trace_name_its_id() -> None:
    record = logging.makeLogRecord({"msg": "hello", "levelname": "INFO", "name": "tep.test"})
    trace = new_trace()

    with use_trace(trace):
        assert TraceFilter().filter(record)

    assert f'"trace_id": "{trace.trace_id}"' in JsonFormatter("executor").format(record)
    untraced = logging.makeLogRecord({"msg": "hello"})
    assert TraceFilter().filter(untraced) and not hasattr(untraced, "trace_id")
