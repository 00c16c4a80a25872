"""examples/approval.json end to end with the `tep` commands a person would use: submit it, find
the waitpoint's token, resume with data the schema refuses, then with good data by the token,
and watch it sleep and finish (roles and the demo target as processes)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tep_cli import DemoTarget, Roles, json_output, plan_against, run_tep, write_plan


def _waiting_state(execution_id: str, nats_url: str, timeout: float = 30.0) -> dict[str, Any]:
    """The execution's state (from the view) once its waitpoint waits."""
    deadline = time.monotonic() + timeout
    while True:
        result = run_tep("status", execution_id, "--json", nats_url=nats_url)
        if result.returncode == 0:
            state: dict[str, Any] = json_output(result)
            if state["actions"]["approve"]["status"] == "waiting":
                return state
        assert time.monotonic() < deadline, f"approve never waited: {result.stderr}"
        time.sleep(0.2)


def test_the_approval_example_completes_once_approved_by_its_token(
    roles: Roles, demo_target: DemoTarget, tmp_path: Path
) -> None:
    url = roles.nats_url
    plan = write_plan(tmp_path, plan_against(demo_target, "approval.json"))
    submitted = run_tep("submit", str(plan), nats_url=url)
    assert submitted.returncode == 0, submitted.stderr
    execution_id = submitted.stdout.strip()

    state = _waiting_state(execution_id, url)
    token = state["actions"]["approve"]["wait"]["token"]
    refused = run_tep("resume", "--token", token, "--data", '{"approved": true}', nats_url=url)
    decision = tmp_path / "decision.json"
    decision.write_text(json.dumps({"approved": True, "amount": 120}))
    resumed = run_tep("resume", "--token", token, "--data", f"@{decision}", nats_url=url)
    watched = run_tep("watch", execution_id, "--plain", "--timeout", "60", nats_url=url)
    final = run_tep("status", execution_id, "--json", nats_url=url)

    assert state["actions"]["ask-approver"]["status"] in ("running", "completed")
    assert refused.returncode == 2
    assert refused.stderr == (
        "tep: refused: the data does not match the waitpoint's schema: "
        "data: 'amount' is a required property\n"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == (
        f'{execution_id} approve completed; output: {{"approved": true, "amount": 120}}\n'
    )
    assert watched.returncode == 0, watched.stderr
    assert "cool-off waiting (sleeping until " in watched.stdout
    actions = json_output(final)["actions"]
    assert actions["notify-customer"]["status"] == "completed"
    assert actions["cool-off"]["output"]["slept_until"] == actions["cool-off"]["wait"]["until"]
