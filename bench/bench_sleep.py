"""Many sleeping executions on a real `tep up`: memory while they sleep, lateness when they wake.

    .venv/bin/python bench/bench_sleep.py [--executions 10000] [--sleep-s 30] [--quick]

Starts `tep up` (embedded nats-server with auth, orchestrator, executor(s), projector, demo
target) in a scratch directory and submits ``--executions`` executions through
:meth:`StateManager.initialize_state`, each ``sleep --sleep-s`` then one GET of the demo target.
Prints:

- the submit rate;
- the RSS of every process of the stack when idle (after one warm-up execution) and while the
  executions sleep (every one waiting, no timer due yet), and its peak while they wake;
- the time for all to finish after the timers fire (last ``execution.completed`` minus the
  first wake-up time) and the wake-up lateness of each execution, p50/p99/max: the stored time
  of the server's ``action.timer.fired``, of the sleep's ``action.completed`` and of the
  ``execution.completed``, each minus the sleep's ``until``;
- the baseline measured in the same run, on the same server: raw nats-py message schedules on
  a scratch stream, all due at one instant and due at the same spread of times as tep's sleeps,
  and how late the server stores their targets; the ratios of tep's lateness to it. (The server
  runs due schedules at most every 250 ms: spread schedules are up to that late by design.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from sleep_baseline import baseline
from sleep_times import read_tep_times
from tep_stack import RssSampler, start_stack

from eventstore.access import Role
from eventstore.config import TepSettings
from eventstore.jetstream.connection import connect_as
from projections.state_manager import StateManager
from tep.server import find_free_port

SLEEP, CALL = "nap", "call"


# ------------------------------------------------------------------ tep's run


def sleep_plan(sleep_s: float, target: str) -> dict[str, Any]:
    return {
        "id": "bench-sleep",
        "actions": [
            {
                "id": SLEEP,
                "type": "sleep",
                "duration_s": int(sleep_s) if sleep_s % 1 == 0 else sleep_s,
            },
            {
                "id": CALL,
                "depends_on": [SLEEP],
                "request": {"method": "GET", "url": f"{target}/users/1", "timeout_s": 10},
            },
        ],
    }


async def submit_all(
    sm: StateManager, plan: dict[str, Any], count: int, concurrency: int, rate: float | None
) -> list[str]:
    """Submit ``count`` executions, ``concurrency`` at a time, at most ``rate`` per second."""
    ids: list[str] = []
    remaining = iter(range(count))
    began = time.monotonic()

    async def worker() -> None:
        for n in remaining:
            if rate:
                await asyncio.sleep(began + n / rate - time.monotonic())
            ids.append((await sm.initialize_state(plan)).execution_id)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids


async def until_true(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------ report


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def lateness_row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:<46}{percentile(ms, 0.5):>9.1f}{percentile(ms, 0.99):>9.1f}{max(ms):>9.1f}"
        f"{len(ms):>8}"
    )


def _mb(value: float | None) -> str:
    return f"{value:>10.1f}" if value is not None else f"{'-':>10}"


def print_rss(sampler: RssSampler, sleeping_phase: str) -> None:
    print(
        f"\n{'RSS, MB (peak)':<16}{'idle':>10}{'sleeping':>10}{'ratio':>9}{'waking':>10}"
        f"{'CPU s: submit':>15}{'wake':>8}"
    )
    for label in sampler.labels():
        idle = sampler.peak("idle", label)
        sleeping = sampler.peak(sleeping_phase, label)
        ratio = f"{sleeping / idle:>8.2f}x" if idle and sleeping else f"{'-':>9}"
        submit_cpu = sampler.cpu("idle", sleeping_phase, label)
        wake_cpu = sampler.cpu(sleeping_phase, "waking", label)
        print(
            f"{label:<16}{_mb(idle)}{_mb(sleeping)}{ratio}{_mb(sampler.peak('waking', label))}"
            f"{_seconds(submit_cpu, 15)}{_seconds(wake_cpu, 8)}"
        )


def _seconds(value: float | None, width: int) -> str:
    return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"


async def main(args: argparse.Namespace) -> None:
    if args.quick:
        args.executions, args.sleep_s = 500, 5.0
    with tempfile.TemporaryDirectory(prefix="tep-bench-sleep-") as tmp:
        directory = Path(tmp)
        state_dir = directory / "state"
        os.environ["TEP_STATE_DIR"] = str(state_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEP_")}
        env.update(TEP_STATE_DIR=str(state_dir), TEP_LOG_LEVEL="WARNING")
        demo_port = find_free_port()
        target = f"http://127.0.0.1:{demo_port}"
        stack = start_stack(directory, env, args.executors, demo_port)
        sampler = RssSampler(stack)
        try:
            settings = TepSettings.from_env().model_copy(update={"nats_url": stack.nats_url})
            sm = await StateManager.connect(stack.nats_url, settings=settings, name="bench-sleep")
            admin = await connect_as(settings, Role.ADMIN, name="bench-sleep-admin")
            try:
                await report(args, sm, admin, sampler, target, settings.stream)
            finally:
                await sm.close()
                await admin.close()
        finally:
            stack.stop()


async def report(
    args: argparse.Namespace,
    sm: StateManager,
    admin: NatsClient,
    sampler: RssSampler,
    target: str,
    stream: str,
) -> None:
    stack = sampler.stack
    count, sleep_s = args.executions, args.sleep_s
    warm = await sm.initialize_state(sleep_plan(1, target))
    await sm.wait_for_completion(warm.execution_id, timeout=60)
    done_before = (await sm.get_stats()).executions["completed"]

    sampling = asyncio.create_task(sampler.run())
    await asyncio.sleep(2)  # idle samples

    sampler.phase = "submitting"
    plan = sleep_plan(sleep_s, target)
    began = time.monotonic()
    ids = await submit_all(sm, plan, count, args.concurrency, args.submit_rate)
    submitted = time.monotonic()
    first_due = began + sleep_s  # no sleep can end before its submission plus its duration

    async def all_waiting() -> bool:
        return bool((await sm.get_stats()).actions["waiting"] >= count)

    await until_true(all_waiting, sleep_s + 300, "every execution waiting")
    waiting = time.monotonic()
    sleeping_phase = "sleeping" if waiting < first_due else "submitting"
    if waiting < first_due:
        sampler.phase = "sleeping"
        await asyncio.sleep(max(first_due - 0.3 - time.monotonic(), 0))
    sampler.phase = "waking"

    async def all_done() -> bool:
        return bool((await sm.get_stats()).executions["completed"] >= done_before + count)

    await until_true(all_done, sleep_s + 600, "every execution completed")
    sampling.cancel()
    counters = stack.health("orchestrator")

    times = await read_tep_times(admin, stream, set(ids), sleep_action=SLEEP)
    missing = len(ids) - len(times.ended)
    first_until, last_until = min(times.until.values()), max(times.until.values())
    last_end = max(times.ended.values())

    lead = timedelta(seconds=args.baseline_lead_s)
    instant = datetime.now(UTC) + lead
    at_once = await baseline(admin, [instant] * count)
    start = datetime.now(UTC) + lead
    ordered = sorted(times.until.values())
    spread = await baseline(admin, [start + (u - first_until) for u in ordered])

    rate = count / (submitted - began)
    print(
        f"{count:,} executions, each sleep {sleep_s:g} s then GET {target}/users/1 "
        f"({args.executors} executor(s), {args.concurrency} submits in flight"
        + (f", at most {args.submit_rate:g}/s)" if args.submit_rate else ")")
    )
    print(f"submit: {submitted - began:.2f} s = {rate:,.0f} executions/s (initialize_state)")
    print(
        f"every sleep waiting {waiting - began:.2f} s after the first submit; first wake-up at "
        f"{sleep_s:g} s"
        + ("" if waiting < first_due else " (NOT all waiting before it: no sleeping phase)")
    )
    print(f"wake-ups spread over {(last_until - first_until).total_seconds():.2f} s of untils")
    print(
        f"all finished {(last_end - first_until).total_seconds():.2f} s after the first wake-up "
        f"({(last_end - last_until).total_seconds():.2f} s after the last)"
        + (f"; {missing} without execution.completed" if missing else "")
    )
    wanted = ("processed", "appended", "conflicts", "retried", "dead_lettered")
    print("orchestrator counters: " + ", ".join(f"{k} {counters.get(k, '?')}" for k in wanted))
    print_rss(sampler, sleeping_phase)

    def lateness(found: dict[str, datetime]) -> list[float]:
        return [(found[e] - times.until[e]).total_seconds() for e in found if e in times.until]

    fired, slept, ended = lateness(times.fired), lateness(times.slept), lateness(times.ended)
    print(f"\n{'lateness after the due time (ms)':<46}{'p50':>9}{'p99':>9}{'max':>9}{'n':>8}")
    print(lateness_row("baseline: raw schedules, all at one instant", at_once))
    print(lateness_row("baseline: raw schedules, tep's spread", spread))
    print(lateness_row("tep: action.timer.fired stored", fired))
    print(lateness_row("tep: sleep's action.completed stored", slept))
    print(lateness_row("tep: execution.completed stored (+ HTTP call)", ended))
    woken = [
        (times.slept[e] - times.fired[e]).total_seconds() for e in times.slept if e in times.fired
    ]
    print(lateness_row("tep: sleep completed after timer fired", woken))

    print("\nratios (tep / baseline with tep's spread)")
    for name, values in (("timer.fired", fired), ("sleep completed", slept)):
        p50 = percentile(values, 0.5) / max(percentile(spread, 0.5), 1e-6)
        p99 = percentile(values, 0.99) / max(percentile(spread, 0.99), 1e-6)
        print(f"  {name:<18} p50 {p50:>7.1f}x   p99 {p99:>7.1f}x")
    orchestrator = sampler.peak(sleeping_phase, "orchestrator") or 0.0
    verdict_rss = "met" if orchestrator < 200 else "MISSED"
    verdict_p99 = "met" if percentile(slept, 0.99) < 1 else "MISSED"
    print(
        f"\ntargets: orchestrator RSS while sleeping {orchestrator:.0f} MB < 200 MB: "
        f"{verdict_rss}; wake-up p99 {percentile(slept, 0.99) * 1000:.0f} ms < 1 s: {verdict_p99}"
    )
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]) if __doc__ else None,
    )
    parser.add_argument(
        "--executions", type=int, default=10_000, help="executions (default %(default)s)"
    )
    parser.add_argument(
        "--sleep-s", type=float, default=30.0, help="each one's sleep, s (default %(default)s)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 500 executions sleeping 5 s"
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="submits in flight (default %(default)s)"
    )
    parser.add_argument(
        "--submit-rate",
        type=float,
        default=None,
        help="submit at most this many executions per second (default: as fast as taken); "
        "the sleeps wake at the same rate",
    )
    parser.add_argument(
        "--executors", type=int, default=1, help="executor processes (default %(default)s)"
    )
    parser.add_argument(
        "--baseline-lead-s",
        type=float,
        default=5.0,
        help="the baseline's first schedule is due this long after it starts publishing "
        "(default %(default)s)",
    )
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the stack started is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main(parser.parse_args()))
