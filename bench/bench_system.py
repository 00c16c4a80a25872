"""The whole system as a user runs it: `tep up` with its defaults, next to direct HTTP calls.

    .venv/bin/python bench/bench_system.py [--quick] [--runs 10] [--chain 20] [--fanout 100]
                                           [--big-fanout 1000] [--profile DIR]

Starts `tep up` in a scratch directory (embedded nats-server, orchestrator, one executor at its
default concurrency, projector, demo target on loopback) and measures, in the same run:

- a ``--chain``-step chain and a ``--fanout``-action fan-out + join, each submitted with
  ``StateManager.submit`` and awaited with ``StateManager.wait_for_completion`` (the projector's
  view, as an application waits), ``--runs`` times each: best and median wall time;
- the same through ``tep submit --wait`` as a process (and ``tep submit`` without ``--wait``,
  the cost of starting the CLI and submitting);
- the same HTTP calls made directly with aiohttp, one session kept alive: sequential for the
  chain, concurrent for the fan-out (then the join);
- the ratios to those and the targets (chain <= 2.5x the direct calls + 40 ms; fan-out + join
  <= 60 ms; per-step overhead p50 <= 1 ms, p99 <= 3 ms);
- where a chain step's time goes, hop by hop, from the events' own times (``occurred_at``,
  when a role built the event) and the log's (when the server stored it);
- unless ``--quick`` (or ``--big-fanout 0``): a ``--big-fanout``-action fan-out in actions/s.

The hops of a step, from the events' times: (1) the request stored -> the executor built its
``action.started`` (pull, decode, claim prepared); (2) that claim's append; (3) the HTTP call
(``duration_ms``); (4) the rest of the executor's work between claim and outcome; (5) the
outcome's append; (7) the outcome stored -> the orchestrator built the next request (pull,
fold, decide); (8) its append. Then the end: (9) the last outcome -> ``execution.completed``
stored, (10) -> the view's write of the execution (the KV message's time, which the server
gives it while the atomic batch is being stored: part of the batch's sync falls in (11)),
(11) -> ``wait_for_completion`` returned.

Each fan-out run also reports the CPU time every role used (``/proc``, 10 ms ticks).

``--profile DIR`` runs ``py-spy record -f raw`` (the venv's) on every role during the timed
runs and leaves one file of collapsed stacks per role in DIR, for a flame graph tool; sampling
pauses the process it samples, a little.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from tep_stack import (
    Connected,
    bench_parser,
    connected_stack,
    load_average,
    role_cpu_s,
    run_bench,
)
from throughput_profile import py_spy

from eventstore.jetstream.log import EventLog
from eventstore.records import RawRecord
from projections.buckets import bucket_name
from projections.view import exec_key

ROOT = Path(__file__).resolve().parent.parent
CHAIN_FACTOR, CHAIN_SLACK_MS = 2.5, 40.0
FANOUT_TARGET_MS = 60.0
STEP_P50_MS, STEP_P99_MS = 1.0, 3.0


# ------------------------------------------------------------------ plans


def chain(target: str, length: int) -> dict[str, Any]:
    """``length`` calls, each depending on the one before."""
    actions: list[dict[str, Any]] = [{"id": "s0", "request": {"url": f"{target}/health"}}]
    for i in range(1, length):
        actions.append(
            {"id": f"s{i}", "depends_on": [f"s{i - 1}"], "request": {"url": f"{target}/health"}}
        )
    return {"id": "bench-chain", "actions": actions}


def fan_out(target: str, width: int) -> dict[str, Any]:
    """``width`` independent calls, then one that depends on all of them."""
    branches = [{"id": f"b{i}", "request": {"url": f"{target}/health"}} for i in range(width)]
    join = {
        "id": "join",
        "depends_on": [b["id"] for b in branches],
        "request": {"url": f"{target}/health"},
    }
    return {"id": "bench-fanout", "actions": [*branches, join]}


# ------------------------------------------------------------------ direct baseline


async def direct_chain(session: aiohttp.ClientSession, target: str, length: int) -> float:
    began = time.perf_counter()
    for _ in range(length):
        async with session.get(f"{target}/health") as response:
            await response.read()
    return time.perf_counter() - began


async def direct_fan_out(session: aiohttp.ClientSession, target: str, width: int) -> float:
    async def one() -> None:
        async with session.get(f"{target}/health") as response:
            await response.read()

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(width)))
    await one()
    return time.perf_counter() - began


# ------------------------------------------------------------------ through tep


async def through_state_manager(c: Connected, plan: dict[str, Any]) -> tuple[float, str, float]:
    """Submit, wait for the end in the view: (seconds, execution id, wall clock at return)."""
    began = time.perf_counter()
    submission = await c.sm.submit(plan)
    execution_id = submission.state.execution_id
    state = await c.sm.wait_for_completion(execution_id, timeout=120)
    elapsed = time.perf_counter() - began
    if state.status != "completed":
        raise SystemExit(f"{execution_id} ended {state.status}")
    return elapsed, execution_id, time.time()


def through_cli(c: Connected, plan_file: Path, wait: bool) -> float:
    command = [sys.executable, "-m", "tep.cli.main", "submit", str(plan_file)]
    command += ["--nats-url", c.stack.nats_url, *(["--wait", "--timeout", "120"] if wait else [])]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"tep submit failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return elapsed


# ------------------------------------------------------------------ where the time goes


def _ns(iso: str) -> int:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1e6) * 1000


async def chain_hops(
    c: Connected, log: EventLog, execution_id: str, returned_at: float
) -> dict[str, list[float]]:
    """Milliseconds of every hop of every step of one chain execution."""
    records: list[RawRecord] = []
    first = None
    for recorded in await log.read_execution(execution_id):
        first = recorded.sequence if first is None else first
    assert first is not None
    async for raw in log.replay_raw(first):
        if execution_id in raw.subject:
            records.append(raw)
        if raw.subject.startswith("execution.completed.") and execution_id in raw.subject:
            break
    by_kind: dict[tuple[str, str], tuple[int, int, dict[str, Any]]] = {}
    for raw in records:
        event = json.loads(raw.data)
        kind = event["type"]
        action = event.get("action_id", "")
        by_kind[(kind, action)] = (_ns(event["occurred_at"]), raw.stored_ns, event)
    hops: dict[str, list[float]] = defaultdict(list)

    def hop(name: str, start_ns: int, end_ns: int) -> None:
        hops[name].append((end_ns - start_ns) / 1e6)

    steps = sorted({a for _, a in by_kind if a.startswith("s")}, key=lambda a: int(a[1:]))
    for index, action in enumerate(steps):
        req_at, req_stored, _ = by_kind[("action.execute.requested", action)]
        start_at, start_stored, _ = by_kind[("action.started", action)]
        done_at, done_stored, done = by_kind[("action.completed", action)]
        if index:
            _, previous_stored, _ = by_kind[("action.completed", steps[index - 1])]
            hop(
                "7 outcome stored -> next request built (orchestrator pull, fold, decide)",
                previous_stored,
                req_at,
            )
            hop("8 next request built -> stored (orchestrator append)", req_at, req_stored)
            hop(
                "= per-step overhead: outcome stored -> next request stored",
                previous_stored,
                req_stored,
            )
        hop(
            "1 request stored -> started built (executor pull, position read)", req_stored, start_at
        )
        hop("2 action.started built -> stored (claim append)", start_at, start_stored)
        call_ns = int(done["duration_ms"] * 1e6)
        hop("3 HTTP call (duration_ms)", 0, call_ns)
        hop("4 started stored -> outcome built, less the call", start_stored + call_ns, done_at)
        hop("5 outcome built -> stored (outcome append)", done_at, done_stored)
        hop("= step: request stored -> outcome stored", req_stored, done_stored)
    _, last_stored, _ = by_kind[("action.completed", steps[-1])]
    _, end_stored, _ = by_kind[("execution.completed", "")]
    hop("9 last outcome stored -> execution.completed stored", last_stored, end_stored)
    bucket = bucket_name(c.sm._view.generation)
    written = await c.admin.jetstream().get_last_msg(
        f"KV_{bucket}", f"$KV.{bucket}.{exec_key(execution_id)}"
    )
    assert written.time is not None
    written_ns = int(written.time.timestamp() * 1e6) * 1000
    hop("10 execution.completed stored -> view write stamped (projector)", end_stored, written_ns)
    hop("11 view write stamped -> wait_for_completion returned", written_ns, int(returned_at * 1e9))
    _, submit_stored, _ = by_kind[("plan.submitted", "")]
    req0_stored = by_kind[("action.execute.requested", steps[0])][1]
    hop("0 plan.submitted stored -> first request stored", submit_stored, req0_stored)
    return hops


# ------------------------------------------------------------------ report


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"best {min(values) * 1000:7.1f}  median {statistics.median(values) * 1000:7.1f} ms"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def timed(runs: int, one: Callable[[], Awaitable[float]]) -> list[float]:
    return [await one() for _ in range(runs)]


class Profiler:
    """``py-spy record`` on every role of the stack, stopped with SIGINT (it then writes)."""

    def __init__(self, c: Connected, directory: Path | None) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        if directory is None:
            return
        spy = py_spy()
        directory.mkdir(parents=True, exist_ok=True)
        for pid, role in c.stack.processes().items():
            if role in ("nats-server", "tep up"):
                continue
            out = directory / f"{role}-{pid}.txt"
            self.processes.append(
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "-p",
                        str(pid),
                        "-o",
                        str(out),
                        "-r",
                        "250",
                        "-f",
                        "raw",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


async def main(args: Any) -> None:
    runs = 3 if args.quick else args.runs
    async with connected_stack("system", executors=1) as c:
        log = EventLog(c.admin, c.settings)
        target = c.target
        chain_plan, fan_plan = chain(target, args.chain), fan_out(target, args.fanout)
        connector = aiohttp.TCPConnector(limit=max(args.fanout, 100))
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(3):  # roles, connections and caches warm
                await through_state_manager(c, chain(target, 3))
                await through_state_manager(c, fan_out(target, 10))
                await direct_fan_out(session, target, args.fanout)
            profiler = Profiler(c, args.profile)
            chains: list[float] = []
            fans: list[float] = []
            direct_seq: list[float] = []
            direct_conc: list[float] = []
            hops: dict[str, list[float]] = defaultdict(list)
            fan_cpu: dict[str, list[float]] = defaultdict(list)
            try:
                for _ in range(runs):  # interleaved, so both see the same machine
                    direct_seq.append(await direct_chain(session, target, args.chain))
                    elapsed, execution_id, returned = await through_state_manager(c, chain_plan)
                    chains.append(elapsed)
                    for name, values in (await chain_hops(c, log, execution_id, returned)).items():
                        hops[name] += values
                    direct_conc.append(await direct_fan_out(session, target, args.fanout))
                    before = role_cpu_s(c.stack)
                    fans.append((await through_state_manager(c, fan_plan))[0])
                    for role, used in role_cpu_s(c.stack).items():
                        fan_cpu[role].append((used - before.get(role, used)) * 1000)
            finally:
                profiler.stop()
        with tempfile.TemporaryDirectory(prefix="tep-system-plans-") as tmp:
            chain_file, fan_file = Path(tmp) / "chain.json", Path(tmp) / "fan.json"
            chain_file.write_text(json.dumps(chain_plan))
            fan_file.write_text(json.dumps(fan_plan))
            cli_runs = max(2, runs // 3)
            cli_chain = [through_cli(c, chain_file, True) for _ in range(cli_runs)]
            cli_fan = [through_cli(c, fan_file, True) for _ in range(cli_runs)]
            cli_submit = [through_cli(c, chain_file, False) for _ in range(cli_runs)]
        big = None
        if not args.quick and args.big_fanout > 0:
            big = (await through_state_manager(c, fan_out(target, args.big_fanout)))[0]

    seq_ms, conc_ms = statistics.median(direct_seq) * 1000, statistics.median(direct_conc) * 1000
    chain_ms, fan_ms = statistics.median(chains) * 1000, statistics.median(fans) * 1000
    chain_limit = CHAIN_FACTOR * seq_ms + CHAIN_SLACK_MS
    overhead = hops["= per-step overhead: outcome stored -> next request stored"]
    p50, p99 = percentile(overhead, 0.5), percentile(overhead, 0.99)
    print(f"tep up (1 executor, defaults), {runs} runs each, medians unless said")
    print(f"{args.chain}-step chain")
    print(f"  direct sequential HTTP        {ms(direct_seq)}")
    print(f"  StateManager submit + wait    {ms(chains)}  = {chain_ms / seq_ms:.1f}x direct")
    print(f"  tep submit --wait (process)   {ms(cli_chain)}")
    print(
        f"  target <= {CHAIN_FACTOR}x direct + {CHAIN_SLACK_MS:.0f} ms = {chain_limit:.1f} ms: "
        f"{verdict(chain_ms <= chain_limit)}"
    )
    print(f"{args.fanout}-action fan-out + join")
    print(f"  direct concurrent HTTP        {ms(direct_conc)}")
    print(f"  StateManager submit + wait    {ms(fans)}  = {fan_ms / conc_ms:.1f}x direct")
    print(f"  tep submit --wait (process)   {ms(cli_fan)}")
    print(f"  target <= {FANOUT_TARGET_MS:.0f} ms: {verdict(fan_ms <= FANOUT_TARGET_MS)}")
    cpu = ", ".join(f"{role} {statistics.median(v):.0f}" for role, v in sorted(fan_cpu.items()))
    print(f"  CPU ms per fan-out run (median; /proc, 10 ms ticks): {cpu}")
    print(f"tep submit without --wait (CLI start + submit): {ms(cli_submit)}")
    print(
        f"per-step overhead (outcome stored -> next request stored): p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms ({len(overhead)} steps); target p50 <= {STEP_P50_MS:g}, "
        f"p99 <= {STEP_P99_MS:g}: {verdict(p50 <= STEP_P50_MS and p99 <= STEP_P99_MS)}"
    )
    print("where a chain's time goes (ms per occurrence: p50, p99, sum per chain)")
    for name in sorted(
        hops, key=lambda n: (n[0] == "=", float(n.split()[0]) if n[0] != "=" else 0)
    ):
        values = hops[name]
        print(
            f"  {name:<76}{percentile(values, 0.5):7.2f}{percentile(values, 0.99):7.2f}"
            f"{sum(values) / runs:8.1f}"
        )
    if big is not None:
        print(
            f"{args.big_fanout}-action fan-out (StateManager): {big:.2f} s = "
            f"{(args.big_fanout + 1) / big:,.0f} actions/s"
        )
    if args.profile:
        print(f"py-spy flame graphs in {args.profile}")
    print(load_average())


if __name__ == "__main__":
    parser = bench_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="3 runs, no big fan-out")
    parser.add_argument("--runs", type=int, default=10, help="runs of each (default %(default)s)")
    parser.add_argument("--chain", type=int, default=20, help="chain length (default %(default)s)")
    parser.add_argument(
        "--fanout", type=int, default=100, help="fan-out width (default %(default)s)"
    )
    parser.add_argument("--big-fanout", type=int, default=1000, help="(default %(default)s)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR", help="py-spy output")
    os.environ.setdefault("TEP_LOG_LEVEL", "WARNING")
    arguments = parser.parse_args()
    if arguments.profile is not None:
        py_spy()  # missing: one line now, not after the stack has started
    run_bench(main(arguments))
