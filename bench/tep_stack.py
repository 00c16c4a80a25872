"""A `tep up` stack for benchmarks: start it in a scratch directory, find its processes by role,
read their health documents, sample their RSS and CPU time (Linux /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client as NatsClient

from eventstore.access import Role
from eventstore.config import TepSettings
from eventstore.jetstream.connection import connect_as
from projections.state_manager import StateManager
from tep.server import find_free_port

__all__ = [
    "Connected",
    "RssSampler",
    "Stack",
    "bench_parser",
    "connected_stack",
    "load_average",
    "role_cpu_s",
    "run_bench",
    "start_stack",
]

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    """A running `tep up` in a scratch directory."""

    process: subprocess.Popen[bytes]
    stdout: Path
    nats_url: str = ""
    api_url: str = ""
    """The HTTP API's base URL and bearer token, from the banner (empty with ``--no-api``)."""
    api_token: str = ""

    def processes(self) -> dict[int, str]:
        """The stack's live processes, pid -> name (role, `nats-server`, `tep up`)."""
        found = {self.process.pid: "tep up"}
        for pid in _descendants(self.process.pid):
            args = _command_line(pid)
            if args and Path(args[0]).name == "nats-server":
                found[pid] = "nats-server"
            elif "tep.cli.main" in args and args.index("tep.cli.main") + 1 < len(args):
                role = args[args.index("tep.cli.main") + 1]
                if role != "demo-target":
                    found[pid] = role
        return found

    def health(self, role: str) -> dict[str, Any]:
        """The ``/healthz`` document of the first process of ``role`` (empty if none answers)."""
        for pid, name in self.processes().items():
            args = _command_line(pid)
            if name == role and "--health-port" in args:
                port = args[args.index("--health-port") + 1]
                try:
                    document: dict[str, Any] = httpx.get(
                        f"http://127.0.0.1:{port}/healthz", timeout=5
                    ).json()
                except (httpx.HTTPError, ValueError):
                    return {}
                return document
        return {}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_stack(
    directory: Path,
    env: dict[str, str],
    executors: int,
    demo_port: int,
    up_args: Sequence[str] = (),
) -> Stack:
    """Start `tep up` (with ``up_args``) with its data in ``directory`` and the demo target on
    ``demo_port``; return once it says it is ready (exits the bench if it does not within a
    minute)."""
    stdout = directory / "up.out"
    command = [sys.executable, "-m", "tep.cli.main", "up", "--data-dir", str(directory / "data")]
    command += ["--port", str(find_free_port()), "--executors", str(executors)]
    command += ["--with-demo-target", "--demo-port", str(demo_port), *up_args]
    with stdout.open("wb") as out, (directory / "up.err").open("wb") as err:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            process_group=0,
        )
    stack = Stack(process, stdout)
    deadline = time.monotonic() + 60
    while "ready:" not in stdout.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stack.stop()
            raise SystemExit(f"tep up did not start:\n{stdout.read_text()}")
        time.sleep(0.1)
    for line in stdout.read_text().splitlines():
        words = line.split()
        if words[:1] == ["nats"]:
            stack.nats_url = words[1]
        elif words[:1] == ["api"] and "token" in words:
            stack.api_url, stack.api_token = words[1], words[words.index("token") + 1]
    return stack


@dataclass
class Connected:
    """A running stack, a StateManager and an admin connection on it, and its demo target."""

    stack: Stack
    settings: TepSettings
    sm: StateManager
    admin: NatsClient
    target: str


@asynccontextmanager
async def connected_stack(
    name: str,
    executors: int = 1,
    env: Mapping[str, str] | None = None,
    up_args: Sequence[str] = (),
) -> AsyncIterator[Connected]:
    """`tep up` in a scratch directory (no ``TEP_*`` of ours but ``env``, logs at WARNING), a
    StateManager and an admin connection named after the bench; all stopped on exit."""
    with tempfile.TemporaryDirectory(prefix=f"tep-{name}-") as tmp:
        directory = Path(tmp)
        state_dir = directory / "state"
        os.environ["TEP_STATE_DIR"] = str(state_dir)
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("TEP_")}
        child_env.update(TEP_STATE_DIR=str(state_dir), TEP_LOG_LEVEL="WARNING", **(env or {}))
        demo_port = find_free_port()
        stack = start_stack(directory, child_env, executors, demo_port, up_args)
        try:
            settings = TepSettings.from_env().model_copy(update={"nats_url": stack.nats_url})
            sm = await StateManager.connect(stack.nats_url, settings=settings, name=name)
            admin = await connect_as(settings, Role.ADMIN, name=f"{name}-admin")
            try:
                yield Connected(stack, settings, sm, admin, f"http://127.0.0.1:{demo_port}")
            finally:
                await sm.close()
                await admin.close()
        finally:
            stack.stop()


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench's argument parser: its docstring's first line as the description, the rest
    (usage and what it prints) after the options in ``--help``."""
    return argparse.ArgumentParser(
        description=doc.splitlines()[0] if doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(doc.splitlines()[2:]) if doc else None,
    )


def run_bench(main: Coroutine[Any, Any, None]) -> None:
    """Run a bench's ``main``; SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the stack
    it started is stopped."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main)


def load_average() -> str:
    """The closing line of a bench: the machine's load average."""
    return f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"


def role_cpu_s(stack: Stack) -> dict[str, float]:
    """CPU seconds used so far by each kind of process of the stack (processes of one role
    summed)."""
    used: dict[str, float] = {}
    for pid, name in stack.processes().items():
        cpu = _cpu_s(pid)
        if cpu is not None:
            used[name] = used.get(name, 0.0) + cpu
    return used


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(k) for k in children.read_text().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in found:
                    found.add(kid)
                    frontier.append(kid)
    return found


def _command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_s(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class RssSampler:
    """Samples every process's RSS and CPU time, labelled with the phase the bench is in."""

    stack: Stack
    phase: str = "idle"
    samples: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    cpu_at_end: dict[str, dict[str, float]] = field(default_factory=dict)
    """phase -> label -> the process's CPU seconds at the phase's last sample."""

    async def run(self, interval: float = 0.25) -> None:
        while True:
            processes = self.stack.processes()
            counts: dict[str, int] = {}
            several = {n for n in processes.values() if list(processes.values()).count(n) > 1}
            for pid in sorted(processes):
                name = processes[pid]
                counts[name] = counts.get(name, 0) + 1
                numbered = name == "executor" or name in several
                label = f"{name}-{counts[name]}" if numbered else name
                kb, cpu = _rss_kb(pid), _cpu_s(pid)
                if kb is not None:
                    self.samples.setdefault(self.phase, {}).setdefault(label, []).append(kb)
                if cpu is not None:
                    self.cpu_at_end.setdefault(self.phase, {})[label] = cpu
            await asyncio.sleep(interval)

    def cpu(self, start: str, end: str, label: str) -> float | None:
        """CPU seconds ``label`` used from the end of phase ``start`` to the end of ``end``."""
        before = self.cpu_at_end.get(start, {}).get(label)
        after = self.cpu_at_end.get(end, {}).get(label)
        return after - before if before is not None and after is not None else None

    def peak(self, phase: str, label: str) -> float | None:
        values = self.samples.get(phase, {}).get(label)
        return max(values) / 1024 if values else None

    def labels(self) -> list[str]:
        order = {"orchestrator": 0, "executor": 1, "projector": 2, "nats-server": 3, "tep up": 4}
        names = {label for phase in self.samples.values() for label in phase}
        return sorted(names, key=lambda n: (order.get(n.split("-")[0], 1), n))
