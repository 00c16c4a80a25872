"""Typed steps and variables through the whole system: a `tep orchestrator`, a `tep executor`
of queue ``http`` and one of queue ``typed`` (with ``--allow-env REGION``) as processes on one
nats-server, a real HTTP target, plans in through the log and through `tep submit`.

- a response that does not match ``output_schema`` fails with ``output_invalid``, called once
  although the retry policy allows three attempts;
- ``tep submit`` / ``tep validate`` of a plan whose input does not match ``input_schema`` exit 2
  with one line per mismatch and publish nothing; a plan published raw is rejected;
- the target receives the execution id, its run, the plan id, a ``now`` that is the moment the
  log stored the event decided on, and the allowed environment value; a name not allowed fails
  the action with one line naming it, and its value never leaves the executor.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from support.http_target import HttpTarget
from system_support import System, attempts_per_action, running_system
from tep_cli import Processes, child_env, run_tep, tep_command, wait_for_http, write_plan

from eventstore.codec import encode_event
from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ExecutionCompleted,
    ExecutionFailed,
)
from eventstore.plan_validation import parse_plan
from tep.server import find_free_port

pytestmark = pytest.mark.anyio

REGION = "eu-test-1"
HIDDEN = "stage-value-Kq7Zr"
"""The value of a variable the executor does not allow: it must appear nowhere."""
PRICES: dict[str, Any] = {
    "type": "object",
    "required": ["json"],
    "properties": {
        "json": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"price": {"type": "number"}}},
                }
            },
        }
    },
}
USER_INPUT: dict[str, Any] = {
    "type": "object",
    "required": ["user_id"],
    "properties": {"user_id": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
}


@dataclass
class Typed:
    """The system, where its logs go, and `tep` against it."""

    system: System
    directory: Path

    async def tep(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``tep ARGS`` as a subprocess (in a thread: the HTTP target shares this loop)."""
        run = functools.partial(run_tep, *args, nats_url=self.system.server.url)
        return await anyio.to_thread.run_sync(run)

    async def run(self, execution_id: str, document: dict[str, Any]) -> Any:
        """Append ``plan.submitted`` for the document and wait for the execution's end."""
        await self.system.submit(execution_id, parse_plan(document))
        return await self.system.wait_end(execution_id, timeout=30)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def typed(
    tmp_path_factory: pytest.TempPathFactory, target: HttpTarget
) -> AsyncIterator[Typed]:
    directory = tmp_path_factory.mktemp("typed")
    async with running_system(directory, target, orchestrators=1, executors=1) as system:
        url = system.server.url
        port = find_free_port()
        extra = Processes()
        extra.start(
            tep_command(
                "executor",
                "--queue",
                "typed",
                "--allow-env",
                "REGION",
                "--health-host",
                "127.0.0.1",
                "--health-port",
                str(port),
                "--nats-url",
                url,
            ),
            child_env(url, TEP_LOG_LEVEL="WARNING", REGION=REGION, STAGE=HIDDEN),
            directory / "executor-typed.log",
        )
        try:
            await anyio.to_thread.run_sync(wait_for_http, f"http://127.0.0.1:{port}/healthz", 30)
            yield Typed(system, directory)
        finally:
            extra.stop_all()


def outcomes(history: list[Any], action_id: str) -> list[ActionCompleted | ActionFailed]:
    return [
        e
        for e in history
        if isinstance(e, ActionCompleted | ActionFailed) and e.action_id == action_id
    ]


# ------------------------------------------------------------------------------ output_schema


async def test_an_output_that_does_not_match_fails_once_with_output_invalid(
    typed: Typed, target: HttpTarget
) -> None:
    system = typed.system
    e = system.new_id("output")
    retry = {"max_attempts": 3, "min_backoff_ms": 50, "max_backoff_ms": 100}
    items = [{"sku": "a", "price": 1.5}, {"sku": "b", "price": 2}, {"sku": "c", "price": "x"}]
    document = {
        "id": "typed-output",
        "actions": [
            {
                "id": "good",
                "request": {"method": "POST", "url": target.url(f"/echo/{e}/good"), "json": {}},
                "output_schema": PRICES,
                "retry": retry,
            },
            {
                "id": "bad",
                "depends_on": ["good"],
                "request": {
                    "method": "POST",
                    "url": target.url(f"/echo/{e}/bad"),
                    "json": {"items": items},
                },
                "output_schema": PRICES,
                "retry": retry,
            },
        ],
    }

    end = await typed.run(e, document)

    history = await system.history(e)
    [good] = outcomes(history, "good")
    [bad] = outcomes(history, "bad")
    [request] = [
        r for r in history if isinstance(r, ActionExecuteRequested) and r.action_id == "bad"
    ]
    assert isinstance(good, ActionCompleted)
    assert isinstance(bad, ActionFailed) and bad.error.code == ErrorCode.OUTPUT_INVALID
    assert bad.error.message == (
        "the output does not match the action's output_schema: "
        "output.json.items[2].price: 'x' is not of type 'number'"
    )
    assert not bad.error.retryable and bad.attempt == 1
    assert request.output_schema == PRICES and request.retry.max_attempts == 3
    assert len(target.hits_for(f"/echo/{e}/bad")) == 1
    assert attempts_per_action(history)["bad"] == 1
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["bad"]


# ------------------------------------------------------------------------------ input_schema


def typed_input_plan(target: HttpTarget, input_value: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "typed-input",
        "input": input_value,
        "input_schema": USER_INPUT,
        "actions": [
            {
                "id": "fetch",
                "request": {
                    "url": target.url("/echo/typed-input"),
                    "query": {"user": "{{input.user_id}}", "limit": "{{input.limit}}"},
                },
            }
        ],
    }


async def test_submit_with_input_that_does_not_match_exits_2_and_publishes_nothing(
    typed: Typed, target: HttpTarget, tmp_path: Path
) -> None:
    system = typed.system
    path = write_plan(tmp_path, typed_input_plan(target, {"user_id": 42, "limit": 0}))
    e = system.new_id("input")
    before = await system.log.last_sequence()

    submitted = await typed.tep("submit", str(path), "--execution-id", e)
    validated = await typed.tep("validate", str(path))

    expected = [
        f"tep: {path}: plan: input.limit: 0 is less than the minimum of 1",
        f"tep: {path}: plan: input.user_id: 42 is not of type 'string'",
    ]
    assert submitted.returncode == 2 and submitted.stdout == ""
    assert submitted.stderr.splitlines() == expected
    assert validated.returncode == 2 and validated.stderr.splitlines() == expected
    assert await system.log.read_execution(e) == []
    assert await system.log.last_sequence() == before


async def test_submit_with_input_overrides_that_match_runs(
    typed: Typed, target: HttpTarget, tmp_path: Path
) -> None:
    path = write_plan(tmp_path, typed_input_plan(target, {"limit": 0}))

    result = await typed.tep(
        "submit", str(path), "--input", "user_id=u7", "--input-json", "limit=5", "--wait"
    )

    assert result.returncode == 0, result.stderr
    [hit] = [h for h in target.hits_for("/echo/typed-input") if h.query.get("user") == "u7"]
    assert hit.query == {"user": "u7", "limit": "5"}


async def test_a_plan_published_raw_with_input_that_does_not_match_is_rejected(
    typed: Typed, target: HttpTarget
) -> None:
    system = typed.system
    e = system.new_id("raw-input")
    plan = parse_plan(typed_input_plan(target, {"user_id": "u1"}))

    # What any client could append: the plan with an input nobody checked.
    await system.submit(e, msgspec.structs.replace(plan, input={"user_id": 1}))
    end = await system.wait_end(e)

    assert isinstance(end, ExecutionFailed) and end.error.code == ErrorCode.INVALID_PLAN
    assert "plan: input.user_id: 1 is not of type 'string'" in end.error.message
    assert all(h.query.get("user") != "1" for h in target.hits_for("/echo/typed-input"))


# ------------------------------------------------------------------------------ variables


async def test_the_target_receives_every_variable_and_the_allowed_environment(
    typed: Typed, target: HttpTarget
) -> None:
    system = typed.system
    e = system.new_id("vars")
    document = {
        "id": "typed-variables",
        "actions": [
            {
                "id": "call",
                "queue": "typed",
                "request": {
                    "method": "POST",
                    "url": target.url(f"/echo/{e}/vars"),
                    "headers": {"X-Execution": "{{execution.id}}", "X-Region": "{{env.REGION}}"},
                    "json": {
                        "execution": "{{execution.id}}",
                        "run": "{{execution.run}}",
                        "plan": "{{plan.id}}",
                        "now": "{{now}}",
                        "region": "{{env.REGION}}",
                        "label": "{{plan.id}}/{{execution.id}} in {{env.REGION}}",
                    },
                },
            }
        ],
    }

    end = await typed.run(e, document)

    history = await system.history(e)
    [hit] = target.hits_for(f"/echo/{e}/vars")
    received = json.loads(hit.body)
    [request] = [r for r in history if isinstance(r, ActionExecuteRequested)]
    [done] = outcomes(history, "call")
    stored = await system.log.js.get_last_msg(system.log.stream, f"plan.submitted.{e}", direct=True)
    assert isinstance(end, ExecutionCompleted)
    assert received == {
        "execution": e,
        "run": 1,
        "plan": "typed-variables",
        "now": received["now"],
        "region": REGION,
        "label": f"typed-variables/{e} in {REGION}",
    }
    headers = {name.lower(): value for name, value in hit.headers.items()}
    assert headers["x-execution"] == e and headers["x-region"] == REGION
    now = datetime.fromisoformat(received["now"].replace("Z", "+00:00"))
    assert received["now"].endswith("Z") and stored.time is not None
    # The decision's moment: when the log stored plan.submitted, the event decided on.
    assert abs(now - stored.time) < timedelta(milliseconds=2)
    # Call-time values stay templates in the log; the output has the value (not redacted).
    assert request.request is not None and request.request.json["region"] == "{{env.REGION}}"
    assert request.request.json["now"] == received["now"]
    assert isinstance(done, ActionCompleted) and done.output["json"]["region"] == REGION


async def test_a_variable_the_executor_does_not_allow_fails_with_one_line_naming_it(
    typed: Typed, target: HttpTarget
) -> None:
    system = typed.system
    e = system.new_id("env-refused")
    document = {
        "id": "typed-env-refused",
        "actions": [
            {
                "id": "call",
                "queue": "typed",
                "request": {"url": target.url(f"/echo/{e}/stage"), "query": {"s": "{{env.STAGE}}"}},
                "retry": {"max_attempts": 3, "min_backoff_ms": 50, "max_backoff_ms": 100},
            }
        ],
    }

    end = await typed.run(e, document)

    history = await system.history(e)
    [failed] = outcomes(history, "call")
    assert isinstance(end, ExecutionFailed)
    assert isinstance(failed, ActionFailed) and failed.error.code == ErrorCode.INVALID_REQUEST
    assert failed.error.message == (
        "{{env.STAGE}} is not on this executor's environment allow-list; allow it with "
        "`tep executor --allow-env STAGE` or TEP_EXECUTOR_ALLOW_ENV=STAGE"
    )
    assert "\n" not in failed.error.message and failed.attempt == 1
    assert target.hits_for(f"/echo/{e}/stage") == []
    every_byte = b"".join(encode_event(event) for event in history)
    logs = b"".join(p.read_bytes() for p in typed.directory.glob("*.log"))
    assert HIDDEN.encode() not in every_byte + logs
