"""`tep validate` as a subprocess: exit codes, messages on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "id": "welcome-email",
    "input": {"user_id": "42"},
    "actions": [
        {
            "id": "fetch-user",
            "request": {"url": "http://127.0.0.1:8080/users/{{input.user_id}}"},
            "retry": {"maxAttempts": 3, "minTimeoutInMs": 200, "maxTimeoutInMs": 2000},
        },
        {
            "id": "send",
            "dependsOn": ["fetch-user"],
            "request": {
                "method": "POST",
                "url": "http://127.0.0.1:8080/send",
                "json": {"to": "{{actions.fetch-user.output.email}}"},
            },
        },
    ],
}


def tep_validate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TEP_")}
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tep.cli.main", "validate", *args],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(tmp_path: Path, content: str | dict[str, Any], name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def assert_clean_failure(result: subprocess.CompletedProcess[str], path: Path) -> list[str]:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert lines
    assert all(line.startswith(f"tep: {path}: ") for line in lines), lines
    return [line.removeprefix(f"tep: {path}: ") for line in lines]


def test_good_plan_exits_zero(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)

    result = tep_validate(str(path))

    assert result.returncode == 0, result.stderr
    assert result.stdout == 'ok: plan "welcome-email" with 2 actions\n'
    assert result.stderr == ""


def test_good_plan_json_output_is_one_document(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)

    result = tep_validate(str(path), "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "ok": True,
        "file": str(path),
        "plan_id": "welcome-email",
        "actions": 2,
        "levels": [["fetch-user"], ["send"]],
    }


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "id": "p",\n  "actions": [,]\n}')

    problems = assert_clean_failure(tep_validate(str(path)), path)

    assert problems == ["malformed JSON at line 3, column 15: invalid character"]


def test_unknown_field_is_reported(tmp_path: Path) -> None:
    document = json.loads(json.dumps(GOOD))
    document["actions"][1]["retries"] = 3
    path = write(tmp_path, document)

    problems = assert_clean_failure(tep_validate(str(path)), path)

    assert problems == ['actions[1] ("send"): unknown field "retries" (did you mean "retry"?)']


def test_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    document = json.loads(json.dumps(GOOD))
    document["actions"][0]["depends_on"] = ["send"]
    path = write(tmp_path, document)

    problems = assert_clean_failure(tep_validate(str(path)), path)

    assert problems == ["cycle: fetch-user -> send -> fetch-user"]


def test_every_problem_gets_its_own_line_and_json_lists_them(tmp_path: Path) -> None:
    document = json.loads(json.dumps(GOOD))
    document["actions"][1]["dependsOn"] = ["nope"]
    document["actions"][0]["request"]["url"] = "ftp://files"
    path = write(tmp_path, document)

    result = tep_validate(str(path), "--json")

    problems = assert_clean_failure(result, path)
    assert problems == [
        'action "fetch-user": request.url: "ftp://files" must be an absolute http:// or '
        "https:// URL",
        'action "send": depends_on references unknown action "nope"',
        'action "send": request.json: template {{actions.fetch-user.output.email}} references '
        'action "fetch-user", which is not upstream of "send" (add it to depends_on)',
    ]
    assert json.loads(result.stdout) == {"ok": False, "file": str(path), "problems": problems}


def test_size_limit_comes_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)

    result = tep_validate(str(path), env={"TEP_MAX_PLAN_BYTES": "100"})

    (problem,) = assert_clean_failure(result, path)
    assert "limit of 100 bytes (setting TEP_MAX_PLAN_BYTES)" in problem


def test_missing_file_is_a_clear_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"

    result = tep_validate(str(missing))

    assert result.returncode == 2
    assert result.stderr == f"tep: {missing}: no such file\n"
    assert result.stdout == ""


def test_plan_from_stdin(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tep.cli.main", "validate", "-"],
        cwd=ROOT,
        input=json.dumps(GOOD),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('ok: plan "welcome-email"')


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("*.json")), ids=lambda p: p.name
)
def test_shipped_example_plans_are_valid(example: Path) -> None:
    result = tep_validate(str(example))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: plan ")
