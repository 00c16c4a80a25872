"""Spans of an execution, its actions and their attempts, exported in the client's trace.

The orchestrator and an executor run in this process against a real nats-server, with the
OpenTelemetry SDK's in-memory exporter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from support.executors import running_executor
from support.http_target import HttpTarget
from support.waiting import eventually

from eventstore import otel
from eventstore.config import TepSettings
from eventstore.events import PlanSubmitted
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.tracing import new_trace, use_trace
from orchestrator.config import OrchestratorConfig
from orchestrator.service import Orchestrator

InMemorySpanExporter = pytest.importorskip(
    "opentelemetry.sdk.trace.export.in_memory_span_exporter"
).InMemorySpanExporter

pytestmark = pytest.mark.anyio


@pytest.fixture
def exported() -> Iterator[Any]:
    exporter = InMemorySpanExporter()
    assert otel.configure("tep-test", exporter=exporter)
    yield exporter
    otel.shutdown()


@pytest.fixture
async def orchestrating(settings: TepSettings) -> AsyncIterator[Orchestrator]:
    nc = await connect(settings.nats_url, name="orchestrator-under-test")
    config = OrchestratorConfig(lease_s=1.0, renew_s=0.3, ack_wait_s=2.0)
    try:
        async with anyio.create_task_group() as group:
            service = Orchestrator(nc, settings, config)
            await group.start(service.run)
            yield service
            group.cancel_scope.cancel()
    finally:
        await nc.close()


async def test_execution_action_and_attempt_spans_share_the_clients_trace(
    nc: NatsClient,
    settings: TepSettings,
    http_target: HttpTarget,
    exported: Any,
    orchestrating: Orchestrator,
) -> None:
    plan = Plan(
        id="traced",
        actions=[
            Action(id="a", request=RequestSpec(url=http_target.url("/echo/a"))),
            Action(id="b", depends_on=["a"], request=RequestSpec(url=http_target.url("/echo/b"))),
        ],
    )
    trace = new_trace()
    async with running_executor(settings):
        with use_trace(trace):
            await EventLog(nc, settings).append(PlanSubmitted(execution_id="t1", plan=plan))

        def names() -> set[str]:
            return {span.name for span in exported.get_finished_spans()}

        wanted = {"attempt a", "attempt b", "action a", "action b", "execution traced"}
        await eventually(lambda: wanted <= names(), 20, f"spans missing: {wanted - names()}")

    spans = {span.name: span for span in exported.get_finished_spans()}
    assert {f"{spans[name].context.trace_id:032x}" for name in wanted} == {trace.trace_id}
    attempt = spans["attempt a"]
    assert attempt.attributes["tep.disposition"] == "completed"
    # The target was called from within the attempt's span.
    [hit] = http_target.hits_for("/echo/a")
    assert hit.headers["traceparent"].split("-")[2] == f"{attempt.context.span_id:016x}"
    action = spans["action b"]
    assert action.attributes["tep.status"] == "completed"
    assert action.start_time <= action.end_time
    assert spans["execution traced"].attributes["tep.status"] == "completed"
