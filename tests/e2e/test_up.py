"""`tep up`: embedded NATS, supervised roles, clean stop with no orphans, history kept."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tep_cli import (
    EXAMPLES,
    ROOT,
    DemoTarget,
    alive,
    child_env,
    command_line,
    descendants,
    json_output,
    plan_against,
    run_tep,
    tep_command,
    wait_for,
    write_plan,
)

from tep.server import EmbeddedServer, find_free_port


@dataclass
class Up:
    """A running `tep up` and where its output goes."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    nats_url: str

    def output(self) -> str:
        return self.stdout.read_text()

    def roles(self) -> dict[int, str]:
        """Live descendants by pid -> role (`nats-server` for the server)."""
        found = {}
        for pid in descendants(self.process.pid):
            args = command_line(pid)
            if not args:
                continue
            if Path(args[0]).name == "nats-server":
                found[pid] = "nats-server"
            elif "tep.cli.main" in args:
                found[pid] = args[args.index("tep.cli.main") + 1]
        return found

    def stop(self, signum: signal.Signals = signal.SIGTERM, *, group: bool = False) -> float:
        """Signal `tep up` (or its whole process group, as a terminal's Ctrl-C does), wait for
        it to exit, return how long that took."""
        begin = time.monotonic()
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        self.process.wait(10)
        return time.monotonic() - begin


def start_up(tmp_path: Path, *args: str, name: str = "up") -> Up:
    stdout, stderr = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        # Its own process group, like a command started from a shell.
        process = subprocess.Popen(
            tep_command("up", *args),
            cwd=ROOT,
            env=child_env(),
            stdout=out,
            stderr=err,
            process_group=0,
        )
    up = Up(process, stdout, stderr, "")
    try:
        wait_for(lambda: "ready:" in up.output() or process.poll() is not None, 60, "tep up ready")
    except AssertionError as error:
        os.killpg(process.pid, signal.SIGKILL)  # its children too: they share its group
        raise AssertionError(f"{error}\n{up.output()}\n{stderr.read_text()[-4000:]}") from None
    assert process.poll() is None, up.output() + stderr.read_text()
    for line in up.output().splitlines():
        if line.strip().startswith("nats"):
            up.nats_url = line.split()[1]
    return up


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        if up.process.poll() is not None:
            continue
        # Collect the children first: once `tep up` is gone they belong to init.
        children = descendants(up.process.pid)
        up.process.terminate()
        try:
            up.process.wait(10)
        except subprocess.TimeoutExpired:
            up.process.kill()
            up.process.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def embedded_args(tmp_path: Path, port: int | None = None) -> list[str]:
    # A free API port of its own: tests run side by side, and two stacks starting at once
    # would both find the default API port free before either binds it.
    return [
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(port or find_free_port()),
        "--api-port",
        str(find_free_port()),
    ]


@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "Ctrl-C to the process group"],
)
def test_up_starts_every_role_and_stops_them_all(
    signum: signal.Signals, group: bool, tmp_path: Path, ups: list[Up]
) -> None:
    up = start_up(
        tmp_path,
        *embedded_args(tmp_path),
        "--executors",
        "2",
        "--with-demo-target",
        "--demo-port",
        str(find_free_port()),
    )
    ups.append(up)
    expected = [
        "api",
        "demo-target",
        "executor",
        "executor",
        "nats-server",
        "orchestrator",
        "projector",
    ]
    roles = wait_for(
        lambda: (r := up.roles()) and sorted(r.values()) == expected and r,
        15,
        f"every role running ({up.roles()})",
    )

    up.stop(signum, group=group)

    assert up.process.returncode == 0
    # Every role stopped by itself within its grace: none was killed for taking too long.
    assert "did not stop in time" not in up.stderr.read_text()
    survivors = [pid for pid in roles if alive(pid)]
    assert survivors == [], f"still running: {[roles[p] for p in survivors]}"
    assert up.output().splitlines()[-1] == "stopped"


def test_up_killed_with_sigkill_leaves_no_process_behind_and_its_run_goes_on(
    tmp_path: Path, ups: list[Up], demo_target: DemoTarget
) -> None:
    # Linux signals each child when `tep up` dies, nats-server included: a server left
    # running would hold the data dir's store and its port for the next `tep up`.
    port = find_free_port()
    up = start_up(tmp_path, *embedded_args(tmp_path, port), "--no-api")
    ups.append(up)
    expected = ["executor", "nats-server", "orchestrator", "projector"]
    roles = wait_for(
        lambda: (r := up.roles()) and sorted(r.values()) == expected and r,
        15,
        f"every role running ({up.roles()})",
    )
    slow = {"method": "GET", "url": f"{demo_target.url}/slow?ms=1500"}
    plan = {
        "id": "killed-mid-run",
        "actions": [
            {"id": "first", "request": slow},
            {"id": "second", "request": slow, "dependsOn": ["first"]},
        ],
    }
    submitted = run_tep(
        "submit", str(write_plan(tmp_path, plan)), "--execution-id", "kept", nats_url=up.nats_url
    )
    assert submitted.returncode == 0, submitted.stderr
    wait_for(
        lambda: (
            '"action.started"' in run_tep("events", "kept", "--json", nats_url=up.nats_url).stdout
        ),
        30,
        "the first action started",
    )

    up.process.kill()
    up.process.wait(10)

    wait_for(
        lambda: not any(alive(pid) for pid in roles),
        15,
        f"every child gone ({[roles[p] for p in roles if alive(p)]} still running)",
    )
    again = start_up(tmp_path, *embedded_args(tmp_path, port), "--no-api", name="again")
    ups.append(again)
    finished = wait_for(lambda: _ended(again, "kept"), 90, "the run ended after the restart")
    assert finished["status"] == "completed", finished


def _ended(up: Up, execution_id: str) -> dict[str, Any] | None:
    status = run_tep("status", execution_id, "--json", nats_url=up.nats_url)
    if status.returncode != 0:
        return None  # not in the view yet
    document: dict[str, Any] = json_output(status)
    return document if document["status"] in ("completed", "failed", "cancelled") else None


def test_up_runs_several_orchestrators_and_a_plan_completes(
    tmp_path: Path, ups: list[Up], demo_target: DemoTarget
) -> None:
    up = start_up(tmp_path, *embedded_args(tmp_path), "--orchestrators", "2", "--no-api")
    ups.append(up)
    orchestrators = wait_for(
        lambda: len(o := [p for p, r in up.roles().items() if r == "orchestrator"]) == 2 and o,
        15,
        f"two orchestrators running ({up.roles()})",
    )
    assert "orchestrator x2" in up.output()
    plan = write_plan(tmp_path, plan_against(demo_target, "sequential-pipeline.json"))

    submitted = run_tep(
        "submit", str(plan), "--wait", "--timeout", "60", "--json", nats_url=up.nats_url
    )

    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert json_output(submitted)["status"] == "completed"
    assert all(alive(pid) for pid in orchestrators)
    ports = {_flag(command_line(pid), "--health-port") for pid in orchestrators}
    assert len(ports) == 2  # each its own health endpoint


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_children_log_lines_carry_their_role(tmp_path: Path, ups: list[Up]) -> None:
    up = start_up(
        tmp_path,
        *embedded_args(tmp_path),
        "--with-demo-target",
        "--demo-port",
        str(find_free_port()),
    )
    ups.append(up)

    wait_for(lambda: "demo target listening" in up.stderr.read_text(), 15, "demo target log")
    up.stop()

    lines = [line for line in up.stderr.read_text().splitlines() if "demo target listening" in line]
    assert lines and '"proc": "demo-target"' in lines[0]


def test_a_crashed_child_is_restarted(tmp_path: Path, ups: list[Up]) -> None:
    up = start_up(
        tmp_path,
        *embedded_args(tmp_path),
        "--with-demo-target",
        "--demo-port",
        str(find_free_port()),
    )
    ups.append(up)
    first = wait_for(
        lambda: next((p for p, r in up.roles().items() if r == "demo-target"), None),
        15,
        "demo target running",
    )

    os.kill(first, signal.SIGKILL)

    second = wait_for(
        lambda: next((p for p, r in up.roles().items() if r == "demo-target" and p != first), None),
        15,
        "demo target restarted",
    )
    assert second != first
    assert "demo-target exited with code -9; restarting in" in up.stderr.read_text()


def test_a_second_up_on_the_same_data_dir_keeps_the_history(tmp_path: Path, ups: list[Up]) -> None:
    port = find_free_port()
    first = start_up(tmp_path, *embedded_args(tmp_path, port), name="first")
    ups.append(first)
    submitted = run_tep(
        "submit",
        str(EXAMPLES / "sequential-pipeline.json"),
        "--execution-id",
        "kept",
        nats_url=first.nats_url,
    )
    assert submitted.returncode == 0, submitted.stderr
    first.stop()

    second = start_up(tmp_path, *embedded_args(tmp_path, port), name="second")
    ups.append(second)
    history = run_tep("events", "kept", "--json", nats_url=second.nats_url)

    assert history.returncode == 0, history.stderr
    events = json_output(history)["events"]
    assert events[0]["event"]["type"] == "plan.submitted" and events[0]["sequence"] == 1


def test_up_uses_a_nats_server_that_already_answers(
    nats_server: EmbeddedServer, tmp_path: Path, ups: list[Up]
) -> None:
    up = start_up(tmp_path, "--nats-url", nats_server.url, "--data-dir", str(tmp_path / "unused"))
    ups.append(up)

    assert f"{nats_server.url} (existing server)" in up.output()
    assert "nats-server" not in up.roles().values()
    assert not (tmp_path / "unused").exists()
    up.stop()
    assert up.process.returncode == 0


def test_up_with_an_unreachable_cluster_url_exits_3(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{find_free_port()},nats://127.0.0.1:{find_free_port()}"

    result = run_tep("up", "--nats-url", url, timeout=30)  # one attempt, not retries

    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [f"tep: cannot reach NATS at {url}"]
