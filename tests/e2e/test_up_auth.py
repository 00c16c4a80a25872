"""`tep up` with authentication on: commands on the same machine find the stack's credential by
themselves; an identity without the permission is refused in one line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from support.nats_auth import violations
from tep_cli import (
    ROOT,
    DemoTarget,
    child_env,
    descendants,
    json_output,
    plan_against,
    tep_command,
    write_plan,
)
from test_up import Up, embedded_args, start_up

from tep.server import find_free_port


def tep(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``tep ARGS`` with the test environment plus ``env``."""
    return subprocess.run(
        tep_command(*args),
        cwd=ROOT,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def stop(up: Up) -> None:
    children = descendants(up.process.pid)
    if up.process.poll() is None:
        up.stop()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_commands_use_the_stacks_credentials_and_a_wrong_identity_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("TEP_STATE_DIR", str(state))
    demo = DemoTarget(find_free_port())
    port = find_free_port()
    up = start_up(
        tmp_path,
        *embedded_args(tmp_path, port),
        "--with-demo-target",
        "--demo-port",
        str(demo.port),
    )
    creds = tmp_path / "data" / "creds"
    try:
        assert [p.name for p in state.glob("stack-*.json")] == [f"stack-127.0.0.1-{port}.json"]
        plan = write_plan(tmp_path, plan_against(demo, "sequential-pipeline.json"))
        url = ["--nats-url", up.nats_url]

        # No credential flags: the note of `tep up` in the state directory names them.
        submitted = tep("submit", str(plan), "--wait", "--json", "--timeout", "30", *url)
        as_executor = tep("submit", str(plan), *url, TEP_NKEY=str(creds / "executor.nk"))
        # Elsewhere the note is not found: the server refuses the connection without identity.
        anonymous = tep("status", "x", *url, TEP_STATE_DIR=str(tmp_path / "elsewhere"))
        limited = tep("queue", "set", "http", "--concurrency", "7", "--json", *url)
        shown = tep("queue", "show", "http", "--json", *url)
        history = tep("events", json_output(submitted)["execution_id"], "--json", *url)
    finally:
        stop(up)

    assert [p.name for p in state.glob("stack-*.json")] == []  # removed when the stack stopped
    assert submitted.returncode == 0, submitted.stderr
    assert json_output(submitted)["status"] == "completed"
    assert as_executor.returncode == 3, as_executor.stdout + as_executor.stderr
    message = as_executor.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert message.startswith("tep: NATS refused this identity permission"), message
    assert "--nkey" in message, message
    assert anonymous.returncode == 3, anonymous.stdout + anonymous.stderr
    assert anonymous.stderr.strip().splitlines() == [
        f"tep: NATS at {up.nats_url} refused no credentials (authorization violation): give "
        "this process's identity with --nkey, --creds or --user/--password (or TEP_NKEY, "
        "TEP_CREDS, TEP_USER/TEP_PASSWORD)"
    ]
    assert limited.returncode == 0, limited.stderr
    assert json_output(limited)["concurrency"] == 7
    assert json_output(shown)["queues"][0]["concurrency"] == 7
    assert history.returncode == 0, history.stderr
    assert json_output(history)["events"][0]["event"]["type"] == "plan.submitted"
    # The roles did their job without a refusal; the executor identity's submit was refused.
    log = tmp_path / "data" / "nats-server.log"
    found = [str(v) for v in violations(log, creds)]
    assert found and all(v.startswith("executor: ") for v in found), found
