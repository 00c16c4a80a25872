"""examples/retry-from-a-step.json end to end with the `tep` commands a person would use: submit
it and see it fail at charge, `tep retry --from charge --wait`, and find that only charge and the
receipt were called again (roles and the demo target as processes)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from tep_cli import DemoTarget, Roles, json_output, plan_against, run_tep, write_plan


def _stats(target: DemoTarget) -> dict[str, int]:
    with urllib.request.urlopen(f"{target.url}/stats", timeout=5) as response:
        stats: dict[str, int] = json.loads(response.read())
    return stats


def test_the_retry_example_fails_at_charge_and_completes_when_retried_from_there(
    roles: Roles, demo_target: DemoTarget, tmp_path: Path
) -> None:
    url = roles.nats_url
    plan = write_plan(tmp_path, plan_against(demo_target, "retry-from-a-step.json"))
    submitted = run_tep("submit", str(plan), "--wait", "--timeout", "60", "--json", nats_url=url)
    execution_id = json_output(submitted)["execution_id"]
    before = _stats(demo_target)

    retried = run_tep(
        "retry", execution_id, "--from", "charge", "--wait", "--timeout", "60", nats_url=url
    )
    after = _stats(demo_target)
    status = run_tep("status", execution_id, "--json", nats_url=url)

    assert submitted.returncode == 1, submitted.stderr
    assert json_output(submitted)["status"] == "failed"
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.splitlines() == [
        f"{execution_id}: run 2 started; running again: charge, send-receipt",
        f"{execution_id} completed",
    ]
    called_again = {
        route: count - before.get(route, 0)
        for route, count in after.items()
        if count != before.get(route, 0) and route != "/stats"
    }
    assert called_again == {"/flaky/{key}": 1, "/notify": 1}
    actions: dict[str, Any] = json_output(status)["actions"]
    assert [(r["run"], r["status"]) for r in actions["charge"]["runs"]] == [(1, "failed")]
    assert actions["charge"]["run"] == 2 and actions["charge"]["status"] == "completed"
    assert actions["orders"]["run"] == 1 and not actions["orders"].get("runs")
