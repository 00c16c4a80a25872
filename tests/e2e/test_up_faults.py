"""`tep up` when things go wrong: a data dir already in use, a port taken, its nats-server
killed, a role that stops answering its health checks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest
from tep_cli import (
    ROOT,
    DemoTarget,
    alive,
    child_env,
    plan_against,
    run_tep,
    tep_command,
    wait_for,
    write_plan,
)
from test_up import Up, embedded_args, start_up
from test_up import ups as ups  # the fixture

from tep.health_watch import HealthWatch
from tep.server import find_free_port, find_server_binary
from tep.supervisor import ChildSpec, Supervisor


def in_use_line(data_dir: Path) -> str:
    return f"tep: data dir {data_dir} is in use by another tep up"


def role_pid(up: Up, role: str, *, other_than: int | None = None) -> int | None:
    return next((p for p, r in up.roles().items() if r == role and p != other_than), None)


def test_a_second_up_on_a_data_dir_in_use_exits_1_naming_the_holder(
    tmp_path: Path, ups: list[Up]
) -> None:
    port = find_free_port()
    first = start_up(tmp_path, *embedded_args(tmp_path, port), name="first")
    ups.append(first)
    data_dir = tmp_path / "data"

    # Same port: the first one's server answers; another port: this one would start a server.
    with ThreadPoolExecutor() as pool:
        same = pool.submit(run_tep, "up", *embedded_args(tmp_path, port), timeout=30)
        other = pool.submit(run_tep, "up", *embedded_args(tmp_path), timeout=30)
        same_port, other_port = same.result(), other.result()

    for second in (same_port, other_port):
        assert second.returncode == 1, second.stderr
        assert second.stderr.strip().splitlines() == [
            f"{in_use_line(data_dir)} (pid {first.process.pid}): stop it, "
            "or give this one its own --data-dir and --port"
        ]
        assert "ready" not in second.stdout
    assert first.process.poll() is None
    first.stop()
    assert first.process.returncode == 0


def test_two_ups_started_at_once_on_one_data_dir_one_runs_the_other_exits_1(
    tmp_path: Path, ups: list[Up]
) -> None:
    port = find_free_port()
    started = []
    for name in ("a", "b"):
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                tep_command("up", *embedded_args(tmp_path, port)),
                cwd=ROOT,
                env=child_env(),
                stdout=stdout,
                stderr=stderr,
                process_group=0,
            )
        up = Up(process, out, err, "")
        ups.append(up)
        started.append(up)

    loser = wait_for(
        lambda: next((u for u in started if u.process.poll() is not None), None),
        30,
        "one of the two gave up",
    )
    winner = next(u for u in started if u is not loser)

    assert loser.process.returncode == 1, loser.stderr.read_text()
    lines = loser.stderr.read_text().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(in_use_line(tmp_path / "data")), lines
    assert "ready" not in loser.output()
    wait_for(lambda: "ready:" in winner.output(), 30, "the other one ready")
    assert winner.process.poll() is None
    winner.stop()
    assert winner.process.returncode == 0


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something listens on that is not a NATS server (it never answers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_up_whose_nats_server_cannot_listen_says_why_and_exits_1(
    tmp_path: Path, taken_port: int
) -> None:
    result = run_tep("up", *embedded_args(tmp_path, taken_port), timeout=60)

    assert result.returncode == 1
    assert "ready" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tep: nats-server could not start on 127.0.0.1:{taken_port}: ")
    assert "address already in use" in lines[0]


def test_up_never_takes_a_server_on_its_port_for_its_own(tmp_path: Path) -> None:
    port = find_free_port()
    # A NATS server that answers INFO but refuses tep up's probe (it wants a password).
    other = subprocess.Popen(
        [
            find_server_binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "--user",
            "someone",
            "--pass",
            "secret",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _listening(port), 10, "the other server listening")

        result = run_tep("up", *embedded_args(tmp_path, port), timeout=60)
    finally:
        other.terminate()
        other.wait(5)

    assert result.returncode == 1
    assert "ready" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tep: nats-server could not start on 127.0.0.1:{port}: ")
    assert "another server" in lines[0]


def test_up_stops_every_role_and_exits_1_when_its_nats_server_dies(
    tmp_path: Path, ups: list[Up]
) -> None:
    up = start_up(tmp_path, *embedded_args(tmp_path))
    ups.append(up)
    roles = wait_for(
        lambda: (r := up.roles()) and len(r) == 5 and r, 15, f"every role running ({up.roles()})"
    )
    server = next(pid for pid, role in roles.items() if role == "nats-server")

    os.kill(server, signal.SIGKILL)

    up.process.wait(15)
    assert up.process.returncode == 1
    stderr = up.stderr.read_text().strip().splitlines()
    assert stderr[-1].startswith("tep: the embedded nats-server exited with code -9")
    assert [pid for pid in roles if alive(pid)] == []


def test_a_role_that_stops_answering_its_health_checks_is_replaced(
    tmp_path: Path, ups: list[Up]
) -> None:
    demo = DemoTarget(find_free_port())
    up = start_up(
        tmp_path,
        *embedded_args(tmp_path),
        "--with-demo-target",
        "--demo-port",
        str(demo.port),
        "--restart-unhealthy-after",
        "3",
    )
    ups.append(up)
    paused = wait_for(lambda: role_pid(up, "executor"), 15, "executor running")

    os.kill(paused, signal.SIGSTOP)  # alive, connected, and silent

    # Paused right after start, it may not have been seen healthy yet: it then gets the
    # startup grace (30 s) before the 3 s.
    replacement = wait_for(
        lambda: role_pid(up, "executor", other_than=paused), 50, "a new executor"
    )
    wait_for(lambda: not alive(paused), 10, "the paused executor gone")
    log = up.stderr.read_text()
    assert f"executor (pid {paused}) is unhealthy: no answer for" in log
    plan = write_plan(tmp_path, plan_against(demo, "sequential-pipeline.json"))
    submitted = run_tep("submit", str(plan), "--wait", "--timeout", "30", nats_url=up.nats_url)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert alive(replacement)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


ANSWERS_503 = """\
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("serving", flush=True)
server.serve_forever()
"""


@pytest.mark.anyio
async def test_the_supervisor_restarts_a_child_whose_health_says_503() -> None:
    port = find_free_port()
    spec = ChildSpec(
        "sick",
        [sys.executable, "-c", ANSWERS_503, str(port)],
        health_url=f"http://127.0.0.1:{port}/healthz",
    )
    lines: list[str] = []
    supervisor = Supervisor(
        [spec],
        lambda name, line: lines.append(line),
        health=HealthWatch(grace=1.0, startup_grace=1.0, interval=0.2),
    )
    pids: set[int] = set()

    async with anyio.create_task_group() as group:
        await group.start(supervisor.run)
        with anyio.fail_after(30):
            while len(pids) < 2 or lines.count("serving") < 2:
                pids.update(supervisor.pids().values())
                await anyio.sleep(0.05)
        await supervisor.stop(grace=2.0)

    assert len(pids) >= 2 and supervisor.restarts()["sick"] >= 1
