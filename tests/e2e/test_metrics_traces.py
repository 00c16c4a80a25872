"""Metrics and traces on a real stack: the three roles as `tep` processes with health ports.

A plan runs (one action answered at once, one that fails once and is retried); then each
role's ``/metrics`` is scraped and the counters that must have moved are checked; the HTTP
target saw the trace the client started in the ``traceparent`` of every call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.http_target import HttpTarget
from support.waiting import eventually
from tep_cli import Processes, child_env, tep_command

from eventstore.config import TepSettings
from eventstore.plan import Action, Plan, RequestSpec, RetryPolicy
from eventstore.subjects import plan_subject
from eventstore.tracing import new_trace, parse_traceparent
from projections.state_manager import StateManager
from tep.server import EmbeddedServer, find_free_port

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Stack:
    """The roles' health (and metrics) ports."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports

    async def scrape(self, role: str) -> Samples:
        """Every sample ``role``'s ``/metrics`` answers now."""
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{self.ports[role]}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples: Samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    async def healthy(self) -> bool:
        async with httpx.AsyncClient() as client:
            for port in self.ports.values():
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                except httpx.HTTPError:
                    return False
                if response.status_code != 200:
                    return False
        return True


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def stack(nats_server: EmbeddedServer, tmp_path: Path) -> AsyncIterator[Stack]:
    processes = Processes()
    env = child_env(nats_server.url, TEP_LOG_LEVEL="WARNING", TEP_METRICS_SAMPLE_S="0.2")
    ports = {}
    for role, extra in (
        ("orchestrator", ()),
        ("executor", ("--queue", "http", "--shutdown-grace", "1")),
        ("projector", ()),
    ):
        port = ports[role] = find_free_port()
        command = tep_command(
            role, *extra, "--health-host", "127.0.0.1", "--health-port", str(port)
        )
        processes.start(command, env, tmp_path / f"{role}.log")
    try:
        running = Stack(ports)
        await eventually(running.healthy, 30, "the roles did not become healthy", 0.05)
        yield running
    finally:
        processes.stop_all()


def _plan(target: HttpTarget) -> Plan:
    retry = RetryPolicy(max_attempts=3, min_backoff_ms=20, jitter=False)
    return Plan(
        id="observed",
        actions=[
            Action(id="first", request=RequestSpec(url=target.url("/echo/first"))),
            Action(
                id="second",
                depends_on=["first"],
                request=RequestSpec(url=target.url("/flaky/1/second")),
                retry=retry,
            ),
        ],
    )


async def test_each_role_counts_a_run_and_the_target_sees_the_clients_trace(
    stack: Stack, settings: TepSettings, http_target: HttpTarget
) -> None:
    trace = new_trace()
    manager = await StateManager.connect(settings=settings)
    try:
        state = await manager.initialize_state(
            _plan(http_target), "observed-1", traceparent=trace.header()
        )
        ended = await manager.wait_for_completion(state.execution_id, timeout=30)
    finally:
        await manager.close()
    assert ended.status == "completed"

    # Every call of the execution (both attempts of the flaky one) carries the client's trace,
    # each from a span of its own.
    sent = [parse_traceparent(hit.headers.get("traceparent")) for hit in http_target.hits]
    assert len(sent) == 3 and all(s is not None for s in sent)
    assert {s.trace_id for s in sent if s is not None} == {trace.trace_id}
    assert len({s.span_id for s in sent if s is not None} | {trace.span_id}) == 4

    async def sampled() -> Samples | None:
        samples = await stack.scrape("orchestrator")
        consumer = [k for k in samples if k[0] == "tep_consumer_pending"]
        return samples if consumer else None

    orchestrator = await eventually(sampled, 10, "the orchestrator sampled no consumer")
    consumed = "tep_events_consumed_total"
    assert value(orchestrator, consumed, role="orchestrator", type="plan.submitted") == 1
    assert value(orchestrator, consumed, role="orchestrator", type="action.completed") == 2
    assert value(orchestrator, "tep_decisions_total") >= 3  # two dispatches and the end
    assert value(orchestrator, "tep_decision_latency_seconds_count") >= 3
    assert value(orchestrator, "tep_decision_processing_seconds_count") >= 3
    appended = "tep_events_appended_total"
    assert value(orchestrator, appended, type="action.execute.requested") == 2
    assert value(orchestrator, appended, type="execution.completed") == 1

    executor = await stack.scrape("executor")
    assert value(executor, consumed, role="executor", type="action.execute.requested") == 3
    duration = "tep_http_request_duration_seconds_count"
    assert value(executor, duration, status_class="2xx") == 2
    assert value(executor, duration, status_class="5xx") == 1
    assert value(executor, "tep_action_retries_total", queue="http") == 1
    assert value(executor, "tep_actions_in_flight", queue="http") == 0
    assert value(executor, appended, type="action.completed") == 2
    assert value(executor, "tep_executor_deliveries_total", queue="http", disposition="retry") == 1
    assert ("tep_consumer_pending", frozenset({("consumer", "queue-http")})) in executor

    projector = await stack.scrape("projector")
    assert value(projector, "tep_projection_lag_seconds_count") > 0
    assert value(projector, consumed, role="projector", type="plan.submitted") == 1
    assert value(projector, consumed, role="projector", type="action.started") == 3
    assert value(projector, "tep_projection_pending_events") >= 0


async def test_a_submit_without_a_traceparent_starts_a_trace_the_target_sees(
    stack: Stack, settings: TepSettings, http_target: HttpTarget
) -> None:
    manager = await StateManager.connect(settings=settings)
    try:
        only = Action(id="only", request=RequestSpec(url=http_target.url("/echo/only")))
        plan = Plan(id="untraced", actions=[only])
        state = await manager.initialize_state(plan, "untraced-1")
        await manager.wait_for_completion(state.execution_id, timeout=30)
        stored = await manager.log.js.get_last_msg(
            settings.stream, plan_subject("untraced-1"), direct=True
        )
    finally:
        await manager.close()
    started = parse_traceparent((stored.headers or {}).get("traceparent"))
    assert started is not None
    [hit] = http_target.hits
    received = parse_traceparent(hit.headers.get("traceparent"))
    assert received is not None and received.trace_id == started.trace_id
