"""`tep up` runs the HTTP API too: its banner prints the URL and a token, the stack's note
(readable by the user alone) keeps them, and the API works on the authenticated embedded
server, schedules included (the API's admin identity)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
from tep_cli import STATE_DIR
from test_up import Up, embedded_args, start_up, ups  # noqa: F401 (the fixture)

from tep.client import TepClient
from tep.server import find_free_port


def banner_api(up: Up) -> tuple[str, str]:
    """The API's URL and token from the banner."""
    for line in up.output().splitlines():
        parts = line.split()
        if parts[:1] == ["api"]:
            return parts[1], parts[parts.index("token") + 1]
    raise AssertionError(f"no api line in the banner:\n{up.output()}")


def test_up_serves_the_api_with_the_token_of_its_banner(tmp_path: Path, ups: list[Up]) -> None:  # noqa: F811
    port = find_free_port()
    up = start_up(tmp_path, *embedded_args(tmp_path), "--api-port", str(port))
    ups.append(up)
    url, token = banner_api(up)
    note_path = next(
        Path(os.environ[STATE_DIR]).glob(f"stack-*-{up.nats_url.rsplit(':', 1)[1]}.json")
    )
    note = json.loads(note_path.read_text())
    note_mode = stat.S_IMODE(note_path.stat().st_mode)
    token_file = tmp_path / "data" / "api" / "token"
    plan = {"id": "up-api", "actions": [{"id": "w", "type": "wait"}]}

    with TepClient(url, token) as client:
        started = client.submit(plan)
        added = client.add_schedule("up-nightly", "0 3 * * *", plan)
        client.remove_schedule("up-nightly")
        health = client.health()
    anonymous = httpx.get(f"{url}/v1/executions", timeout=5)
    up.stop()

    assert url == f"http://127.0.0.1:{port}"
    assert started.created and added.name == "up-nightly" and health.nats_connected
    assert anonymous.status_code == 401
    assert note["api_url"] == url and note["api_token"] == token
    assert note_mode == 0o600
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
