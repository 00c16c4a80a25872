"""`tep submit`: validation before publishing, execution ids, --wait outcomes and exit codes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import anyio
import pytest
from tep_cli import EXAMPLES, DemoTarget, Roles, json_output, plan_against, run_tep, write_plan

from eventstore.config import TepSettings
from eventstore.events import PlanSubmitted
from eventstore.jetstream.log import EventLog

pytestmark = pytest.mark.anyio

PLAN = {
    "id": "one-call",
    "input": {"user_id": "1"},
    "actions": [{"id": "fetch", "request": {"url": "http://127.0.0.1:9/users/{{input.user_id}}"}}],
}


async def _tep(*args: str, nats_url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(
        lambda: run_tep(*args, nats_url=nats_url, timeout=timeout)
    )


async def test_submit_publishes_plan_submitted_and_prints_a_sortable_id(
    event_log: EventLog, settings: TepSettings, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, PLAN)

    first = await _tep("submit", str(plan), nats_url=settings.nats_url)
    second = await _tep("submit", str(plan), nats_url=settings.nats_url)

    assert first.returncode == 0 and second.returncode == 0
    first_id, second_id = first.stdout.strip(), second.stdout.strip()
    assert first_id.startswith("exe_") and first_id < second_id
    history = await event_log.read_execution(first_id)
    assert len(history) == 1 and isinstance(history[0].event, PlanSubmitted)
    assert history[0].event.plan.id == "one-call"


async def test_submit_with_input_overrides_and_json_output(
    event_log: EventLog, settings: TepSettings, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, PLAN)

    result = await _tep(
        "submit",
        str(plan),
        "--execution-id",
        "given-1",
        "--input",
        "user_id=42",
        "--input-json",
        "limit=10",
        "--json",
        nats_url=settings.nats_url,
    )

    assert result.returncode == 0, result.stderr
    document = json_output(result)
    assert re.fullmatch(r"[0-9a-f]{32}", document.pop("trace_id"))
    assert document == {"execution_id": "given-1", "plan_id": "one-call", "sequence": 1}
    submitted = (await event_log.read_execution("given-1"))[0].event
    assert isinstance(submitted, PlanSubmitted)
    assert submitted.plan.input == {"user_id": "42", "limit": 10}


async def test_submit_of_an_invalid_plan_exits_2_and_publishes_nothing(
    event_log: EventLog, settings: TepSettings, tmp_path: Path
) -> None:
    bad = dict(PLAN, actions=[{"id": "a", "depends_on": ["ghost"], "request": {"url": "x"}}])
    plan = write_plan(tmp_path, bad)

    result = await _tep("submit", str(plan), nats_url=settings.nats_url)

    assert result.returncode == 2
    assert result.stdout == ""
    problems = result.stderr.splitlines()
    assert any('"ghost"' in line for line in problems)
    assert all(line.startswith(f"tep: {plan}: ") for line in problems)
    assert await event_log.last_sequence() == 0


async def test_submit_with_a_used_execution_id_exits_2(
    event_log: EventLog, settings: TepSettings, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, PLAN)
    await _tep("submit", str(plan), "--execution-id", "twice", nats_url=settings.nats_url)

    again = await _tep("submit", str(plan), "--execution-id", "twice", nats_url=settings.nats_url)

    assert again.returncode == 2
    assert "already exists" in again.stderr and again.stderr.count("\n") == 1
    assert len(await event_log.read_execution("twice")) == 1


async def test_submit_with_a_malformed_execution_id_exits_2_before_connecting(
    tmp_path: Path,
) -> None:
    plan = write_plan(tmp_path, PLAN)

    result = await _tep("submit", str(plan), "--execution-id", "a.b", nats_url="nats://127.0.0.1:9")

    assert result.returncode == 2
    assert "must match" in result.stderr


async def test_submit_wait_without_roles_times_out_with_124(
    event_log: EventLog, settings: TepSettings, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, PLAN)

    result = await _tep(
        "submit", str(plan), "--wait", "--timeout", "1", "--json", nats_url=settings.nats_url
    )

    assert result.returncode == 124
    state = json_output(result)
    assert state["status"] == "pending" and state["plan_id"] == "one-call"


async def test_submit_wait_exits_0_when_the_execution_completes(
    roles: Roles, demo_target: DemoTarget, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, plan_against(demo_target, "sequential-pipeline.json"))

    result = await _tep(
        "submit", str(plan), "--wait", "--timeout", "60", "--json", nats_url=roles.nats_url
    )

    assert result.returncode == 0, result.stderr
    state = json_output(result)
    assert state["status"] == "completed"
    assert state["counts"]["completed"] == 4
    notify = state["actions"]["notify"]["output"]
    assert notify["to"] == "alan.42@example.test"


async def test_submit_wait_exits_1_when_the_execution_fails(
    roles: Roles, demo_target: DemoTarget, tmp_path: Path
) -> None:
    failing = {
        "id": "missing-user",
        "actions": [
            {"id": "fetch", "request": {"url": f"{demo_target.url}/users/5000"}},
            {"id": "after", "depends_on": ["fetch"], "request": {"url": f"{demo_target.url}/echo"}},
        ],
    }
    plan = write_plan(tmp_path, failing)

    result = await _tep("submit", str(plan), "--wait", "--timeout", "60", nats_url=roles.nats_url)

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("exe_")
    assert any(line.split()[:3] == ["x", "fetch", "failed"] for line in lines)
    assert any(line.split()[:3] == ["-", "after", "skipped"] for line in lines)
    assert f"{lines[0]} failed in" in result.stdout


# approval.json waits for a person to resume it (test_approval_example.py); retry-from-a-step.json
# fails until it is retried (test_retry_example.py).
@pytest.mark.parametrize(
    "example",
    sorted(
        p.name
        for p in EXAMPLES.glob("*.json")
        if p.name not in ("approval.json", "retry-from-a-step.json")
    ),
)
async def test_every_example_completes(
    example: str, roles: Roles, demo_target: DemoTarget, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, plan_against(demo_target, example))

    result = await _tep(
        "submit", str(plan), "--wait", "--timeout", "60", "--json", nats_url=roles.nats_url
    )

    assert result.returncode == 0, result.stderr
    assert json_output(result)["status"] == "completed"


async def test_conditional_example_takes_one_branch_retries_and_falls_back(
    roles: Roles, demo_target: DemoTarget, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, plan_against(demo_target, "conditional-fallback.json"))

    result = await _tep(
        "submit", str(plan), "--wait", "--timeout", "60", "--json", nats_url=roles.nats_url
    )

    assert result.returncode == 0, result.stderr
    actions = json_output(result)["actions"]
    assert actions["premium-offer"]["status"] == "skipped"  # user 7 is "standard"
    assert actions["standard-offer"]["status"] == "completed"
    assert (actions["load-profile"]["status"], actions["load-profile"]["attempts"]) == (
        "completed",
        3,
    )
    assert (actions["charge-primary"]["status"], actions["charge-primary"]["attempts"]) == (
        "failed",
        3,
    )
    assert actions["charge-fallback"]["status"] == "completed"
    assert actions["charge-fallback"]["output"]["json"]["provider"] == "fallback"
    assert actions["receipt"]["status"] == "completed"


def test_examples_are_valid_plans() -> None:
    for example in sorted(EXAMPLES.glob("*.json")):
        result = run_tep("validate", str(example))
        assert result.returncode == 0, f"{example.name}: {result.stderr}"
        assert json.loads(example.read_text())["actions"]
