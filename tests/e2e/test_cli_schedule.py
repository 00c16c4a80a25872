"""`tep schedule` against the three roles: add, list (last and next fire, the last execution's
status), pause, trigger, resume, remove, and the exit code 2 of every bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tep_cli import DemoTarget, Roles, wait_for, write_plan

from eventstore.schedules import parse_stamp
from tep.cli.main import main


class Tep:
    """``tep`` in this process, against the test's server."""

    def __init__(self, nats_url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.nats_url = nats_url
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        try:
            code = main([*argv, "--nats-url", self.nats_url])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)

    def schedule(self, name: str) -> dict[str, Any]:
        listing = self.json("schedule", "list")
        found: dict[str, Any] = next(s for s in listing["schedules"] if s["name"] == name)
        return found


def test_a_schedule_from_add_to_remove(
    roles: Roles, demo_target: DemoTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tep = Tep(roles.nats_url, capsys)
    plan = write_plan(
        tmp_path,
        {
            "id": "user-check",
            "actions": [
                {"id": "fetch", "request": {"url": demo_target.url + "/users/{{input.user_id}}"}}
            ],
        },
    )

    added = tep.json(
        "schedule",
        "add",
        "beat",
        str(plan),
        "--cron",
        "*/2 * * * * *",
        "--input",
        '{"user_id": "7"}',
    )
    assert added["input"] == {"user_id": "7"} and added["catch_up"] == "one"
    assert added["next_fire"] is not None and not added["paused"]

    done = wait_for(
        lambda: (s := tep.schedule("beat"))["last_execution_status"] == "completed" and s,
        30,
        "a tick ran to completion",
    )
    assert done["last_execution_id"].startswith("beat-")
    assert parse_stamp(done["last_tick"]).second % 2 == 0
    assert parse_stamp(done["next_fire"]) > parse_stamp(done["last_tick"])

    code, out, _ = tep("schedule", "list")
    assert code == 0 and out.splitlines()[0].split()[:4] == ["NAME", "CRON", "TZ", "STATE"]
    assert "beat" in out and "active" in out

    assert tep("schedule", "pause", "beat")[1].strip() == "schedule beat paused"
    paused = tep.schedule("beat")
    assert paused["paused"] and paused["next_fire"] is None

    manual = tep.json("schedule", "trigger", "beat")["execution_id"]
    assert manual.startswith("beat-manual-")
    wait_for(
        lambda: (
            tep.schedule("beat")["last_execution_id"] == manual
            and tep.schedule("beat")["last_execution_status"] == "completed"
        ),
        30,
        "the manual run completed and is the last execution",
    )

    assert tep("schedule", "resume", "beat")[0] == 0
    resumed = tep.schedule("beat")
    assert not resumed["paused"] and resumed["resumed_at"] and resumed["next_fire"]

    code, _, err = tep("schedule", "add", "beat", str(plan), "--cron", "@daily")
    assert code == 2 and 'schedule "beat" already exists' in err

    assert tep("schedule", "remove", "beat")[0] == 0
    assert tep.json("schedule", "list") == {"schedules": [], "count": 0}
    for command in ("remove", "pause", "resume", "trigger"):
        code, out, err = tep("schedule", command, "beat")
        assert code == 2, command
        assert err.strip() == 'tep: unknown schedule "beat" (tep schedule list shows them)'


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cron", "61 * * * *"], 'minute field "61": 61 is out of range 0-59'),
        (["--cron", "* * *"], "expected 5 fields"),
        (["--cron", "@every 5x"], '@every duration "5x"'),
        (["--cron", "@daily", "--tz", "Europe/Berln"], 'unknown time zone "Europe/Berln"'),
        (["--cron", "@daily", "--input", "[1]"], "--input: expected a JSON object"),
        (["--cron", "@daily", "--input", "{nope"], "--input: not JSON"),
        (["--cron", "@daily", "--input", "@/nonexistent.json"], "cannot read"),
    ],
)
def test_bad_input_to_add_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(
        tmp_path, {"id": "p", "actions": [{"id": "a", "request": {"url": "http://x/"}}]}
    )
    tep = Tep("nats://127.0.0.1:1", capsys)  # nothing is published: no server needed

    code, out, err = tep("schedule", "add", "nightly", str(plan), *argv)

    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_an_invalid_plan_or_name_is_refused_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tep = Tep("nats://127.0.0.1:1", capsys)
    bad = write_plan(
        tmp_path,
        {
            "id": "p",
            "actions": [{"id": "a", "depends_on": ["nope"], "request": {"url": "http://x/"}}],
        },
    )
    code, _, err = tep("schedule", "add", "nightly", str(bad), "--cron", "@daily")
    assert code == 2 and 'depends_on references unknown action "nope"' in err

    good = write_plan(
        tmp_path, {"id": "p", "actions": [{"id": "a", "request": {"url": "http://x/"}}]}
    )
    for name, problem in (("bad name", "must match"), ("x-manual", 'must not end in "-manual"')):
        code, _, err = tep("schedule", "add", name, str(good), "--cron", "@daily")
        assert code == 2 and problem in err, name
        code, _, err = tep("schedule", "trigger", name)
        assert code == 2 and problem in err, name
