"""Completing waitpoints through the StateManager against a real nats-server, without an
orchestrator: the histories are written as the orchestrator would (tests/support/wait_histories),
so what is checked here is the client's side: what it refuses before appending (in the fold's
words), what it appends, and how it follows the log to the outcome. (The whole system, with
orchestrators deciding the outcomes: tests/e2e/test_waits.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from support.nats_auth import AuthServer, provision
from support.wait_histories import Stage, token_of, wait_history
from support.waiting import eventually

from eventstore.access import Role
from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ActionResumeRequested
from eventstore.jetstream.log import EventLog
from projections import StateManager
from projections.errors import (
    ActionNotFoundError,
    ExecutionNotFoundError,
    InvalidExecutionIdError,
    ResumeTimeoutError,
    WaitpointRefusedError,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sm(settings: TepSettings) -> AsyncIterator[StateManager]:
    async with await StateManager.connect(settings=settings) as manager:
        yield manager


async def at_stage(log: EventLog, execution_id: str, stage: Stage) -> int:
    """Write the execution's history up to ``stage``; the last sequence."""
    results = await log.append_many(wait_history(execution_id, stage))
    return results[-1].sequence


async def requests_of(log: EventLog, execution_id: str) -> list[ActionResumeRequested]:
    return [
        r.event
        for r in await log.read_execution(execution_id)
        if isinstance(r.event, ActionResumeRequested)
    ]


async def refusal(sm: StateManager, *args: object, **kwargs: object) -> WaitpointRefusedError:
    with pytest.raises(WaitpointRefusedError) as caught:
        await sm.complete_waitpoint(*args, **kwargs)  # type: ignore[arg-type]
    return caught.value


# ------------------------------------------------------------------ refused before appending


async def test_data_that_fails_the_schema_is_refused_with_each_problem_and_nothing_appended(
    sm: StateManager, event_log: EventLog
) -> None:
    last = await at_stage(event_log, "e1", "waiting")

    refused = await refusal(sm, "e1", "approve", {"approved": "yes", "amount": 1.5})

    assert refused.problems == (
        "data.amount: 1.5 is not of type 'integer'",
        "data.approved: 'yes' is not of type 'boolean'",
    )
    assert refused.reason == (
        "the data does not match the waitpoint's schema: "
        "data.amount: 1.5 is not of type 'integer'; data.approved: 'yes' is not of type 'boolean'"
    )
    assert not refused.appended and refused.execution_id == "e1"
    assert await event_log.last_sequence() == last
    # A rejection needs no data that matches.
    rejected = await sm.complete_waitpoint("e1", "approve", reject="no", wait=False)
    assert rejected.wait is not None and rejected.wait.resume is not None
    assert rejected.wait.resume.reject == "no"


@pytest.mark.parametrize(
    ("stage", "action", "reason"),
    [
        ("waiting", "nap", "action nap is a sleep; only waitpoints are resumed"),
        ("resumed", "approve", "action approve was already resumed"),
        ("completed", "approve", "action approve already completed"),
        ("timed_out", "approve", "action approve already failed (timeout)"),
    ],
)
async def test_what_cannot_end_the_wait_is_refused_in_the_folds_words(
    sm: StateManager, event_log: EventLog, stage: Stage, action: str, reason: str
) -> None:
    last = await at_stage(event_log, "e2", stage)

    refused = await refusal(sm, "e2", action, {"approved": True})

    assert refused.reason == reason and refused.problems == ()
    assert await event_log.last_sequence() == last


async def test_unknown_executions_actions_and_ids_are_named(
    sm: StateManager, event_log: EventLog
) -> None:
    await at_stage(event_log, "e3", "waiting")
    with pytest.raises(ExecutionNotFoundError):
        await sm.complete_waitpoint("nope", "approve", {"approved": True})
    with pytest.raises(ActionNotFoundError):
        await sm.complete_waitpoint("e3", "nope", {"approved": True})
    with pytest.raises(InvalidExecutionIdError):
        await sm.complete_waitpoint("e 3", "approve", {"approved": True})
    assert await requests_of(event_log, "e3") == []


# ------------------------------------------------------------------ tokens


async def test_a_token_completes_only_its_own_waitpoint(
    sm: StateManager, event_log: EventLog
) -> None:
    await at_stage(event_log, "e4", "waiting")
    await at_stage(event_log, "e5", "waiting")
    wrong = [
        token_of("e4") + "x",  # guessed
        token_of("e5").replace("e5.", "e4.", 1),  # another waitpoint's secret
        "e4.approve",  # no secret at all
        token_of("gone"),  # no such execution
    ]
    reasons = []
    for token in wrong:
        with pytest.raises(WaitpointRefusedError) as caught:
            await sm.complete_by_token(token, {"approved": True})
        reasons.append(caught.value.reason)

    assert reasons == [
        "the token does not match this waitpoint",
        "the token does not match this waitpoint",
        "the token does not match any waitpoint",
        "the token does not match any waitpoint",
    ]
    assert await requests_of(event_log, "e4") == []
    accepted = await sm.complete_by_token(token_of("e4"), {"approved": True}, wait=False)
    [request] = await requests_of(event_log, "e4")
    assert request.token == token_of("e4")
    assert accepted.wait is not None and accepted.wait.resume is not None
    assert accepted.wait.resume.request_id == request.event_id


# ------------------------------------------------------------------ appended, then followed


async def test_the_outcome_caused_by_the_request_is_returned(
    sm: StateManager, event_log: EventLog
) -> None:
    await at_stage(event_log, "e6", "waiting")

    async def play_the_orchestrator() -> None:
        [request] = await eventually(lambda: requests_of(event_log, "e6"), 10, "no resume request")
        output = request.data
        await event_log.append(
            ActionCompleted(
                execution_id="e6",
                action_id="approve",
                attempt=1,
                output=output,
                causation_id=request.event_id,
            )
        )

    async with anyio.create_task_group() as group:
        group.start_soon(play_the_orchestrator)
        final = await sm.complete_waitpoint(
            "e6", "approve", {"approved": True, "amount": 7}, requested_by="ana"
        )

    [request] = await requests_of(event_log, "e6")
    assert final.status == "completed" and final.output == {"approved": True, "amount": 7}
    assert request.requested_by == "ana" and request.correlation_id == "e6"
    assert sm.last_sequence == (await event_log.read_execution("e6"))[-2].sequence


async def test_without_an_orchestrator_the_accepted_request_stands_and_the_wait_times_out(
    sm: StateManager, event_log: EventLog
) -> None:
    await at_stage(event_log, "e7", "waiting")

    with pytest.raises(ResumeTimeoutError) as caught:
        await sm.complete_waitpoint("e7", "approve", {"approved": True}, timeout=0.5)

    [request] = await requests_of(event_log, "e7")
    history = await event_log.read_execution("e7")
    assert caught.value.sequence == history[-1].sequence
    assert history[-1].event == request
    assert "is an orchestrator running?" in str(caught.value)


# ------------------------------------------------------------------ the client identity


async def test_the_client_identity_may_resume_and_follow(tmp_path: Path) -> None:
    auth = AuthServer(tmp_path).start()
    try:
        async with provision(auth) as admin:
            await EventLog(admin.nc, admin.settings).append_many(wait_history("e9", "waiting"))
            async with await StateManager.connect(
                settings=auth.settings(Role.CLIENT), role=Role.CLIENT
            ) as client:
                accepted = await client.complete_waitpoint(
                    "e9", "approve", {"approved": True}, wait=False
                )
        assert accepted.wait is not None and accepted.wait.resume is not None
        assert [str(v) for v in auth.violations() if v.role == "client"] == []
    finally:
        auth.stop()
