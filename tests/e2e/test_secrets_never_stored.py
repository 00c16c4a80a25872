"""No spelling of a secret is stored or logged anywhere, after a real run that used secrets in a
URL path, a header, a query, a JSON body, a failing call whose target echoes them back, and a
call to a host they are not granted to.

The roles run as users run them (`tep orchestrator`, `tep executor`, `tep projector`
processes, their output captured; the plan goes in with `tep submit --wait`). Then every
message of every stream (the log, the dead-letter stream, each KV bucket's history), every key
and value of the KV view, every log line of every role, the client's output and the server's
log are searched for every secret, raw and in every encoding it may take.

Each secret holds the same rare marker after a short start: finding the marker anywhere also
catches a secret stored in part (cut off, or half-encoded). The target is checked to have
received every secret, so the search is not vacuous.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import anyio
import pytest
from nats.js.errors import NoKeysError, NotFoundError
from support.http_target import HttpTarget
from tep_cli import Processes, child_env, run_tep, tep_command, write_plan
from yarl import URL

from eventstore.config import TepSettings
from eventstore.events import ActionAttemptFailed, ActionCompleted, ActionFailed
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from tep.server import EmbeddedServer

pytestmark = pytest.mark.anyio

MARKER = "Zq9Xw7"
SECRETS = {
    "PATH_TOKEN": f'path-{MARKER}+/&"x ä',
    "HEADER_TOKEN": f"hdr-{MARKER}-0123456789abcdef",
    "QUERY_TOKEN": f'qry-{MARKER}+/&"x ä=?#',
    "BODY_TOKEN": f'bdy-{MARKER} "quoted" \\ back\nslash ä',
    "FAIL_TOKEN": f'fail-{MARKER}+/&"x',
}


def spellings(secret: str) -> set[str]:
    """The secret raw and in every encoding a URL, a query or JSON gives it."""
    encoded = {
        secret,
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        str(URL("http://h/") / secret).removeprefix("http://h/"),
        URL("http://h/").with_query(t=secret).raw_query_string.removeprefix("t="),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(secret))[3:-3],
    }
    lowered = {_lower_hex(form) for form in encoded}
    return encoded | lowered


def _lower_hex(text: str) -> str:
    head, *escapes = text.split("%")
    return head + "".join(f"%{e[:2].lower()}{e[2:]}" for e in escapes)


def plan(target: HttpTarget) -> dict[str, Any]:
    """Every place a secret can go, a call that fails echoing them, and a refused one."""
    url = target.url
    return {
        "id": "secrets-everywhere",
        "actions": [
            {"id": "in-path", "request": {"url": url("/echo/path/{{secrets.PATH_TOKEN}}")}},
            {
                "id": "in-header",
                "request": {
                    "url": url("/echo/header"),
                    "headers": {"Authorization": "Bearer {{secrets.HEADER_TOKEN}}"},
                },
            },
            {
                "id": "in-query",
                "request": {
                    "url": url("/echo/query"),
                    "query": {"token": "{{secrets.QUERY_TOKEN}}"},
                },
            },
            {
                "id": "in-body",
                "request": {
                    "method": "POST",
                    "url": url("/echo/body"),
                    "json": {"key": "{{secrets.BODY_TOKEN}}", "list": ["x {{secrets.BODY_TOKEN}}"]},
                },
            },
            {
                "id": "downstream",
                "depends_on": ["in-body", "in-header"],
                "request": {
                    "method": "POST",
                    "url": url("/echo/downstream"),
                    "json": {
                        "body": "{{actions.in-body.output.json}}",
                        "auth": "{{actions.in-header.output.headers.Authorization}}",
                    },
                },
            },
            # Last: a failed action ends the execution and cancels what has not started.
            {
                "id": "fails",
                "depends_on": ["downstream", "in-path", "in-query"],
                "request": {
                    "url": url("/echo/fails"),
                    "query": {"status": "500", "token": "{{secrets.FAIL_TOKEN}}"},
                    "headers": {"X-Token": "{{secrets.FAIL_TOKEN}}"},
                },
                "retry": {"max_attempts": 2, "min_backoff_ms": 50, "max_backoff_ms": 100},
            },
            {
                "id": "not-granted",
                "depends_on": ["downstream", "in-path", "in-query"],
                "request": {
                    "url": f"http://localhost:{target.port}/echo/elsewhere",
                    "headers": {"X-Token": "{{secrets.HEADER_TOKEN}}"},
                },
            },
        ],
    }


def secret_env() -> dict[str, str]:
    env = {f"TEP_SECRET_{name}": value for name, value in SECRETS.items()}
    env |= {f"TEP_SECRET_{name}_HOSTS": "127.0.0.1" for name in SECRETS}
    return env


async def stored_messages(nc: NatsClient) -> dict[str, list[bytes]]:
    """Every message of every stream, subject, headers and data together, by stream."""
    js = nc.jetstream()
    found: dict[str, list[bytes]] = {}
    for info in await js.streams_info():
        name, state = info.config.name, info.state
        assert name is not None
        messages = found.setdefault(name, [])
        if not state.messages:
            continue
        for sequence in range(state.first_seq, state.last_seq + 1):
            try:
                msg = await js.get_msg(name, sequence)
            except NotFoundError:
                continue
            headers = "".join(f"{k}: {v}\n" for k, v in (msg.headers or {}).items())
            messages.append(f"{msg.subject}\n{headers}".encode() + (msg.data or b""))
    return found


async def view_entries(nc: NatsClient, buckets: list[str]) -> list[bytes]:
    """Every key and value of every KV bucket, as the view's readers see them."""
    js = nc.jetstream()
    entries: list[bytes] = []
    for bucket in buckets:
        kv = await js.key_value(bucket)
        try:
            keys = await kv.keys()
        except NoKeysError:
            continue
        for key in keys:
            entry = await kv.get(key)
            entries.append(key.encode() + b"=" + (entry.value or b""))
    return entries


def role_logs(directory: Path) -> dict[str, bytes]:
    """Everything each role (and the server) wrote, by log file."""
    return {f"log {path.name}": path.read_bytes() for path in sorted(directory.glob("*.log"))}


def leaks(blobs: dict[str, bytes]) -> Iterator[str]:
    """``where: what`` for every secret (or the marker) found in a blob."""
    needles = {MARKER.encode(): "the marker"}
    for name, secret in SECRETS.items():
        needles |= {form.encode(): f"{name} as {form!r}" for form in spellings(secret)}
    for where, blob in blobs.items():
        for needle, what in needles.items():
            if needle in blob:
                yield f"{where}: {what}"


async def test_no_spelling_of_any_secret_is_stored_or_logged_anywhere(tmp_path: Path) -> None:
    server = EmbeddedServer(data_dir=tmp_path / "nats", log_file=tmp_path / "nats-server.log")
    server.start()
    processes = Processes()
    settings = TepSettings(nats_url=server.url)
    try:
        async with HttpTarget() as target:
            nc = await connect(server.url, name="secret-scan")
            try:
                await ensure_log(nc.jetstream(), settings)
                env = child_env(server.url, TEP_LOG_LEVEL="DEBUG", **secret_env())
                for role in ("orchestrator", "executor", "projector"):
                    processes.start(
                        tep_command(role, "--nats-url", server.url),
                        env,
                        tmp_path / f"{role}.log",
                    )
                submit = ("submit", str(write_plan(tmp_path, plan(target))), "--wait", "--json")
                submitted = await anyio.to_thread.run_sync(
                    lambda: run_tep(*submit, "--timeout", "60", nats_url=server.url)
                )
                processes.stop_all()
                await check(submitted, nc, settings, target, tmp_path)
            finally:
                await nc.close()
    finally:
        processes.stop_all()
        server.stop()


async def check(
    submitted: subprocess.CompletedProcess[str],
    nc: NatsClient,
    settings: TepSettings,
    target: HttpTarget,
    logs: Path,
) -> None:
    # The run did what it should: the execution failed (one call answers 500), and the
    # target received every secret, so there was something to leak.
    assert submitted.returncode == 1, submitted.stderr
    final = json.loads(submitted.stdout)
    actions = final["actions"]
    assert {a: actions[a]["status"] for a in actions} == {
        "in-path": "completed",
        "in-header": "completed",
        "in-query": "completed",
        "in-body": "completed",
        "downstream": "completed",
        "fails": "failed",
        "not-granted": "failed",
    }
    assert actions["not-granted"]["error"]["code"] == "secret_not_allowed"
    hits = {hit.path: hit for hit in target.hits}
    assert hits[f"/echo/path/{SECRETS['PATH_TOKEN']}"]
    assert hits["/echo/header"].headers["authorization"] == f"Bearer {SECRETS['HEADER_TOKEN']}"
    assert hits["/echo/query"].query["token"] == SECRETS["QUERY_TOKEN"]
    assert json.loads(hits["/echo/body"].body)["key"] == SECRETS["BODY_TOKEN"]
    assert [h.query["token"] for h in target.hits if h.path == "/echo/fails"] == [
        SECRETS["FAIL_TOKEN"]
    ] * 2
    assert "/echo/elsewhere" not in hits

    # What was stored in their place: the echoes and the error, redacted.
    log = EventLog(nc, settings)
    events = [r.event for r in await log.read_execution(final["execution_id"])]
    outputs = {e.action_id: e.output for e in events if isinstance(e, ActionCompleted)}
    assert outputs["in-path"]["path"] == "/echo/path/[redacted]"
    assert outputs["in-body"]["json"] == {"key": "[redacted]", "list": ["x [redacted]"]}
    [retry] = [e for e in events if isinstance(e, ActionAttemptFailed)]
    assert retry.error.code == "http_5xx" and "[redacted]" in retry.error.message
    failed = {e.action_id: e for e in events if isinstance(e, ActionFailed)}
    assert "[redacted]" in failed["fails"].error.message

    # And no spelling of any secret anywhere.
    streams = await stored_messages(nc)
    assert settings.stream in streams and settings.deadletter_stream in streams
    buckets = [name.removeprefix("KV_") for name in streams if name.startswith("KV_")]
    assert buckets, "the projector wrote no view"
    blobs = {
        f"stream {name} message {n}": data
        for name, messages in streams.items()
        for n, data in enumerate(messages)
    }
    blobs |= {f"view entry {n}": data for n, data in enumerate(await view_entries(nc, buckets))}
    blobs |= role_logs(logs)
    blobs["tep submit output"] = (submitted.stdout + submitted.stderr).encode()
    assert {"log orchestrator.log", "log executor.log", "log projector.log"} <= set(blobs)
    assert list(leaks(blobs)) == []
