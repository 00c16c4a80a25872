"""Re-running executions from a step through the whole system: 2 `tep orchestrator` replicas, a
`tep executor` and a `tep projector` as processes on one nats-server, an HTTP target whose
steps fail until they are fixed, retries by `tep retry` and by the StateManager.

One system serves the module (each test its own executions). The last test rebuilds the view
after everything the others did and compares it with the live one, key by key.
"""

from __future__ import annotations

import functools
import itertools
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiohttp import web
from support.http_target import HttpTarget
from system_support import System, eventually, projected, running_system
from tep_cli import run_tep

from eventstore.config import TepSettings
from eventstore.events import Event, ExecutionRetried
from eventstore.fold import fold
from eventstore.jetstream.scan import scan_keys
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.state import ExecutionState
from eventstore.subjects import terminal_filter
from projections import RetryRefusedError, StateManager, rebuild
from projections.buckets import ensure_meta_bucket, read_pointer
from projections.retry import retry
from projections.view import STATS_KEY, decode_stats

pytestmark = pytest.mark.anyio


@dataclass
class Steps:
    """An HTTP target: ``/step/<execution>/<action>`` answers 200 with a call number, or 500
    while the step is in :attr:`failing`; every call is counted."""

    failing: set[str] = field(default_factory=set)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, execution_id: str, action_id: str, **query: str) -> RequestSpec:
        path = f"http://127.0.0.1:{self.port}/step/{execution_id}/{action_id}"
        return RequestSpec(url=path, query=query)

    def counts(self, execution_id: str) -> Counter[str]:
        prefix = f"{execution_id}/"
        return Counter(p.removeprefix(prefix) for p, _ in self.calls if p.startswith(prefix))

    def queries(self, execution_id: str, action_id: str) -> list[dict[str, str]]:
        return [q for p, q in self.calls if p == f"{execution_id}/{action_id}"]

    async def _step(self, request: web.Request) -> web.Response:
        step = f"{request.match_info['execution']}/{request.match_info['action']}"
        self.calls.append((step, dict(request.query)))
        if step in self.failing:
            return web.json_response({"error": "not yet"}, status=500)
        return web.json_response({"step": step, "call": next(self._numbers)})


@dataclass
class Retries:
    """The system, a StateManager on its connection, the target, and `tep` against them."""

    system: System
    sm: StateManager
    settings: TepSettings
    steps: Steps

    async def tep(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``tep ARGS`` as a subprocess (in a thread: the target shares this loop)."""
        run = functools.partial(run_tep, *args, nats_url=self.system.server.url)
        return await anyio.to_thread.run_sync(run)

    async def state(self, execution_id: str) -> ExecutionState:
        """The execution's state folded from the log."""
        state = fold(await self.system.log.read_execution(execution_id))
        assert state is not None
        return state

    async def ended(self, execution_id: str, run: int = 1) -> ExecutionState:
        """The state once run ``run`` of the execution has ended."""

        async def over() -> ExecutionState | None:
            state = await self.state(execution_id)
            return state if state.terminal and state.run == run else None

        found: ExecutionState = await eventually(over, 20, f"run {run} of {execution_id} ran on")
        return found

    async def waiting(self, execution_id: str, action_id: str) -> None:
        async def waits() -> bool:
            return (await self.state(execution_id)).actions[action_id].status == "waiting"

        await eventually(waits, 15, f"{action_id} never waited")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def steps() -> AsyncIterator[Steps]:
    target = Steps()
    app = web.Application()
    app.router.add_get("/step/{execution}/{action}", target._step)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    target.port = int(runner.addresses[0][1])
    try:
        yield target
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def retries(tmp_path_factory: pytest.TempPathFactory, steps: Steps) -> AsyncIterator[Retries]:
    directory = tmp_path_factory.mktemp("retry")
    async with (
        HttpTarget() as unused,
        running_system(directory, unused, orchestrators=2, executors=1) as system,
        projected(system, directory) as sm,
    ):
        settings = sm.settings
        yield Retries(system, sm, settings, steps)


def four_steps(steps: Steps, e: str) -> Plan:
    """``step1 -> step2 -> step3 -> step4``; step4 sends step2's call number along."""
    return Plan(
        id="four-steps",
        actions=[
            Action(id="step1", request=steps.url(e, "step1")),
            Action(id="step2", depends_on=["step1"], request=steps.url(e, "step2")),
            Action(id="step3", depends_on=["step2"], request=steps.url(e, "step3")),
            Action(
                id="step4",
                depends_on=["step3"],
                request=steps.url(e, "step4", from2="{{actions.step2.output.call}}"),
            ),
        ],
    )


def retried_events(history: list[Event]) -> list[ExecutionRetried]:
    return [e for e in history if isinstance(e, ExecutionRetried)]


# ------------------------------------------------------------------------------ retries


async def test_retry_from_the_failed_step_calls_only_it_and_after_and_keeps_upstream_outputs(
    retries: Retries,
) -> None:
    system, steps = retries.system, retries.steps
    e = system.new_id("from-step3")
    steps.failing.add(f"{e}/step3")
    await system.submit(e, four_steps(steps, e))
    failed = await retries.ended(e)
    assert failed.status == "failed"
    assert steps.counts(e) == Counter(step1=1, step2=1, step3=1)
    step2_call = failed.actions["step2"].output
    assert step2_call is not None

    steps.failing.discard(f"{e}/step3")
    result = await retries.tep("retry", e, "--from", "step3", "--reason", "fixed")
    final = await retries.ended(e, run=2)

    assert result.returncode == 0, result.stderr
    assert f"{e}: run 2 started; running again: step3, step4" in result.stdout
    assert final.status == "completed"
    assert steps.counts(e) == Counter(step1=1, step2=1, step3=2, step4=1)
    assert steps.queries(e, "step4") == [{"from2": str(step2_call["call"])}]
    [retried] = retried_events(await system.history(e))
    assert retried.reset == ["step3", "step4"] and retried.from_actions == ["step3"]
    assert retried.reason == "fixed" and retried.requested_by
    view = await retries.sm.get_execution_state(e, min_sequence=final.last_sequence)
    assert view is not None and view.status == "completed" and view.run == 2
    step3 = view.actions["step3"]
    assert step3.run == 2 and step3.status == "completed"
    assert [(r.run, r.status) for r in step3.runs] == [(1, "failed")]
    assert step3.runs[0].error is not None and step3.runs[0].error.code == "http_5xx"
    assert [(r.run, r.status) for r in view.actions["step4"].runs] == [(1, "skipped")]
    assert view.actions["step2"].runs == [] and view.actions["step2"].output == step2_call


async def test_waiting_and_watching_right_after_a_retry_follow_the_new_run(
    retries: Retries,
) -> None:
    system, steps = retries.system, retries.steps
    e = system.new_id("watch-after")
    steps.failing.add(f"{e}/step3")
    await system.submit(e, four_steps(steps, e))
    failed = await retries.ended(e)
    await retries.sm.wait_for_sequence(failed.last_sequence, timeout=15)
    steps.failing.discard(f"{e}/step3")

    retried = await retries.sm.retry(e, from_actions=["step3"])
    # The view may still show run 1's end: neither the wait nor the watch may take it.
    done = await retries.sm.wait_for_completion(e, timeout=20)
    watched = await retries.tep("watch", e, "--plain", "--timeout", "20")

    assert retried.run == 2
    assert done.run == 2 and done.status == "completed"
    assert watched.returncode == 0, watched.stdout + watched.stderr


async def test_a_cancelled_execution_is_retried_and_its_waitpoint_resumed(
    retries: Retries,
) -> None:
    system, steps = retries.system, retries.steps
    e = system.new_id("cancelled")
    plan = Plan(
        id="approval",
        actions=[
            Action(id="fetch", request=steps.url(e, "fetch")),
            Action(id="approve", type="wait", depends_on=["fetch"]),
            Action(id="send", depends_on=["approve"], request=steps.url(e, "send")),
        ],
    )
    await system.submit(e, plan)
    await retries.waiting(e, "approve")
    cancel = await retries.tep("cancel", e, "--wait", "--timeout", "20")
    assert cancel.returncode == 0, cancel.stderr

    state = await retries.sm.retry(e, requested_by="ops", reason="approve after all")
    assert state.run == 2 and state.actions["approve"].run == 2
    await retries.waiting(e, "approve")
    await retries.sm.complete_waitpoint(e, "approve", {"ok": True})
    final = await retries.ended(e, run=2)

    assert final.status == "completed"
    assert steps.counts(e) == Counter(fetch=1, send=1)
    assert final.actions["approve"].output == {"ok": True}
    assert [r.status for r in final.actions["approve"].runs] == ["cancelled"]
    assert final.actions["fetch"].run == 1


async def test_only_failed_runs_what_failed_and_what_it_held_back(retries: Retries) -> None:
    system, steps = retries.system, retries.steps
    e = system.new_id("only-failed")
    plan = Plan(
        id="fan-in",
        actions=[
            Action(id="a", request=steps.url(e, "a")),
            Action(id="b", request=steps.url(e, "b")),
            Action(id="c", depends_on=["a", "b"], request=steps.url(e, "c")),
        ],
    )
    steps.failing.add(f"{e}/a")
    await system.submit(e, plan)
    assert (await retries.ended(e)).status == "failed"
    steps.failing.discard(f"{e}/a")

    result = await retries.tep("retry", e, "--only-failed", "--json")
    final = await retries.ended(e, run=2)

    assert result.returncode == 0, result.stderr
    assert '"reset":["a","c"]' in result.stdout and '"kept":["b"]' in result.stdout
    assert final.status == "completed"
    assert steps.counts(e) == Counter(a=2, b=1, c=1)


async def test_a_running_execution_is_refused_in_one_line_and_nothing_is_appended(
    retries: Retries,
) -> None:
    system, steps = retries.system, retries.steps
    e = system.new_id("running")
    plan = Plan(
        id="held",
        actions=[
            Action(id="hold", type="wait"),
            Action(id="after", depends_on=["hold"], request=steps.url(e, "after")),
        ],
    )
    await system.submit(e, plan)
    await retries.waiting(e, "hold")
    before = await system.log.last_sequence()

    refused = await retries.tep("retry", e, "--from", "hold")
    unknown = await retries.tep("retry", e, "--from", "nope")

    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(f"tep: execution {e} is running: only a failed")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert await system.log.last_on(terminal_filter(e)) is None
    assert await system.log.last_sequence() == before


async def test_two_racing_retries_one_lands(retries: Retries) -> None:
    system, steps = retries.system, retries.steps
    e = system.new_id("race")
    steps.failing.add(f"{e}/step3")
    await system.submit(e, four_steps(steps, e))
    await retries.ended(e)
    steps.failing.discard(f"{e}/step3")

    outcomes: list[ExecutionState | BaseException] = []

    async def attempt(from_action: str) -> None:
        try:
            outcomes.append(await retry(system.log, e, from_actions=[from_action]))
        except RetryRefusedError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(attempt, "step2")
        tg.start_soon(attempt, "step3")
    final = await retries.ended(e, run=2)

    landed = [o for o in outcomes if isinstance(o, ExecutionState)]
    refused = [o for o in outcomes if isinstance(o, RetryRefusedError)]
    assert len(landed) == 1 and len(refused) == 1
    assert "is running" in str(refused[0])
    [retried] = retried_events(await system.history(e))
    assert retried.run == 2 and final.status == "completed"
    assert steps.counts(e)["step3"] == 2


# ------------------------------------------------------------------------------ rebuild


async def test_a_rebuild_after_every_retry_equals_the_live_view(retries: Retries) -> None:
    system = retries.system
    last = await system.log.last_sequence()
    await retries.sm.wait_for_sequence(last, timeout=30)
    pointer = await read_pointer(await ensure_meta_bucket(system.log.js, retries.settings))
    assert pointer is not None
    live = await scan_keys(system.nc, pointer.bucket)
    report = await rebuild(system.nc, retries.settings, keep_old=True)
    rebuilt = await scan_keys(system.nc, report.bucket)

    assert await system.log.last_sequence() == last  # nothing happened meanwhile
    assert _comparable(rebuilt) == _comparable(live)
    assert any(b'"runs":[{"run":1' in value for value in rebuilt.values())


def _comparable(contents: dict[str, bytes]) -> dict[str, Any]:
    return {k: decode_stats(v) if k == STATS_KEY else v for k, v in contents.items()}
