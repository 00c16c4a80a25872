"""The orchestrator under faults, as real processes: the holder of a running execution's
partition killed with SIGKILL mid-run is replaced within seconds, and an event that keeps
failing ends in the dead-letter stream.

Recovery figures are printed (``pytest -s``) rather than asserted: the run must end, correct,
within a deadline.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
from roles_support import dead_letters, eventually, fault_system
from support.http_target import HttpTarget
from system_support import System, dispatches_per_action

from eventstore import headers as h
from eventstore.events import ActionExecuteRequested, ExecutionCompleted
from eventstore.plan import Action, Plan, RequestSpec

pytestmark = pytest.mark.anyio


@pytest.fixture
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


def chain(target: HttpTarget, e: str, length: int) -> Plan:
    """``length`` actions, each depending on the one before (every step needs a decision)."""
    return Plan(
        id="chain",
        actions=[
            Action(
                id=f"s{n}",
                depends_on=[f"s{n - 1}"] if n else [],
                request=RequestSpec(url=target.url(f"/echo/{e}/s{n}")),
            )
            for n in range(length)
        ],
    )


async def run_chain(system: System, target: HttpTarget, length: int) -> float:
    """Seconds from submit to end of a chain on a system without faults."""
    e = system.new_id("calm")
    started = time.monotonic()
    await system.submit(e, chain(target, e, length))
    assert isinstance(await system.wait_end(e, timeout=30), ExecutionCompleted)
    return time.monotonic() - started


async def test_a_killed_partition_holder_is_replaced_within_seconds(
    tmp_path: pytest.TempPathFactory, target: HttpTarget
) -> None:
    length = 40
    async with fault_system(tmp_path, target, orchestrators=2, projector=False) as fs:
        system = fs.system
        calm = await run_chain(system, target, length)

        e = system.new_id("killed")
        leader = await system.wait_leader(execution_id=e)
        started = time.monotonic()
        await system.submit(e, chain(target, e, length))
        await eventually(lambda: system.hits_per_action(e)["s10"], 10, "s10 never called")
        # Killed between consuming and appending: stopped, it still takes the next outcome
        # (its pull requests are outstanding), then dies holding it.
        os.killpg(leader.process.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        await eventually(lambda: held(system, e), 10, "the stopped holder took nothing")
        leader.kill()
        killed = time.monotonic()
        standby = await system.wait_leader(timeout=20, execution_id=e)
        took_over = time.monotonic() - stopped
        end = await system.wait_end(e, timeout=30)
        faulted = time.monotonic() - started

        assert standby is not leader
        assert isinstance(end, ExecutionCompleted)
        history = await system.history(e)
        expected = {f"s{n}": 1 for n in range(length)}
        assert dispatches_per_action(history) == expected
        assert system.hits_per_action(e) == expected
        print(
            f"\nholder kill: run {faulted:.2f}s vs {calm:.2f}s without the fault "
            f"(+{faulted - calm:.2f}s); the partition served again {took_over:.2f}s after "
            f"its holder stopped ({killed - stopped:.2f}s before it was killed)"
        )


async def held(system: System, execution_id: str) -> bool:
    """Whether the consumer of the execution's partition has delivered messages not
    acknowledged yet."""
    return await system.unsettled(execution_id) > 0


async def test_an_event_that_keeps_failing_is_dead_lettered_after_max_deliveries(
    tmp_path: pytest.TempPathFactory, target: HttpTarget
) -> None:
    env = {"TEP_ORCHESTRATOR_MAX_DELIVERIES": "3"}
    async with fault_system(tmp_path, target, projector=False, orchestrator_env=env) as fs:
        system = fs.system
        e = system.new_id("stuck")
        slow = RequestSpec(url=target.url(f"/slow/{e}/a"), query={"delay": "1"})
        plan = Plan(
            id="stuck",
            actions=[
                Action(id="a", request=slow),
                Action(id="b", depends_on=["a"], request=RequestSpec(url=target.url("/echo/b"))),
            ],
        )
        await system.submit(e, plan)
        await eventually(lambda: system.hits_per_action(e)["a"], 10, "a never called")
        # Garbage where b's dispatch must go: every dispatch of b now conflicts, whatever the
        # orchestrator reloads (the reader skips the garbage).
        await system.log.js.publish(f"action.execute.requested.http.{e}.b", b"garbage")
        completed = await eventually(
            lambda: system.sequence_of(f"action.completed.{e}.a"), 10, "a never completed"
        )

        async def letter() -> object:
            for found in await dead_letters(system.nc, fs.settings):
                headers = found.headers or {}
                if headers.get(h.DEADLETTER_SEQUENCE) == str(completed) and ".orchestrator." in str(
                    found.subject
                ):
                    return headers
            return None

        headers = await eventually(letter, 20, "the failing event was never dead-lettered", 0.1)
        assert isinstance(headers, dict)
        assert headers[h.DEADLETTER_REASON_CODE] == "retries_exhausted"
        assert "after 3 deliveries" in headers[h.DEADLETTER_REASON]
        await system.wait_orchestrated(completed)
        history = await system.history(e)
        assert [x.action_id for x in history if isinstance(x, ActionExecuteRequested)] == ["a"]

        # The orchestrator goes on with other work.
        other = system.new_id("other")
        await system.submit(other, chain(target, other, 3))
        assert isinstance(await system.wait_end(other, timeout=20), ExecutionCompleted)
