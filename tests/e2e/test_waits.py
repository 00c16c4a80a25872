"""Waitpoints and sleeps through the whole system: 2 `tep orchestrator` replicas, a `tep
executor` and a `tep projector` as processes on one nats-server, a real HTTP target, resumes
by the StateManager and by `tep resume`.

One system serves the module (each test its own executions). The last test rebuilds the view
after everything the others did and compares it with the live one, key by key. (Waits through
kills of every role and a server restart: tests/faults/test_wait_faults.py.)
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from support.http_target import HttpTarget
from system_support import System, eventually, projected, running_system
from tep_cli import child_env, run_tep, tep_command

from eventstore.config import TepSettings
from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCompleted,
    ActionFailed,
    ActionResumeRequested,
    ActionSkipped,
    ActionWaiting,
    Event,
    ExecutionCompleted,
    ExecutionFailed,
)
from eventstore.fold import fold
from eventstore.jetstream.scan import scan_keys
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.state import ActionState, ExecutionState
from projections import StateManager, WaitpointRefusedError, rebuild
from projections.buckets import ensure_meta_bucket, read_pointer
from projections.view import STATS_KEY, decode_stats

pytestmark = pytest.mark.anyio

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["approved"],
    "properties": {"approved": {"type": "boolean"}, "amount": {"type": "integer"}},
}


@dataclass
class Waits:
    """The system, a StateManager on its connection, and `tep` commands against it."""

    system: System
    sm: StateManager
    settings: TepSettings

    async def tep(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``tep ARGS`` as a subprocess (in a thread: the HTTP target shares this loop)."""
        run = functools.partial(run_tep, *args, nats_url=self.system.server.url)
        return await anyio.to_thread.run_sync(run)

    async def state(self, execution_id: str) -> ExecutionState:
        """The execution's state folded from the log."""
        state = fold(await self.system.log.read_execution(execution_id))
        assert state is not None
        return state

    async def waiting(self, execution_id: str, action_id: str) -> ActionState:
        """The action's state once it waits."""

        async def waits() -> ActionState | None:
            action = (await self.state(execution_id)).actions[action_id]
            return action if action.status == "waiting" else None

        found: ActionState = await eventually(waits, 15, f"{action_id} never waited")
        return found

    async def listed_waiting(self) -> set[str]:
        return {s.execution_id for s in await self.sm.list_executions(status="waiting")}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def waits(
    tmp_path_factory: pytest.TempPathFactory, target: HttpTarget
) -> AsyncIterator[Waits]:
    directory = tmp_path_factory.mktemp("waits")
    async with (
        running_system(directory, target, orchestrators=2, executors=1) as system,
        projected(system, directory) as sm,
    ):
        settings = sm.settings
        yield Waits(system, sm, settings)


def waitpoint(timeout_s: float | None = None, action_id: str = "approve") -> Action:
    return Action(id=action_id, type="wait", timeout_s=timeout_s, schema=SCHEMA)


def call(target: HttpTarget, execution_id: str, action_id: str, *deps: str, **query: str) -> Action:
    spec = RequestSpec(url=target.url(f"/echo/{execution_id}/{action_id}"), query=query)
    return Action(id=action_id, depends_on=list(deps), request=spec)


def approval_plan(target: HttpTarget, execution_id: str, timeout_s: float | None = None) -> Plan:
    """A waitpoint, then a call that uses the resume data."""
    amount = "{{actions.approve.output.amount}}"
    return Plan(
        id="approval",
        actions=[
            waitpoint(timeout_s),
            call(target, execution_id, "after", "approve", amount=amount),
        ],
    )


def outcomes(history: list[Event], action_id: str) -> list[ActionCompleted | ActionFailed]:
    return [
        e
        for e in history
        if isinstance(e, ActionCompleted | ActionFailed) and e.action_id == action_id
    ]


def requests(history: list[Event]) -> list[ActionResumeRequested]:
    return [e for e in history if isinstance(e, ActionResumeRequested)]


async def stored_at(system: System, subject: str) -> datetime:
    """When the server stored the last message on ``subject``."""
    msg = await system.log.js.get_last_msg(system.log.stream, subject, direct=True)
    assert msg.time is not None
    return msg.time


# ------------------------------------------------------------------------------ resume


async def test_approve_the_data_becomes_the_output_used_downstream(
    waits: Waits, target: HttpTarget
) -> None:
    system = waits.system
    e = system.new_id("approve")
    await system.submit(e, approval_plan(target, e))
    await waits.waiting(e, "approve")
    await eventually(lambda: _has(waits.listed_waiting(), e), 15, "not listed as waiting")
    listed = await waits.tep("list", "--status", "waiting", "--json")

    final = await waits.sm.complete_waitpoint(
        e, "approve", {"approved": True, "amount": 42}, requested_by="ana"
    )

    end = await system.wait_end(e)
    history = await system.history(e)
    [request] = requests(history)
    [outcome] = outcomes(history, "approve")
    assert listed.returncode == 0, listed.stderr
    assert e in [x["execution_id"] for x in json.loads(listed.stdout)["executions"]]
    assert final.status == "completed" and final.output == {"approved": True, "amount": 42}
    assert isinstance(outcome, ActionCompleted) and outcome.causation_id == request.event_id
    assert request.requested_by == "ana"
    assert isinstance(end, ExecutionCompleted)
    assert [hit.query["amount"] for hit in target.hits_for(f"/echo/{e}/after")] == ["42"]
    await eventually(lambda: _lacks(waits.listed_waiting(), e), 15, "still listed as waiting")


async def test_reject_with_tep_resume_fails_the_waitpoint_and_the_execution(
    waits: Waits, target: HttpTarget
) -> None:
    system = waits.system
    e = system.new_id("reject")
    await system.submit(e, approval_plan(target, e))
    await waits.waiting(e, "approve")

    result = await waits.tep("resume", e, "approve", "--reject", "over budget")

    end = await system.wait_end(e)
    history = await system.history(e)
    [outcome] = outcomes(history, "approve")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{e} approve failed: rejected: ")
    assert isinstance(outcome, ActionFailed) and outcome.error.code == ErrorCode.REJECTED
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["approve"]
    assert [s.action_id for s in history if isinstance(s, ActionSkipped)] == ["after"]
    assert target.hits_for(f"/echo/{e}/after") == []


async def test_a_waitpoint_times_out_and_a_late_resume_is_refused(
    waits: Waits, target: HttpTarget
) -> None:
    system = waits.system
    e = system.new_id("timeout")
    await system.submit(e, approval_plan(target, e, timeout_s=1))

    end = await system.wait_end(e)
    with pytest.raises(WaitpointRefusedError) as caught:
        await waits.sm.complete_waitpoint(e, "approve", {"approved": True})
    late = await waits.tep("resume", e, "approve", "--data", '{"approved": true}')

    [outcome] = outcomes(await system.history(e), "approve")
    assert isinstance(outcome, ActionFailed) and outcome.error.code == ErrorCode.TIMEOUT
    assert isinstance(end, ExecutionFailed)
    assert caught.value.reason == "action approve already failed (timeout)"
    assert late.returncode == 2
    assert late.stderr == "tep: refused: action approve already failed (timeout)\n"
    assert requests(await system.history(e)) == []


async def test_bad_resume_data_is_refused_with_each_problem_and_the_wait_goes_on(
    waits: Waits, target: HttpTarget
) -> None:
    system = waits.system
    e = system.new_id("bad-data")
    await system.submit(e, approval_plan(target, e, timeout_s=600))
    await waits.waiting(e, "approve")

    bad = await waits.tep("resume", e, "approve", "--data", '{"approved": "yes", "amount": "x"}')
    not_json = await waits.tep("resume", e, "approve", "--data", "{approved")
    with pytest.raises(WaitpointRefusedError) as caught:
        await waits.sm.complete_waitpoint(e, "approve", ["not", "an", "object"])
    # A request stored without checking first (anyone may append one) is refused by the fold,
    # and the status says why.
    await system.log.append(
        ActionResumeRequested(execution_id=e, action_id="approve", data={"amount": 1})
    )
    still = await waits.waiting(e, "approve")
    status = await waits.tep("status", e, "--min-sequence", str(await system.log.last_sequence()))
    as_json = await waits.tep("status", e, "--json")

    final = await waits.sm.complete_waitpoint(e, "approve", {"approved": True, "amount": 5})

    assert bad.returncode == 2
    assert bad.stderr == (
        "tep: refused: the data does not match the waitpoint's schema: "
        "data.amount: 'x' is not of type 'integer'; data.approved: 'yes' is not of type "
        "'boolean'\n"
    )
    assert not_json.returncode == 2 and "--data: not JSON" in not_json.stderr
    assert caught.value.problems == ("data: ['not', 'an', 'object'] is not of type 'object'",)
    assert still.wait is not None and still.wait.refused is not None
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith("~ approve"))
    assert "waiting" in row and "waitpoint until " in row
    assert f"(resume: tep resume {e} approve --data JSON)" in row
    assert "last resume refused: the data does not match the waitpoint's schema: data: " in row
    wait = json.loads(as_json.stdout)["actions"]["approve"]["wait"]
    assert wait["reason"] == "waitpoint" and wait["schema"] == SCHEMA and wait["until"]
    assert final.status == "completed" and final.output == {"approved": True, "amount": 5}
    assert isinstance(await system.wait_end(e), ExecutionCompleted)
    assert len(requests(await system.history(e))) == 2  # the refused one and the good one


async def test_a_second_resume_is_refused_and_changes_nothing(
    waits: Waits, target: HttpTarget
) -> None:
    system = waits.system
    e = system.new_id("twice")
    await system.submit(e, approval_plan(target, e))
    await waits.waiting(e, "approve")
    await waits.sm.complete_waitpoint(e, "approve", {"approved": True, "amount": 1})

    with pytest.raises(WaitpointRefusedError) as caught:
        await waits.sm.complete_waitpoint(e, "approve", {"approved": False, "amount": 2})
    again = await waits.tep("resume", e, "approve", "--reject", "too late", "--json")
    no_action = await waits.tep("resume", e, "nope", "--data", "{}")
    no_execution = await waits.tep("resume", "nope", "approve", "--data", "{}")

    await system.wait_end(e)
    history = await system.history(e)
    assert caught.value.reason == "action approve already completed"
    assert again.returncode == 2
    assert json.loads(again.stdout)["outcome"] == "refused"
    assert (no_action.returncode, no_action.stderr) == (
        2,
        f"tep: execution {e!r} has no action 'nope'\n",
    )
    assert (no_execution.returncode, no_execution.stderr) == (2, "tep: unknown execution 'nope'\n")
    assert len(requests(history)) == 1 and len(outcomes(history, "approve")) == 1
    assert (await waits.state(e)).actions["approve"].output == {"approved": True, "amount": 1}


async def test_a_resume_racing_the_timeout_has_exactly_one_outcome_and_knows_if_it_won(
    waits: Waits, target: HttpTarget
) -> None:
    system = waits.system
    # Resumes aimed at moments around the timeout: some before it, some after (which one
    # wins each is up to the clocks; that each says the truth is not).
    offsets = [-0.2, -0.1, -0.05, -0.02, 0.0, 0.02, 0.05, 0.1, 0.3]
    said: dict[str, bool] = {}

    async def race(e: str, offset: float) -> None:
        await system.submit(e, approval_plan(target, e, timeout_s=1))
        action = await waits.waiting(e, "approve")
        assert action.wait is not None and action.wait.until is not None
        due = datetime.fromisoformat(action.wait.until)
        await anyio.sleep(max((due - datetime.now(UTC)).total_seconds() + offset, 0))
        try:
            await waits.sm.complete_waitpoint(
                e, "approve", {"approved": True, "amount": 9}, requested_by=e
            )
            said[e] = True
        except WaitpointRefusedError:
            said[e] = False

    async with anyio.create_task_group() as group:
        for n, offset in enumerate(offsets):
            group.start_soon(race, system.new_id(f"race{n}"), offset)

    for e, won in said.items():
        await system.wait_end(e)
        history = await system.history(e)
        [outcome] = outcomes(history, "approve")
        ours = [r for r in requests(history) if r.requested_by == e]
        resumed = bool(ours) and outcome.causation_id == ours[0].event_id
        assert won is resumed, (e, won, outcome)
        if won:
            assert isinstance(outcome, ActionCompleted)
        else:
            assert isinstance(outcome, ActionFailed) and outcome.error.code == ErrorCode.TIMEOUT
    assert len(said) == len(offsets)


async def test_a_token_handed_to_a_sibling_completes_only_its_waitpoint(
    waits: Waits, target: HttpTarget
) -> None:
    system = waits.system
    e = system.new_id("token")
    plan = Plan(
        id="approval-link",
        actions=[
            waitpoint(),
            call(target, e, "notify", token="{{actions.approve.token}}"),
            call(target, e, "after", "approve", amount="{{actions.approve.output.amount}}"),
        ],
    )
    await system.submit(e, plan)
    hits = await eventually(lambda: target.hits_for(f"/echo/{e}/notify"), 15, "not notified")
    token = hits[0].query["token"]
    guessed = token[:-2] + ("AA" if not token.endswith("AA") else "BB")

    wrong = await waits.tep("resume", "--token", guessed, "--data", '{"approved": true}')
    with pytest.raises(WaitpointRefusedError) as caught:
        await waits.sm.complete_by_token(f"{e}.after.{token.rsplit('.', 1)[1]}", {})
    final = await waits.sm.complete_by_token(token, {"approved": True, "amount": 3})

    await system.wait_end(e)
    [request] = requests(await system.history(e))
    assert token.startswith(f"{e}.approve.") and len(token.rsplit(".", 1)[1]) >= 32
    assert wrong.returncode == 2
    assert wrong.stderr == "tep: refused: the token does not match this waitpoint\n"
    assert caught.value.reason == "action after is not waiting (it is pending)"
    assert final.status == "completed" and request.token == token
    assert [hit.query["amount"] for hit in target.hits_for(f"/echo/{e}/after")] == ["3"]


# ------------------------------------------------------------------------------ sleeps


async def test_sleeps_of_a_duration_and_until_a_time_wake_after_it(
    waits: Waits, target: HttpTarget
) -> None:
    system = waits.system
    for_two, until = system.new_id("sleep-for"), system.new_id("sleep-until")
    wake_at = datetime.now(UTC) + timedelta(seconds=2)
    naps = {
        for_two: Action(id="nap", type="sleep", duration_s=2),
        until: Action(id="nap", type="sleep", until=wake_at.isoformat().replace("+00:00", "Z")),
    }
    for e, nap in naps.items():
        await system.submit(e, Plan(id="nap", actions=[nap, call(target, e, "after", "nap")]))
    watched: list[subprocess.CompletedProcess[str]] = []

    async def watch() -> None:
        command = tep_command("watch", until, "--plain", "--timeout", "30")
        run = functools.partial(
            subprocess.run,
            command,
            env=child_env(system.server.url),
            capture_output=True,
            text=True,
        )
        watched.append(await anyio.to_thread.run_sync(run))

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        sleeping = await waits.waiting(for_two, "nap")
        assert sleeping.wait is not None and sleeping.wait.until is not None
        status = await waits.tep("status", for_two, "--at", str(sleeping.wait.sequence))

    for e in naps:
        assert isinstance(await system.wait_end(e), ExecutionCompleted)
    # The sleep ends 2 s after it began (after its execution was submitted), not before.
    due = datetime.fromisoformat(sleeping.wait.until)
    submitted = (await waits.state(for_two)).submitted_at
    assert submitted is not None
    assert due >= datetime.fromisoformat(submitted) + timedelta(seconds=2)
    assert await stored_at(system, f"action.timer.fired.{for_two}.nap") >= due
    assert await stored_at(system, f"action.completed.{for_two}.nap") >= due
    assert await stored_at(system, f"action.completed.{until}.nap") >= wake_at
    assert f"sleeping until {sleeping.wait.until}" in status.stdout
    [watch_result] = watched
    assert watch_result.returncode == 0, watch_result.stderr
    assert "nap waiting (sleeping until " in watch_result.stdout
    assert f"{until} completed" in watch_result.stdout
    [waiting_event] = [e for e in await system.history(until) if isinstance(e, ActionWaiting)]
    assert datetime.fromisoformat(waiting_event.until or "") == wake_at


# ------------------------------------------------------------------------------ listing, rebuild


async def test_tep_list_waiting_and_a_rebuild_after_everything_equals_the_live_view(
    waits: Waits, target: HttpTarget
) -> None:
    system = waits.system
    e = system.new_id("left-waiting")
    await system.submit(e, approval_plan(target, e))
    await waits.waiting(e, "approve")
    await eventually(lambda: _has(waits.listed_waiting(), e), 15, "not listed as waiting")
    listed = await waits.tep("list", "--status", "waiting")

    last = await system.log.last_sequence()
    await waits.sm.wait_for_sequence(last, timeout=30)
    pointer = await read_pointer(await ensure_meta_bucket(system.log.js, waits.settings))
    assert pointer is not None
    live_bucket = pointer.bucket
    live = await scan_keys(system.nc, live_bucket)
    report = await rebuild(system.nc, waits.settings, keep_old=True)
    rebuilt = await scan_keys(system.nc, report.bucket)

    assert listed.returncode == 0, listed.stderr
    rows = [line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()]
    assert rows[:-1] == [e] and rows[-1] == "1"  # then "1 shown; all executions: ..."
    assert await system.log.last_sequence() == last  # nothing happened meanwhile
    assert _comparable(rebuilt) == _comparable(live)
    assert [k for k in rebuilt if k.startswith("idx.waiting.")] == [f"idx.waiting.approval.{e}"]


def _comparable(contents: dict[str, bytes]) -> dict[str, object]:
    return {k: decode_stats(v) if k == STATS_KEY else v for k, v in contents.items()}


async def _has(found: Any, execution_id: str) -> bool:
    return execution_id in await found


async def _lacks(found: Any, execution_id: str) -> bool:
    return execution_id not in await found
