"""The whole system on loopback: orchestrator and executor processes, a local HTTP target.

    .venv/bin/python bench/bench_system.py [--fanout 100] [--chain 20] [--big-fanout 1000]

Prints (a) wall time of a 100-action fan-out and a 20-step chain, submit to
execution.completed; (b) a 1,000-action fan-out in actions/s; (c) the per-step overhead of the
chain, p50 and p99: from one action's completion event to the next action's request event.
The executor's HTTP layer against aiohttp used directly is measured by bench/bench_http.py.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from aiohttp import web

from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ActionExecuteRequested, PlanSubmitted
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from eventstore.plan import Action, Plan, RequestSpec
from tep.server import EmbeddedServer, find_free_port

ROOT = Path(__file__).resolve().parent.parent


def serve_target(port: int) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def start_role(role: str, url: str, *extra: str) -> subprocess.Popen[bytes]:
    # The target is on loopback, which executors refuse unless allowed (as `tep up` does).
    env = dict(os.environ, TEP_LOG_LEVEL="WARNING", TEP_EXECUTOR_ALLOW_CIDRS='["127.0.0.0/8"]')
    return subprocess.Popen(
        [sys.executable, "-m", "tep.cli.main", role, "--nats-url", url, *extra],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )


def fan_out(plan_id: str, width: int, target: str) -> Plan:
    branches = [
        Action(id=f"b{i}", request=RequestSpec(url=f"{target}/branch/{i}")) for i in range(width)
    ]
    join = Action(
        id="join",
        depends_on=[b.id for b in branches],
        request=RequestSpec(url=f"{target}/join"),
    )
    return Plan(id=plan_id, actions=[*branches, join])


def chain(plan_id: str, length: int, target: str) -> Plan:
    actions = [Action(id="s0", request=RequestSpec(url=f"{target}/step/0"))]
    for i in range(1, length):
        actions.append(
            Action(
                id=f"s{i}", depends_on=[f"s{i - 1}"], request=RequestSpec(url=f"{target}/step/{i}")
            )
        )
    return Plan(id=plan_id, actions=actions)


async def run_plan(nc: NatsClient, log: EventLog, plan: Plan, execution_id: str) -> float:
    finished = asyncio.Event()
    outcome: list[str] = []

    async def on_terminal(msg: object) -> None:
        outcome.append(msg.subject)  # type: ignore[attr-defined]
        finished.set()

    sub = await nc.subscribe(f"execution.*.{execution_id}", cb=on_terminal)
    started = time.perf_counter()
    await log.append(PlanSubmitted(execution_id=execution_id, plan=plan))
    await asyncio.wait_for(finished.wait(), 120)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    if not outcome[0].startswith("execution.completed"):
        raise RuntimeError(f"{execution_id} ended with {outcome[0]}")
    return elapsed


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def step_overheads(log: EventLog, execution_id: str) -> list[float]:
    completed_at: dict[str, datetime] = {}
    requested_at: dict[str, datetime] = {}
    for record in await log.read_execution(execution_id):
        event = record.event
        if isinstance(event, ActionCompleted):
            completed_at[event.action_id] = _ts(event.occurred_at)
        elif isinstance(event, ActionExecuteRequested):
            requested_at[event.action_id] = _ts(event.occurred_at)
    overheads = []
    for action_id, requested in requested_at.items():
        index = int(action_id[1:])
        previous = completed_at.get(f"s{index - 1}")
        if previous is not None:
            overheads.append((requested - previous).total_seconds() * 1000)
    return overheads


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    http_port = find_free_port()
    target_process = multiprocessing.Process(target=serve_target, args=(http_port,), daemon=True)
    target_process.start()
    target = f"http://127.0.0.1:{http_port}"
    with EmbeddedServer() as server:
        settings = TepSettings(nats_url=server.url)
        nc = await connect(server.url)
        await ensure_log(nc.jetstream(), settings)
        roles = [
            start_role("orchestrator", server.url),
            start_role("executor", server.url, "--concurrency", "64"),
        ]
        log = EventLog(nc, settings)
        try:
            await run_plan(nc, log, chain("warmup", 3, target), "warmup")  # roles are up
            fan = [
                await run_plan(nc, log, fan_out("fan", args.fanout, target), f"fan{i}")
                for i in range(3)
            ]
            chains = [
                await run_plan(nc, log, chain("chain", args.chain, target), f"chain{i}")
                for i in range(3)
            ]
            big = await run_plan(nc, log, fan_out("big", args.big_fanout, target), "big")
            overheads: list[float] = []
            for i in range(3):
                overheads += await step_overheads(log, f"chain{i}")
        finally:
            for process in roles:
                os.killpg(process.pid, signal.SIGTERM)
            for process in roles:
                process.wait(10)
            await nc.close()
            target_process.terminate()
    print(
        f"{args.fanout}-action fan-out + join: best {min(fan) * 1000:.0f} ms, "
        f"median {statistics.median(fan) * 1000:.0f} ms"
    )
    print(
        f"{args.chain}-step chain:            best {min(chains) * 1000:.0f} ms, "
        f"median {statistics.median(chains) * 1000:.0f} ms"
    )
    print(
        f"{args.big_fanout}-action fan-out:        {big:.2f} s = "
        f"{(args.big_fanout + 1) / big:,.0f} actions/s"
    )
    print(
        f"chain per-step overhead (completed -> next requested): "
        f"p50 {percentile(overheads, 0.5):.2f} ms, p99 {percentile(overheads, 0.99):.2f} ms "
        f"({len(overheads)} steps)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--chain", type=int, default=20)
    parser.add_argument("--big-fanout", type=int, default=1000)
    asyncio.run(main(parser.parse_args()))
