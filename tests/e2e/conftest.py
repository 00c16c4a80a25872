"""End-to-end fixtures: background `tep` processes, the demo target, the three roles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tep_cli import DemoTarget, Processes, Roles, child_env, tep_command, wait_for_http

from tep.server import EmbeddedServer, find_free_port


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop_all()


@pytest.fixture
def demo_target(processes: Processes, tmp_path: Path) -> DemoTarget:
    """`tep demo-target` on a free port, answering."""
    port = find_free_port()
    processes.start(
        tep_command("demo-target", "--port", str(port)), child_env(), tmp_path / "demo.log"
    )
    target = DemoTarget(port)
    wait_for_http(f"{target.url}/health")
    return target


@pytest.fixture
def roles(nats_server: EmbeddedServer, processes: Processes, tmp_path: Path) -> Roles:
    """The three roles as `tep` subprocesses against the test's nats-server."""
    env = child_env(nats_server.url)
    for role in ("orchestrator", "executor", "projector"):
        processes.start(
            tep_command(role, "--nats-url", nats_server.url), env, tmp_path / f"{role}.log"
        )
    return Roles(nats_server.url, tmp_path)
