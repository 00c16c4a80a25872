"""Hostile and broken input published raw onto the log, against real role processes: nothing
stops, nothing is retried forever, no history becomes unreadable, no role believes a forgery.

One system (nats-server, an orchestrator, an executor, a projector as `tep` processes) serves
the module; each test has executions of its own.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest
from roles_support import FaultSystem, dead_letters, eventually, fault_system
from support.http_target import HttpTarget
from tep_cli import ROOT, run_tep

from eventstore import headers as h
from eventstore.codec import encode_event
from eventstore.events import (
    ActionExecuteRequested,
    ActionStarted,
    ErrorInfo,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.jetstream.deadletter import wire_header_size
from eventstore.plan import Action, Plan, RequestSpec
from orchestrator import ids
from projections import StateManager

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def fs(
    tmp_path_factory: pytest.TempPathFactory, target: HttpTarget
) -> AsyncIterator[FaultSystem]:
    async with fault_system(tmp_path_factory.mktemp("poison"), target) as running:
        yield running


def call(target: HttpTarget, e: str, action_id: str, *deps: str, **request: Any) -> Action:
    route = "slow" if "query" in request else "echo"
    spec = RequestSpec(url=target.url(f"/{route}/{e}/{action_id}"), **request)
    return Action(id=action_id, depends_on=list(deps), request=spec)


async def publish(fs: FaultSystem, subject: str, payload: bytes) -> int:
    """Store ``payload`` on ``subject`` as any client could (no headers, no guard)."""
    ack = await fs.system.log.js.publish(subject, payload)
    return int(ack.seq)


async def orchestrator_health(fs: FaultSystem) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        health = await fs.system.orchestrators[0].health(session)
    assert health is not None
    return health


async def all_alive_and_healthy(fs: FaultSystem) -> None:
    roles = [*fs.system.orchestrators, *fs.system.executors, fs.projector]
    async with aiohttp.ClientSession() as session:
        for role in roles:
            assert role is not None
            await eventually(lambda r=role: r.health(session), 10, f"{role.name} unhealthy")


async def letters_for(fs: FaultSystem, sequence: int) -> dict[str, Any]:
    """Dead letters of the original at ``sequence``, by role."""
    found = {}
    for letter in await dead_letters(fs.system.nc, fs.settings):
        headers = letter.headers or {}
        if headers.get(h.DEADLETTER_SEQUENCE) == str(sequence):
            role = str(letter.subject).split(".")[2]
            found[role] = letter
    return found


async def a_plan_still_runs(fs: FaultSystem, target: HttpTarget, name: str) -> int:
    """Submit a small plan, wait for its end and for the view; the end's sequence."""
    e = fs.system.new_id(name)
    await fs.system.submit(e, Plan(id=name, actions=[call(target, e, "a"), call(target, e, "b")]))
    end = await fs.system.wait_end(e, timeout=20)
    assert isinstance(end, ExecutionCompleted)
    sequence = await fs.system.sequence_of(f"execution.completed.{e}")
    assert sequence is not None
    await fs.wait_projected(sequence)
    return sequence


# ------------------------------------------------------------------------ item 2: size


async def test_a_message_just_under_max_payload_is_dead_lettered_and_stops_nothing(
    fs: FaultSystem, target: HttpTarget
) -> None:
    nc = fs.system.nc
    size = nc.max_payload - 64  # fits alone; with any dead-letter headers it would not
    payload = b"{" + b"x" * (size - 1)
    e = fs.system.new_id("huge")
    subjects = {
        "plan": f"plan.submitted.{e}-p",
        "completed": f"action.completed.{e}-c.a",
        "request": f"action.execute.requested.http.{e}-r.a",
    }
    sequences = {name: await publish(fs, subject, payload) for name, subject in subjects.items()}
    # A subject so long that the dead letter's, a few bytes longer, would pass the server's
    # control-line limit (which closes the connection too).
    subjects["subject"] = f"action.completed.{e}-s." + "a" * 3900
    sequences["subject"] = await publish(fs, subjects["subject"], b"{")
    # Who consumes what: the orchestrator rejects the plan (execution.failed) and
    # dead-letters completions; the executor the request; the projector all of them.
    expected = {
        "plan": {"projector"},
        "completed": {"orchestrator", "projector"},
        "request": {"executor", "projector"},
        "subject": {"orchestrator", "projector"},
    }

    for name, sequence in sequences.items():
        letters = await eventually(
            lambda s=sequence, want=expected[name]: _when(letters_for(fs, s), want),
            20,
            f"no dead letters of {name} at {sequence}",
            0.1,
        )
        for role, letter in letters.items():
            headers = letter.headers or {}
            data = letter.data or b""
            assert headers[h.DEADLETTER_SUBJECT] == subjects[name], role
            if name == "subject":
                assert str(letter.subject).endswith(".subject-too-long") and data == b"{"
                continue
            assert headers[h.DEADLETTER_PAYLOAD_TRUNCATED] == str(size), role
            assert 0 < len(data) < size and payload.startswith(data)
            assert wire_header_size(headers) + len(data) <= nc.max_payload

    await all_alive_and_healthy(fs)
    end = await a_plan_still_runs(fs, target, "after-huge")
    rejected = await fs.system.end_of(f"{e}-p")
    assert isinstance(rejected, ExecutionFailed) and rejected.error.code == "invalid_plan"

    # A new projector does not stick on the message either.
    await fs.restart_projector()
    await fs.wait_projected(end)


async def _when(found: Any, wanted: set[str]) -> dict[str, Any] | None:
    letters: dict[str, Any] = await found
    return letters if wanted <= set(letters) else None


_PROBE = """
import sys
import anyio
from argparse import Namespace
from eventstore.config import TepSettings
from eventstore.errors import NatsUnavailableError
from tep.roles import RoleService, run_role

def build(nc):
    async def run():
        # Payload under max_payload, with headers over it: the server drops the connection
        # and the client gives it up for good.
        await nc.publish("probe.oversized", b"x" * (nc.max_payload - 8), headers={"P": "y" * 64})
        await anyio.sleep_forever()
    return RoleService(run=run, report=lambda: (bool(nc.is_connected), {}))

try:
    code = run_role(Namespace(health_port=None), TepSettings(nats_url=sys.argv[1]),
                    role="probe", client_name="probe", build=build, provision=False)
except NatsUnavailableError as exc:
    print(f"tep: {exc}", file=sys.stderr)
    code = 3
sys.exit(code)
"""


def test_a_role_whose_connection_is_closed_for_good_exits_non_zero(
    fs: FaultSystem,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, fs.system.server.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert "closed for good" in result.stderr


# --------------------------------------------------------------- item 5: hostile payloads


def _deep(depth: int) -> str:
    return '{"k":' * depth + "1" + "}" * depth


async def test_a_payload_that_makes_deciding_recurse_too_deep_is_dead_lettered_at_once(
    fs: FaultSystem, target: HttpTarget
) -> None:
    e = fs.system.new_id("deep")
    plan = Plan(
        id="deep",
        actions=[
            call(target, e, "a", query={"delay": "1.5"}),
            Action(
                id="b",
                depends_on=["a"],
                request=RequestSpec(
                    url=target.url(f"/echo/{e}/b"),
                    method="POST",
                    json={"upstream": "{{actions.a.output}}"},
                ),
            ),
        ],
    )
    before = await orchestrator_health(fs)
    await fs.system.submit(e, plan)
    await eventually(lambda: fs.system.hits_per_action(e)["a"], 10, "a never called")
    forged = (
        f'{{"type":"action.completed","execution_id":"{e}","action_id":"a","attempt":1,'
        f'"event_id":"deep-{e}","occurred_at":"2026-01-01T00:00:00.000000Z",'
        f'"output":{_deep(700)}}}'
    ).encode()
    sequence = await publish(fs, f"action.completed.{e}.a", forged)

    await fs.system.wait_orchestrated(sequence)
    letters = await eventually(
        lambda: _when(letters_for(fs, sequence), {"orchestrator"}), 10, "not dead-lettered"
    )
    headers = letters["orchestrator"].headers
    assert headers[h.DEADLETTER_REASON_CODE] == "processing_failed"
    assert "RecursionError" in headers[h.DEADLETTER_REASON]
    after = await orchestrator_health(fs)
    assert after["retried"] == before["retried"]  # dead-lettered, never naked for a retry
    await a_plan_still_runs(fs, target, "after-deep")


# -------------------------------------------------------------- item 6: unreadable history


async def test_an_undecodable_record_leaves_the_history_readable(
    fs: FaultSystem, target: HttpTarget
) -> None:
    end = await a_plan_still_runs(fs, target, "readable")
    e = fs.system.executions[-1]
    garbage = await publish(fs, f"action.started.{e}.a", b"\xff not an event")
    foreign = await publish(
        fs,
        f"action.started.{e}.b",
        encode_event(ActionStarted(execution_id=f"{e}-other", action_id="b", attempt=1)),
    )
    await fs.wait_projected(foreign)
    url = fs.system.server.url

    events = await anyio.to_thread.run_sync(lambda: run_tep("events", e, nats_url=url))
    assert events.returncode == 0, events.stderr
    assert "execution.completed" in events.stdout
    assert f"skipped record {garbage} " in events.stderr
    assert f"skipped record {foreign} " in events.stderr
    as_json = await anyio.to_thread.run_sync(lambda: run_tep("events", e, "--json", nats_url=url))
    listed = [item["sequence"] for item in msgspec.json.decode(as_json.stdout)["events"]]
    assert garbage not in listed and foreign not in listed and end in listed

    at = await anyio.to_thread.run_sync(
        lambda: run_tep("status", e, "--at", str(foreign), "--json", nats_url=url)
    )
    assert at.returncode == 0, at.stderr
    assert msgspec.json.decode(at.stdout)["status"] == "completed"
    async with await StateManager.connect(settings=fs.settings) as sm:
        state = await sm.get_execution_state(e, at=foreign)
        assert state is not None and state.status == "completed"
    # The projector, which must act on every record, dead-lettered both.
    assert "projector" in await letters_for(fs, garbage)
    assert "projector" in await letters_for(fs, foreign)


# -------------------------------------------------------------- item 10: forged, duplicates


async def test_a_second_plan_submitted_is_stored_but_believed_by_no_role(
    fs: FaultSystem, target: HttpTarget
) -> None:
    e = fs.system.new_id("twice")
    plan = Plan(
        id="twice", actions=[call(target, e, "a", query={"delay": "1"}), call(target, e, "b", "a")]
    )
    await fs.system.submit(e, plan)
    await eventually(lambda: fs.system.hits_per_action(e)["a"], 10, "a never called")
    other = Plan(id="other", actions=[call(target, e, "x"), call(target, e, "y")])
    duplicate = await publish(
        fs, f"plan.submitted.{e}", encode_event(PlanSubmitted(execution_id=e, plan=other))
    )
    garbage = await publish(fs, f"plan.submitted.{e}", b"not a plan")

    end = await fs.system.wait_end(e, timeout=20)
    assert isinstance(end, ExecutionCompleted)
    await fs.system.wait_orchestrated(garbage)
    history = await fs.system.history(e)
    dispatched = [x.action_id for x in history if isinstance(x, ActionExecuteRequested)]
    assert sorted(dispatched) == ["a", "b"]
    assert fs.system.hits_per_action(e) == {"a": 1, "b": 1}

    completed_at = await fs.system.sequence_of(f"execution.completed.{e}")
    assert completed_at is not None
    async with await StateManager.connect(settings=fs.settings) as sm:
        state = await sm.get_execution_state(e, min_sequence=completed_at, timeout=20)
    assert state is not None
    assert state.status == "completed" and state.plan_id == "twice"
    assert sorted(state.actions) == ["a", "b"]
    assert [(i.sequence, i.event_type) for i in state.inconsistent] == [
        (duplicate, "plan.submitted")
    ]


async def test_a_forged_end_while_actions_run_is_not_believed(
    fs: FaultSystem, target: HttpTarget
) -> None:
    e = fs.system.new_id("forged")
    plan = Plan(
        id="forged",
        actions=[call(target, e, "a", query={"delay": "1.5"}), call(target, e, "b", "a")],
    )
    await fs.system.submit(e, plan)
    await eventually(lambda: fs.system.hits_per_action(e)["a"], 10, "a never called")
    failed = ExecutionFailed(execution_id=e, error=ErrorInfo(message="forged", code="x"))
    forged_failed = await publish(fs, f"execution.failed.{e}", encode_event(failed))
    forged_done = await publish(
        fs, f"execution.completed.{e}", encode_event(ExecutionCompleted(execution_id=e))
    )

    async with await StateManager.connect(settings=fs.settings) as sm:
        meanwhile = await sm.get_execution_state(e, min_sequence=forged_done, timeout=20)
        assert meanwhile is not None and not meanwhile.terminal
        refused = {i.sequence: i for i in meanwhile.inconsistent}
        assert set(refused) == {forged_failed, forged_done}
        assert "not finished" in refused[forged_done].reason

        async def ended() -> Any:
            state = await sm.get_execution_state(e)
            return state if state is not None and state.terminal else None

        state = await eventually(ended, 20, "the execution never ended in the view", 0.1)
    assert state.status == "completed"
    assert {a.status for a in state.actions.values()} == {"completed"}
    # The orchestrator stored the true end after the forged ones, not instead of nothing.
    last = await fs.system.log.last_on(f"execution.completed.{e}")
    assert last is not None and last.sequence > forged_done
    assert msgspec.json.decode(last.data)["event_id"] == ids.terminal_id(e)
    assert fs.system.hits_per_action(e) == {"a": 1, "b": 1}
