"""Scoped secrets in a real executor calling a real HTTP target: a secret reaches the hosts it
is granted to and nothing else, no call is made for a refused one, and a redirect does not
carry it to another host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.executors import http_request, running_executor, wait_for_outcome
from support.http_target import HttpTarget

from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ActionExecuteRequested, ActionFailed, ActionStarted
from eventstore.jetstream.log import EventLog
from eventstore.plan import RetryPolicy
from executor.handlers import HandlerRegistry, current_attempt

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

SECRET = 'S3cr3t-Zq9+/&"x ä'
RETRIES = RetryPolicy(max_attempts=3, min_backoff_ms=20, jitter=False)


def granted(hosts: str, secret: str = SECRET) -> dict[str, str]:
    return {"TEP_SECRET_API_TOKEN": secret, "TEP_SECRET_API_TOKEN_HOSTS": hosts}


async def started(log: EventLog, execution_id: str) -> list[ActionStarted]:
    return [
        r.event
        for r in await log.read_execution(execution_id)
        if isinstance(r.event, ActionStarted)
    ]


async def test_a_granted_host_gets_the_secret_in_every_place_and_the_log_never_does(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(
        http_request(
            "e1",
            "call",
            http_target.url("/echo/{{secrets.API_TOKEN}}"),
            method="POST",
            headers={"X-Api-Key": "{{secrets.API_TOKEN}}"},
            query={"token": "{{secrets.API_TOKEN}}"},
            json={"key": "{{secrets.API_TOKEN}}"},
        )
    )

    async with running_executor(settings, env=granted("127.0.0.1")):
        outcome = await wait_for_outcome(event_log, "e1", "call")

    [hit] = http_target.hits
    assert hit.path == f"/echo/{SECRET}"
    assert hit.headers["x-api-key"] == SECRET
    assert hit.query["token"] == SECRET
    assert json.loads(hit.body) == {"key": SECRET}
    assert isinstance(outcome, ActionCompleted)
    assert outcome.output["path"] == "/echo/[redacted]"
    assert outcome.output["query"] == {"token": "[redacted]"}
    assert outcome.output["json"] == {"key": "[redacted]"}
    for record in await event_log.read_execution_raw("e1"):
        assert b"S3cr3t" not in record.data


async def test_a_host_not_granted_fails_secret_not_allowed_without_a_call(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(
        http_request(
            "e1",
            "call",
            http_target.url("/echo/x"),
            headers={"Authorization": "Bearer {{secrets.API_TOKEN}}"},
            retry=RETRIES,
        )
    )

    async with running_executor(settings, env=granted("api.example.com,localhost")):
        outcome = await wait_for_outcome(event_log, "e1", "call")

    assert isinstance(outcome, ActionFailed)
    assert outcome.error.code == "secret_not_allowed" and outcome.attempt == 1
    assert "API_TOKEN" in outcome.error.message and "127.0.0.1" in outcome.error.message
    assert "S3cr3t" not in outcome.error.message
    assert http_target.hits == []
    assert len(await started(event_log, "e1")) == 1


async def test_a_secret_without_a_grant_is_refused_naming_the_variable(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(
        http_request("e1", "call", http_target.url("/echo/x"), query={"k": "{{secrets.API_TOKEN}}"})
    )

    async with running_executor(settings, env={"TEP_SECRET_API_TOKEN": SECRET}):
        outcome = await wait_for_outcome(event_log, "e1", "call")

    assert isinstance(outcome, ActionFailed) and outcome.error.code == "secret_not_allowed"
    assert outcome.error.message == (
        "secret API_TOKEN is not granted to any host: set "
        "TEP_SECRET_API_TOKEN_HOSTS=127.0.0.1 (or * for any)"
    )
    assert http_target.hits == []


async def test_a_short_secret_is_refused_naming_the_variable_and_the_minimum(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(
        http_request(
            "e1", "call", http_target.url("/echo/x"), headers={"X": "{{secrets.API_TOKEN}}"}
        )
    )

    async with running_executor(settings, env=granted("*", secret="m")):
        outcome = await wait_for_outcome(event_log, "e1", "call")

    assert isinstance(outcome, ActionFailed) and outcome.error.code == "secret_not_allowed"
    assert "TEP_SECRET_API_TOKEN" in outcome.error.message
    assert "at least 8" in outcome.error.message
    assert http_target.hits == []


async def test_a_redirect_to_another_host_does_not_carry_the_secret(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    elsewhere = f"http://localhost:{http_target.port}/echo/landed"
    same_host = http_target.url("/echo/landed-here")
    for action_id, to, headers in (
        ("secret-away", elsewhere, {"X-Api-Key": "{{secrets.API_TOKEN}}"}),
        ("secret-home", same_host, {"X-Api-Key": "{{secrets.API_TOKEN}}"}),
        ("plain-away", elsewhere, {}),
    ):
        await event_log.append(
            http_request(
                "e1",
                action_id,
                http_target.url(f"/redirect/307/{action_id}"),
                method="POST",
                query={"to": to},
                headers=headers,
                json={"n": 1},
            )
        )

    async with running_executor(settings, env=granted("127.0.0.1,localhost")):
        away = await wait_for_outcome(event_log, "e1", "secret-away")
        home = await wait_for_outcome(event_log, "e1", "secret-home")
        plain = await wait_for_outcome(event_log, "e1", "plain-away")

    assert isinstance(away, ActionFailed) and away.error.code == "secret_not_allowed"
    assert "another host (localhost)" in away.error.message
    assert isinstance(home, ActionCompleted) and isinstance(plain, ActionCompleted)
    landed = [hit for hit in http_target.hits if hit.path.startswith("/echo/landed")]
    assert [(hit.path, hit.headers.get("x-api-key")) for hit in landed] in (
        [("/echo/landed-here", SECRET), ("/echo/landed", None)],
        [("/echo/landed", None), ("/echo/landed-here", SECRET)],
    )


async def test_a_python_handler_gets_a_secret_only_when_granted_its_type(
    settings: TepSettings, event_log: EventLog
) -> None:
    registry = HandlerRegistry()
    seen: list[tuple[Any, tuple[str, ...]]] = []

    @registry.handler("sign")
    async def sign(request: ActionExecuteRequested) -> dict[str, Any]:
        seen.append((request.input["key"], current_attempt().secrets))
        return {"echo": request.input["key"]}

    @registry.handler("crop")
    async def crop(request: ActionExecuteRequested) -> None:
        seen.append((request.input["key"], current_attempt().secrets))

    for action_type in ("sign", "crop"):
        await event_log.append(
            http_request(
                "e1",
                action_type,
                "",
                action_type=action_type,
                queue="media",
                input={"key": "{{secrets.API_TOKEN}}"},
            )
        )

    env = granted("handler:sign")
    async with running_executor(settings, queue="media", registry=registry, env=env):
        signed = await wait_for_outcome(event_log, "e1", "sign")
        cropped = await wait_for_outcome(event_log, "e1", "crop")

    assert seen == [(SECRET, ("API_TOKEN",))]
    assert isinstance(signed, ActionCompleted) and signed.output == {"echo": "[redacted]"}
    assert isinstance(cropped, ActionFailed) and cropped.error.code == "secret_not_allowed"
    assert "handler crop" in cropped.error.message


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TEP_SECRET_PIN": "m"}, "TEP_SECRET_PIN holds 1 characters; a secret needs at least 8"),
        ({"TEP_SECRET_API_TOKEN_HOSTS": "https://x/"}, "TEP_SECRET_API_TOKEN_HOSTS: 'https://x/'"),
        ({"TEP_EXECUTOR_SECRETS_FILE": "/no/such/file.json"}, "TEP_EXECUTOR_SECRETS_FILE"),
    ],
    ids=["short secret", "malformed grant", "missing secrets file"],
)
def test_tep_executor_refuses_to_start_with_one_line_naming_the_variable(
    settings: TepSettings, env: dict[str, str], named: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tep.cli.main", "executor", "--nats-url", settings.nats_url],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
