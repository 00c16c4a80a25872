"""`tep status --json` is the documented state (docs/schema/state.json), equal to the log's fold."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import jsonschema
import pytest
from tep_cli import ROOT, DemoTarget, Roles, json_output, plan_against, run_tep, write_plan

pytestmark = pytest.mark.anyio

STATE_SCHEMA = json.loads((ROOT / "docs" / "schema" / "state.json").read_text())


async def test_status_json_validates_and_matches_submit_wait(
    roles: Roles, demo_target: DemoTarget, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, plan_against(demo_target, "conditional-fallback.json"))
    waited = await anyio.to_thread.run_sync(
        lambda: run_tep(
            "submit", str(plan), "--wait", "--timeout", "60", "--json", nats_url=roles.nats_url
        )
    )
    assert waited.returncode == 0, waited.stderr
    folded = json_output(waited)

    status = await anyio.to_thread.run_sync(
        lambda: run_tep(
            "status",
            folded["execution_id"],
            "--json",
            "--min-sequence",
            str(folded["last_sequence"]),
            nats_url=roles.nats_url,
        )
    )

    assert status.returncode == 0, status.stderr
    projected = json_output(status)
    jsonschema.validate(projected, STATE_SCHEMA)
    jsonschema.validate(folded, STATE_SCHEMA)
    assert projected == folded  # the view and the log's fold agree field by field


def test_the_state_schema_rejects_an_unknown_status() -> None:
    document = {"execution_id": "e", "plan_id": "p", "status": "exploded"}

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, STATE_SCHEMA)
