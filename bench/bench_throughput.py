"""Throughput through `tep up`: many executions at once, and a steady arrival rate.

    .venv/bin/python bench/bench_throughput.py [--shape burst|steady|both] [--executions 2000]
        [--rate 200] [--duration 10] [--executors 1] [--orchestrators 1] [--dag]
        [--profile DIR] [--no-floor]

Starts `tep up` with its defaults in a scratch directory (embedded nats-server, ``--orchestrators``
orchestrators, ``--executors`` executors at their default concurrency, projector, API) and a
loopback HTTP target in a process of its own (aiohttp, one handler answering a small JSON body),
so that neither the target nor this process's own work caps the stack. Plans are 5-step chains
(``--dag``: s0 -> s1, s2, s3 -> s4), submitted with ``StateManager.submit``; an execution has
ended when the view's counters say so (``StateManager.get_stats``).

- burst: ``--executions`` executions submitted together (at most 256 submits in flight); wall
  time from the first submit to the last execution's end being visible in the view; actions/s
  (completed actions / wall time) and executions/s.
- steady: ``--rate`` executions/s for ``--duration`` s; the completion rate over the arrival
  window, submit -> visible end per execution (p50/p99, first and last quarter of the arrivals),
  the backlog when arrivals stop and how long it took to drain.
- for both: projection lag p50/p99 (see ``throughput_measure``), RSS of every process of the
  stack at the start, peak and end of the measured phases (after a warm-up), CPU seconds per
  process, and completed actions per orchestrator CPU-second.
- baseline, in the same run: as many HTTP calls as the burst's actions made directly with
  aiohttp to the same target at the executors' total concurrency, and the ratio; and after the
  burst, unless ``--no-floor``, the raw nats-py floor (``throughput_floor``): the same messages
  for as many 5-step chains, with no Python work in the roles, on a server of its own.

``--profile DIR`` records every role with py-spy during the burst (collapsed stacks in DIR, and
the functions with the largest share of each role's samples printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from tep_stack import Connected, RssSampler, bench_parser, connected_stack, load_average, run_bench
from throughput_floor import FloorResult, raw_floor
from throughput_measure import (
    ApiCalls,
    CheckpointWatch,
    Contention,
    PhaseLog,
    lag_line,
    orchestrator_cpu,
    percentile,
    read_phase,
    redeliveries,
    redelivery_line,
    role_table,
    settle,
    warnings_summary,
)
from throughput_profile import Profiler, py_spy

from eventstore.jetstream.log import EventLog
from eventstore.state import TERMINAL_EXECUTION_STATUSES
from executor.config import DEFAULT_CONCURRENCY
from projections.buckets import ensure_current_view
from tep.server import find_free_port

ACTIONS_TARGET = 2000.0
LAG_P99_TARGET_MS = 250.0
SUBMITS_IN_FLIGHT = 256
STEPS = 5
T = TypeVar("T")


def serve_target(port: int) -> None:
    """The loopback target: every path answers a small JSON body."""

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def plan(target: str, dag: bool) -> dict[str, Any]:
    def step(i: int, after: list[int]) -> dict[str, Any]:
        request = {"method": "GET", "url": f"{target}/step/{i}", "timeout_s": 30}
        return {"id": f"s{i}", "depends_on": [f"s{a}" for a in after], "request": request}

    if dag:
        shape = [step(0, []), step(1, [0]), step(2, [0]), step(3, [0]), step(4, [1, 2, 3])]
    else:
        shape = [step(i, [i - 1] if i else []) for i in range(STEPS)]
    return {"id": "throughput-dag" if dag else "throughput-chain", "actions": shape}


async def direct_calls(target: str, calls: int, concurrency: int) -> float:
    """``calls`` GETs at ``concurrency`` over one kept-alive session: calls per second."""
    remaining = iter(range(calls))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for i in remaining:
                async with session.get(f"{target}/step/{i % STEPS}") as response:
                    await response.read()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return calls / (time.perf_counter() - began)


async def ended(c: Connected) -> int:
    stats = await patiently(c.sm.get_stats)
    return sum(stats.executions.get(s, 0) for s in TERMINAL_EXECUTION_STATUSES)


async def wait_ended(c: Connected, count: int, timeout: float) -> bool:
    """Whether ``count`` executions have ended (in the view's counters) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while await ended(c) < count:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def patiently(ask: Callable[[], Awaitable[T]], attempts: int = 10) -> T:
    """``ask()``, asked again while an overloaded server does not answer in time."""
    for _ in range(attempts - 1):
        try:
            return await ask()
        except TimeoutError:
            await asyncio.sleep(1.0)
    return await ask()


@dataclass
class Run:
    """One phase: when it began (ns), what the log says, and each execution's submit time."""

    began_ns: int
    arrivals_end_ns: int
    log: PhaseLog
    submitted_ns: dict[str, int]

    @property
    def last_end_ns(self) -> int:
        """When the last execution's end became visible (now if none ended)."""
        return max((visible for _, _, visible in self.log.ended.values()), default=time.time_ns())

    def wall_s(self) -> float:
        return (self.last_end_ns - self.began_ns) / 1e9


async def run_phase(
    c: Connected,
    watch: CheckpointWatch,
    ids: list[str],
    submit_all: Callable[[list[str], dict[str, int]], Awaitable[None]],
    drain_timeout: float,
) -> Run:
    """Submit ``ids``, wait until they ended (at most ``drain_timeout`` after the last submit;
    then the run is cut short: the ones still running are counted as such), read the log."""
    log = EventLog(c.admin, c.settings)
    before = await ended(c)
    first = await patiently(log.last_sequence) + 1
    submitted: dict[str, int] = {}
    began = time.time_ns()
    await submit_all(ids, submitted)
    arrivals_end = time.time_ns()
    await wait_ended(c, before + len(ids), drain_timeout)
    await settle(0.5)  # the watch has seen the last checkpoint
    phase = await read_phase(log, first, await patiently(log.last_sequence), watch, set(ids))
    if phase.statuses().get("execution.completed", 0) != len(phase.ended):
        raise SystemExit(f"not every execution completed: {phase.statuses()}")
    return Run(began, arrivals_end, phase, submitted)


def burst_submitter(c: Connected, document: dict[str, Any]) -> Callable[..., Awaitable[None]]:
    async def submit_all(ids: list[str], submitted: dict[str, int]) -> None:
        gate = asyncio.Semaphore(SUBMITS_IN_FLIGHT)

        async def one(execution_id: str) -> None:
            async with gate:
                submitted[execution_id] = time.time_ns()
                await c.sm.submit(document, execution_id=execution_id)

        await asyncio.gather(*(one(e) for e in ids))

    return submit_all


def steady_submitter(
    c: Connected, document: dict[str, Any], rate: float, timed_out: list[str]
) -> Callable[..., Awaitable[None]]:
    """Submits at ``rate``; a submit the server did not acknowledge in time is noted in
    ``timed_out`` (the plan may still have been stored) and the arrivals go on."""

    async def one(execution_id: str) -> None:
        try:
            await c.sm.submit(document, execution_id=execution_id)
        except TimeoutError:
            timed_out.append(execution_id)

    async def submit_all(ids: list[str], submitted: dict[str, int]) -> None:
        start = time.monotonic()
        tasks = []
        for i, execution_id in enumerate(ids):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            submitted[execution_id] = time.time_ns()
            tasks.append(asyncio.create_task(one(execution_id)))
        await asyncio.gather(*tasks)

    return submit_all


def burst_lines(run: Run, direct: float, cpu: float) -> list[str]:
    wall = run.wall_s()
    actions = run.log.actions_completed
    rate = actions / wall
    log_end = max((stored for _, stored, _ in run.log.ended.values()), default=run.last_end_ns)
    verdict = "ok" if rate >= ACTIONS_TARGET else "MISSED"
    unfinished = len(run.submitted_ns) - len(run.log.ended)
    cut = f" ({unfinished} never ended: cut short)" if unfinished else ""
    return [
        f"burst: {len(run.log.ended)} executions{cut}, {actions} actions, submitted in "
        f"{(run.arrivals_end_ns - run.began_ns) / 1e9:.2f} s, all ended (view) after {wall:.2f} s "
        f"(log: {(log_end - run.began_ns) / 1e9:.2f} s)",
        f"  {rate:,.0f} actions/s [target >= {ACTIONS_TARGET:,.0f}: {verdict}], "
        f"{len(run.log.ended) / wall:,.1f} executions/s; direct aiohttp {direct:,.0f} calls/s; "
        f"ratio tep/direct {rate / direct:.2f}",
        f"  {actions / cpu:,.0f} actions per orchestrator CPU-second ({cpu:.2f} CPU s)"
        if cpu
        else "  orchestrator CPU not sampled",
        f"  {lag_line(run.log, LAG_P99_TARGET_MS)}",
    ]


def steady_lines(run: Run, rate: float, cpu: float) -> list[str]:
    window = (run.arrivals_end_ns - run.began_ns) / 1e9
    latencies = sorted(
        (run.submitted_ns[e], (visible - run.submitted_ns[e]) / 1e6)
        for e, (_, _, visible) in run.log.ended.items()
    )
    quarter = max(1, len(latencies) // 4)
    first = [ms for _, ms in latencies[:quarter]]
    last = [ms for _, ms in latencies[-quarter:]]
    all_ms = [ms for _, ms in latencies]
    submitted = len(run.submitted_ns)
    by_end = sum(1 for _, _, v in run.log.ended.values() if v <= run.arrivals_end_ns)
    during = sum(1 for t in run.log.completed_ns if t <= run.arrivals_end_ns)
    after = len(run.log.completed_ns) - during
    drain = (run.last_end_ns - run.arrivals_end_ns) / 1e9
    unfinished = submitted - len(run.log.ended)
    drained = (
        f"drained {drain:.2f} s later"
        if not unfinished
        else f"{unfinished} still running {drain:.0f} s later (cut short)"
    )
    return [
        f"steady: {submitted} executions at {rate:g}/s offered "
        f"({submitted / window:.1f}/s achieved over {window:.1f} s), {len(run.log.ended)} ended",
        f"  {during / window:,.0f} actions/s completed during the arrivals (offered "
        f"{rate * STEPS:,.0f}), {after / max(drain, 1e-9):,.0f} actions/s after them; "
        f"{submitted - by_end} executions still running when arrivals stopped, {drained}",
        f"  submit -> visible end: p50 {percentile(all_ms, 0.5):.0f} ms, "
        f"p99 {percentile(all_ms, 0.99):.0f} ms; first quarter p50 "
        f"{percentile(first, 0.5):.0f} ms, last quarter p50 {percentile(last, 0.5):.0f} ms",
        f"  {run.log.actions_completed / cpu:,.0f} actions per orchestrator CPU-second "
        f"({cpu:.2f} CPU s)"
        if cpu
        else "  orchestrator CPU not sampled",
        f"  {lag_line(run.log, LAG_P99_TARGET_MS)}",
    ]


async def main(args: argparse.Namespace) -> None:
    port = find_free_port()
    server = multiprocessing.Process(target=serve_target, args=(port,), daemon=True)
    server.start()
    target = f"http://127.0.0.1:{port}"
    up_args = ["--orchestrators", str(args.orchestrators)]
    document = plan(target, args.dag)
    concurrency = args.executors * int(
        os.environ.get("TEP_EXECUTOR_CONCURRENCY", DEFAULT_CONCURRENCY)
    )
    shapes = ["burst", "steady"] if args.shape == "both" else [args.shape]
    try:
        async with (
            connected_stack("bench-throughput", executors=args.executors, up_args=up_args) as c,
            contextlib.AsyncExitStack() as stack_stops,
        ):
            up_err = c.stack.stdout.parent / "up.err"
            if args.keep_log:
                stack_stops.callback(shutil.copyfile, up_err, args.keep_log)
            sampler = RssSampler(c.stack)
            _, _, kv = await ensure_current_view(c.admin.jetstream(), c.settings)
            watch = CheckpointWatch(kv)
            tasks = [asyncio.create_task(sampler.run()), asyncio.create_task(watch.run())]
            api_calls = ApiCalls()
            await api_calls.start(c.admin)
            sampler.phase = "direct"
            direct = await direct_calls(target, args.executions * STEPS, concurrency)
            sampler.phase = "warm-up"
            warm = [f"warm-{i}" for i in range(100)]
            await run_phase(c, watch, warm, burst_submitter(c, document), 120)
            await settle(1.0)
            lines = [
                f"tep up --executors {args.executors} --orchestrators {args.orchestrators}; "
                f"{'diamond DAG' if args.dag else 'chain'} of {STEPS} steps; target: aiohttp "
                f"in its own process; direct baseline at concurrency {concurrency}"
            ]
            before = "warm-up"
            for shape in shapes:
                sampler.phase = shape
                contention = Contention(c.stack)
                contention.start()
                calls_before = Counter(api_calls.counts)
                redelivered = await patiently(lambda: redeliveries(c.admin))
                ids = [f"{shape}-{i}" for i in range(args.executions)]
                if shape == "burst":
                    profiler = Profiler(c.stack, args.profile) if args.profile else None
                    if profiler:
                        profiler.start()
                    submitter = burst_submitter(c, document)
                    run = await run_phase(c, watch, ids, submitter, args.drain_timeout)
                    if profiler:
                        lines += profiler.stop()
                    await settle(0.6)
                    lines += burst_lines(run, direct, orchestrator_cpu(sampler, before, shape))
                    burst = run
                    burst_server_cpu = sampler.cpu(before, shape, "nats-server")
                else:
                    ids = [f"steady-{i}" for i in range(int(args.rate * args.duration))]
                    timed_out: list[str] = []
                    submitter = steady_submitter(c, document, args.rate, timed_out)
                    run = await run_phase(c, watch, ids, submitter, args.drain_timeout)
                    await settle(0.6)
                    lines += steady_lines(run, args.rate, orchestrator_cpu(sampler, before, shape))
                    if timed_out:
                        lines.append(f"  {len(timed_out)} submits not acknowledged in time")
                lines += contention.lines(run.log.actions_completed)
                lines.append(api_calls.line(calls_before, len(ids)))
                now = await patiently(lambda: redeliveries(c.admin))
                lines.append(redelivery_line(redelivered, now))
                lines.append(orchestrator_counters(c.stack.health("orchestrator")))
                lines = emit(lines)
                before = shape
                if shape == "burst" and not args.no_floor:
                    sampler.phase = before = "floor"  # the next phase's CPU counts from its end
                    floor = await raw_floor(args.executions, executors_concurrency=concurrency)
                    lines = emit([floor_line(floor, burst, burst_server_cpu, args.dag)])
            sampler.phase = "after"
            await asyncio.sleep(3)
            lines.append("RSS (MB) from the end of the warm-up to 3 s after the last phase:")
            lines += role_table(sampler, [*shapes, "after"], "warm-up")
            lines += warnings_summary(up_err.read_text(errors="replace"))
            lines = emit(lines)
            for task in tasks:
                task.cancel()
    finally:
        server.terminate()
    print(load_average())


def floor_line(floor: FloorResult, run: Run, server_cpu: float | None, dag: bool) -> str:
    """The burst against the raw nats-py floor of the same messages (a chain's)."""
    rate = run.log.actions_completed / run.wall_s()
    tep = f"{1000 * server_cpu / run.log.actions_completed:.3f}" if server_cpu else "-"
    return (
        f"  raw nats-py floor (same messages, no Python work, no HTTP"
        f"{'; a chain' if dag else ''}): {floor.actions_per_s:,.0f} actions/s; tep burst = "
        f"{rate / floor.actions_per_s:.2f} x floor; nats-server "
        f"{floor.cpu_ms_per_action['nats-server']:.3f} ms/action in the floor vs {tep} in tep"
    )


_COUNTERS = (
    "processed",
    "appended",
    "conflicts",
    "retried",
    "dead_lettered",
    "reloads_uncached",
    "reloads_late",
    "reloads_unseen",
    "source_step_downs",
)


def orchestrator_counters(health: dict[str, Any]) -> str:
    """The first orchestrator's counters so far (since it started): why states were folded
    again from the log, among the rest."""
    return "  orchestrator counters so far: " + ", ".join(
        f"{key} {health.get(key, 0)}" for key in _COUNTERS
    )


def emit(lines: list[str]) -> list[str]:
    """Print ``lines`` now (a later phase may not finish) and start a new list."""
    print("\n".join(lines), flush=True)
    return []


def parse_args() -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--shape", choices=["burst", "steady", "both"], default="both")
    parser.add_argument("--executions", type=int, default=2000, help="the burst's executions")
    parser.add_argument("--rate", type=float, default=200.0, help="steady executions/s")
    parser.add_argument("--duration", type=float, default=10.0, help="steady seconds")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="how long to wait for the executions after the last submit (default 300 s); "
        "the ones still running then are reported as such",
    )
    parser.add_argument("--executors", type=int, default=1)
    parser.add_argument("--orchestrators", type=int, default=1)
    parser.add_argument("--dag", action="store_true", help="a diamond instead of a chain")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy every role")
    parser.add_argument("--keep-log", type=Path, metavar="FILE", help="copy tep up's stderr")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the raw nats-py floor after the burst"
    )
    args = parser.parse_args()
    if args.profile is not None:
        py_spy()  # missing: one line now, not after the stack has started
    return args


if __name__ == "__main__":
    run_bench(main(parse_args()))
