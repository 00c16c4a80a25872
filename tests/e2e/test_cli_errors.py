"""Every command reports an unreachable NATS in one line, exit 3, and does not hang.

The first connection is bounded (one attempt, then exit 3); ``run_tep``'s deadline fails a
command that retries instead of giving up.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from tep_cli import EXAMPLES, run_tep

from tep.server import EmbeddedServer, find_free_port


@pytest.mark.parametrize(
    "args",
    [
        ["submit", str(EXAMPLES / "sequential-pipeline.json")],
        ["submit", str(EXAMPLES / "sequential-pipeline.json"), "--wait", "--json"],
        ["events", "exe_1"],
        ["events", "exe_1", "--json"],
        ["watch", "exe_1"],
        ["cancel", "exe_1"],
        ["status", "exe_1"],
        ["status", "exe_1", "--json"],
        ["list"],
        ["list", "--json"],
        ["rebuild"],
        ["orchestrator"],
        ["executor"],
        ["projector"],
    ],
    ids=lambda args: " ".join(a for a in args if not a.endswith(".json")),
)
def test_unreachable_nats_exits_3_with_one_line(args: list[str], tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{find_free_port()}"

    result = run_tep(*args, "--nats-url", url, timeout=30)

    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"tep: cannot reach NATS at {url}")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("role", ["orchestrator", "executor", "projector"])
def test_a_health_port_in_use_is_one_line_not_a_traceback(
    role: str, nats_server: EmbeddedServer
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_tep(
            role,
            *("--health-host", "127.0.0.1", "--health-port", str(port)),
            nats_url=nats_server.url,
            timeout=60,
        )

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("tep: "))
    assert line == (
        f"tep: cannot serve health checks on 127.0.0.1:{port}: address already in use"
        " (another process listens there? pick another --health-port)"
    )
