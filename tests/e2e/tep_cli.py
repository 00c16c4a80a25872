"""Helpers for end-to-end tests: `tep` as a subprocess, background processes, /proc walking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ALLOW_CIDRS = "TEP_EXECUTOR_ALLOW_CIDRS"
STATE_DIR = "TEP_STATE_DIR"


def tep_command(*args: str) -> list[str]:
    """``tep ARGS`` without relying on PATH."""
    return [sys.executable, "-m", "tep.cli.main", *args]


def child_env(nats_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for a ``tep`` subprocess pointed at ``nats_url``."""
    # Only the loopback allowance (test targets listen on loopback) and the state directory
    # (notes of `tep up` stacks stay out of the user's own) of tests/conftest.py pass.
    kept = (ALLOW_CIDRS, STATE_DIR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEP_") or k in kept}
    if nats_url:
        env["TEP_NATS_URL"] = nats_url
    env.update(extra)
    return env


def run_tep(
    *args: str, nats_url: str | None = None, timeout: float = 60.0, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``tep ARGS`` to completion and capture its output."""
    return subprocess.run(
        tep_command(*args),
        cwd=ROOT,
        env=child_env(nats_url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def json_output(result: subprocess.CompletedProcess[str]) -> Any:
    """The single JSON document a ``--json`` command printed (fails on anything else)."""
    return json.loads(result.stdout)


def write_plan(directory: Path, plan: dict[str, Any], name: str = "plan.json") -> Path:
    """Write a plan document and return its path."""
    path = directory / name
    path.write_text(json.dumps(plan))
    return path


@dataclass
class Processes:
    """Background processes started by a test; stopped (and reaped) at teardown."""

    items: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(args),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.items.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.items:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in self.items:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for_http(url: str, timeout: float = 15.0) -> None:
    """Poll ``url`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@dataclass(frozen=True)
class DemoTarget:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Roles:
    """Orchestrator, executor and projector processes against one NATS server."""

    nats_url: str
    log_dir: Path


def plan_against(target: DemoTarget, example: str) -> dict[str, Any]:
    """An example plan with its URLs pointed at ``target`` instead of the default port."""
    text = (EXAMPLES / example).read_text().replace("http://127.0.0.1:8787", target.url)
    document: dict[str, Any] = json.loads(text)
    return document


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def command_line(pid: int) -> list[str]:
    """A process's arguments (empty if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_for(condition: Callable[[], Any], timeout: float, message: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{message} (within {timeout}s)")
