"""The HTTP API under load on a real `tep up`: reads and live streams by many clients at once,
next to the StateManager calls they stand on, in the same run.

    .venv/bin/python bench/bench_api.py [--clients 200] [--seconds 5] [--steps 5]

Starts `tep up` (embedded nats-server with auth, orchestrator, executor, projector, demo
target and `tep api`, whose URL and token it reads from the banner) in a scratch directory,
runs ``--executions`` one-call executions to completion, then measures:

- reads: ``--clients`` clients at once, each reading the state of a random one of those
  executions again and again for ``--seconds``: ``GET /v1/executions/{id}`` over HTTP (aiohttp,
  a connection per client) and then, as the baseline, ``StateManager.get_execution_state``
  called directly (what the route calls): requests/s, p50, p99, and their ratios;
- streams: ``--clients`` Server-Sent Event streams (``GET /v1/executions/{id}/stream
  ?until_end=true``) of one execution parked on a waitpoint, which is then resumed into
  ``--steps`` HTTP calls: the time from opening a stream to its first event, and the delay of
  every later state from the moment the log stored its event to its arrival at each client
  (p50/p99/max); as the baseline, ``--clients`` ``StateManager.watch`` iterators on an
  identical execution;
- the CPU seconds `tep api`, the projector and nats-server used in each phase.

The load comes from this one Python process, on the same machine as the stack: its own cost
is in every figure (the direct baseline pays it too, minus HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from bench_sleep import percentile, until_true
from tep_stack import (
    RssSampler,
    Stack,
    bench_parser,
    connected_stack,
    load_average,
    run_bench,
)

from eventstore.jetstream.log import EventLog
from projections.state_manager import StateManager

WAITPOINT = "go"
_LABELS = ("api", "projector", "nats-server")


# ------------------------------------------------------------------ plans


def call_plan(target: str) -> dict[str, Any]:
    """One GET of the demo target: the executions the reads pick from."""
    url = f"{target}/users/1"
    return {"id": "bench-api-read", "actions": [{"id": "fetch", "request": {"url": url}}]}


def stream_plan(target: str, steps: int) -> dict[str, Any]:
    """A waitpoint, then ``steps`` calls one after the other: states to stream."""
    actions: list[dict[str, Any]] = [{"id": WAITPOINT, "type": "wait"}]
    for n in range(1, steps + 1):
        actions.append(
            {
                "id": f"call{n}",
                "depends_on": [actions[-1]["id"]],
                "request": {"url": f"{target}/users/{n}", "timeout_s": 10},
            }
        )
    return {"id": "bench-api-stream", "actions": actions}


# ------------------------------------------------------------------ reads


@dataclass
class Load:
    """What ``clients`` readers did in a phase."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


async def read_load(
    read: Callable[[str], Awaitable[bool]], ids: list[str], clients: int, seconds: float
) -> Load:
    """``clients`` loops calling ``read`` (true: a good answer) on random ids for ``seconds``."""
    load = Load()
    began = time.perf_counter()
    stop = began + seconds

    async def client(seed: int) -> None:
        choose = random.Random(seed).choice
        while time.perf_counter() < stop:
            start = time.perf_counter()
            ok = await read(choose(ids))
            load.latencies.append(time.perf_counter() - start)
            load.errors += not ok

    await asyncio.gather(*(client(n) for n in range(clients)))
    load.elapsed = time.perf_counter() - began
    return load


def http_reader(session: aiohttp.ClientSession) -> Callable[[str], Awaitable[bool]]:
    async def read(execution_id: str) -> bool:
        async with session.get(f"/v1/executions/{execution_id}") as response:
            await response.read()
            return response.status == 200

    return read


def direct_reader(sm: StateManager) -> Callable[[str], Awaitable[bool]]:
    async def read(execution_id: str) -> bool:
        return await sm.get_execution_state(execution_id) is not None

    return read


# ------------------------------------------------------------------ streams


@dataclass
class Follower:
    """One client's stream: when it opened, when each state arrived (by stream sequence)."""

    opened: float = 0.0
    first: float | None = None
    arrivals: dict[int, int] = field(default_factory=dict)
    """sequence -> wall-clock ns of arrival."""

    def seen(self, sequence: int) -> None:
        self.arrivals[sequence] = time.time_ns()
        if self.first is None:
            self.first = time.perf_counter()


Follow = Callable[[str, Follower], Awaitable[None]]


def sse_follower(session: aiohttp.ClientSession) -> Follow:
    async def follow(execution_id: str, follower: Follower) -> None:
        url = f"/v1/executions/{execution_id}/stream"
        follower.opened = time.perf_counter()
        async with session.get(url, params={"until_end": "true"}) as response:
            response.raise_for_status()
            event, last_id = "message", None
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("id:"):
                    last_id = line.partition(":")[2].strip()
                elif not line:
                    if event == "state" and last_id is not None:
                        follower.seen(int(last_id))
                    elif event == "end":
                        return
                    event, last_id = "message", None

    return follow


def watch_follower(sm: StateManager) -> Follow:
    async def follow(execution_id: str, follower: Follower) -> None:
        follower.opened = time.perf_counter()
        async for state in sm.watch(execution_id, until_end=True):
            follower.seen(state.last_sequence)

    return follow


@dataclass
class StreamRound:
    followers: list[Follower]
    delays_ms: list[float]
    expected: int
    missed: int


async def stream_round(
    sm: StateManager, log: EventLog, plan: dict[str, Any], follow: Follow, clients: int
) -> StreamRound:
    """Park an execution on its waitpoint, open ``clients`` followers, resume it, and time
    every state after the waitpoint's from its event's storing to each follower."""
    execution_id = (await sm.initialize_state(plan)).execution_id

    parked_at = 0

    async def parked() -> bool:
        nonlocal parked_at
        state = await sm.get_execution_state(execution_id)
        if state is None or state.actions[WAITPOINT].status != "waiting":
            return False
        parked_at = state.last_sequence
        return True

    await until_true(parked, 30, "the waitpoint waiting")
    followers = [Follower() for _ in range(clients)]
    tasks = [asyncio.create_task(follow(execution_id, f)) for f in followers]

    async def all_following() -> bool:
        for task in tasks:
            if task.done() and (error := task.exception()) is not None:
                raise error
        return all(f.first is not None for f in followers)

    await until_true(all_following, 60, "every stream's first event")
    await sm.complete_waitpoint(execution_id, WAITPOINT, {"go": True}, wait=False)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    wanted = {r.sequence for r in await sm.history(execution_id) if r.sequence > parked_at}
    stored = await stored_ns(log, wanted)
    delays = [
        (arrived - stored[sequence]) / 1e6
        for f in followers
        for sequence, arrived in f.arrivals.items()
        if sequence in stored
    ]
    missed = sum(len(wanted - set(f.arrivals)) for f in followers)
    return StreamRound(followers, delays, len(wanted), missed)


async def stored_ns(log: EventLog, sequences: set[int]) -> dict[int, int]:
    """When the log stored each of ``sequences`` (the server's clock, ns since the epoch)."""
    found: dict[int, int] = {}
    async for raw in log.replay_raw(min(sequences), to_sequence=max(sequences)):
        if raw.sequence in sequences:
            found[raw.sequence] = raw.stored_ns
    return found


# ------------------------------------------------------------------ report


def read_row(name: str, load: Load) -> str:
    ms = [v * 1000 for v in load.latencies]
    return (
        f"{name:<36}{len(ms):>9,}{load.rate:>11,.0f}{percentile(ms, 0.5):>9.2f}"
        f"{percentile(ms, 0.99):>9.2f}{load.errors:>8}"
    )


def stream_row(name: str, result: StreamRound) -> str:
    first = [(f.first - f.opened) * 1000 for f in result.followers if f.first is not None]
    delays = result.delays_ms
    return (
        f"{name:<22}{percentile(first, 0.5):>9.1f}{percentile(first, 0.99):>9.1f}"
        f"{percentile(delays, 0.5):>10.1f}{percentile(delays, 0.99):>9.1f}{max(delays):>9.1f}"
        f"{len(delays):>9,}{result.missed:>8}"
    )


def cpu_line(sampler: RssSampler, phases: list[str]) -> list[str]:
    lines = [f"{'CPU s':<16}" + "".join(f"{phase:>16}" for phase in phases[1:])]
    for label in _LABELS:
        row = f"{label:<16}"
        for before, phase in itertools.pairwise(phases):
            used = sampler.cpu(before, phase, label)
            row += f"{used:>16.1f}" if used is not None else f"{'-':>16}"
        lines.append(row)
    return lines


# ------------------------------------------------------------------ the run


async def wait_healthy(url: str) -> None:
    async with aiohttp.ClientSession() as session:

        async def healthy() -> bool:
            try:
                async with session.get(f"{url}/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await until_true(healthy, 30, "tep api's /healthz")


async def main(args: argparse.Namespace) -> None:
    async with connected_stack("bench-api") as running:
        stack = running.stack
        if not stack.api_url:
            raise SystemExit(f"no api line in tep up's banner:\n{stack.stdout.read_text()}")
        await wait_healthy(stack.api_url)
        log = EventLog(running.admin, running.settings)
        await report(args, stack, running.sm, log, running.target)


async def report(
    args: argparse.Namespace, stack: Stack, sm: StateManager, log: EventLog, target: str
) -> None:
    clients, seconds = args.clients, args.seconds
    plan = call_plan(target)
    ids = [(await sm.initialize_state(plan)).execution_id for _ in range(args.executions)]
    await asyncio.gather(*(sm.wait_for_completion(i, timeout=120) for i in ids))

    sampler = RssSampler(stack)
    sampling = asyncio.create_task(sampler.run())
    await asyncio.sleep(1)
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(
        stack.api_url, headers=headers, connector=connector, timeout=timeout
    ) as session:
        await read_load(http_reader(session), ids, clients, min(seconds, 1))  # warm-up
        sampler.phase = "GET over HTTP"
        http = await read_load(http_reader(session), ids, clients, seconds)
        await asyncio.sleep(0.5)
        sampler.phase = "direct reads"
        direct = await read_load(direct_reader(sm), ids, clients, seconds)
        await asyncio.sleep(0.5)
        sampler.phase = "SSE streams"
        streamed = await stream_round(
            sm, log, stream_plan(target, args.steps), sse_follower(session), clients
        )
        await asyncio.sleep(0.5)
        sampler.phase = "direct watches"
        watched = await stream_round(
            sm, log, stream_plan(target, args.steps), watch_follower(sm), clients
        )
        await asyncio.sleep(0.5)
    sampling.cancel()

    print(
        f"tep api at {stack.api_url}: {clients} clients at once, reads for {seconds:g} s each, "
        f"over {len(ids)} completed executions"
    )
    print(f"\n{'reads':<36}{'n':>9}{'per s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    print(read_row("GET /v1/executions/{id} (HTTP)", http))
    print(read_row("StateManager.get_execution_state", direct))
    p99_http = percentile(http.latencies, 0.99)
    p99_direct = percentile(direct.latencies, 0.99)
    print(
        f"HTTP / direct: {http.rate / max(direct.rate, 1e-9):.2f}x the rate, "
        f"{p99_http / max(p99_direct, 1e-9):.2f}x the p99"
    )
    print(
        f"\nstreams of one execution: {clients} followers, a waitpoint resumed into "
        f"{args.steps} calls ({streamed.expected} states after it)"
    )
    print(f"{'':<22}{'first event ms':>18}{'stored -> arrived ms':>28}{'states':>9}{'missed':>8}")
    print(f"{'':<22}{'p50':>9}{'p99':>9}{'p50':>10}{'p99':>9}{'max':>9}")
    print(stream_row("SSE (HTTP)", streamed))
    print(stream_row("StateManager.watch", watched))
    d99_sse, d99_watch = percentile(streamed.delays_ms, 0.99), percentile(watched.delays_ms, 0.99)
    print(f"SSE / direct: {d99_sse / max(d99_watch, 1e-9):.2f}x the delivery p99")
    print()
    for line in cpu_line(
        sampler, ["idle", "GET over HTTP", "direct reads", "SSE streams", "direct watches"]
    ):
        print(line)
    print(load_average())


if __name__ == "__main__":
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--clients", type=int, default=200, help="clients at once (default %(default)s)"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="each read phase, s (default %(default)s)"
    )
    parser.add_argument(
        "--executions",
        type=int,
        default=50,
        help="completed executions the reads pick from (default %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=5,
        help="calls after the streamed execution's waitpoint (default %(default)s)",
    )
    run_bench(main(parser.parse_args()))
