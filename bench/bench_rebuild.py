"""Rebuild throughput against the raw replay rate, and projection lag under load.

    .venv/bin/python bench/bench_rebuild.py [--events 1000000] [--rounds 2] [--lag-rate 5000]
        [--lag-seconds 10]

The default log is 200,000 events (about a minute in all); ``--events 1000000`` is the full
form (generating the log alone takes a minute or two). ``--lag-seconds 0`` skips (c).

Starts a nats-server in a temporary directory (or uses ``--nats-url``, which must be empty),
then:

1. generates a log of ``--events`` events: executions of 16 actions, 50 events each
   (``plan.submitted``, then per action requested/started/completed, then
   ``execution.completed``), 200 in flight at a time, appended with ``EventLog.append_many``;
2. (a) reads the whole log through a nats-py ordered push consumer with a callback that only
   counts: the raw read rate;
3. (b) runs ``tep rebuild --json`` as a child process: events/s as the rebuild measures itself
   (and wall time including process start), and the ratio to (a): best rebuild over best raw
   read of ``--rounds`` rounds, (a) and (b) alternating, and each round's own ratio;
4. (c) starts ``tep projector``, appends ``--lag-rate`` events/s for ``--lag-seconds`` in
   10 ms ticks, and measures for every tick the time from the append being acknowledged to the
   view's checkpoint (written in the same atomic batch as the states) covering it: p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from eventstore.config import TepSettings
from eventstore.events import Event
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from projections.buckets import ensure_current_view
from projections.testing import interleave, synthetic_run
from projections.view import CHECKPOINT_KEY, decode_checkpoint
from tep.server import EmbeddedServer

EVENTS_PER_EXECUTION = 50
ACTIONS = 16
IN_FLIGHT = 200
CHUNK_EXECUTIONS = 2_000


def _runs(first: int, count: int, prefix: str) -> list[list[Event]]:
    return [synthetic_run(f"{prefix}{n}", actions=ACTIONS) for n in range(first, first + count)]


async def generate(log: EventLog, executions: int) -> int:
    """Append ``executions`` runs, chunk by chunk; returns the last sequence."""
    last = 0
    started = time.perf_counter()
    for first in range(0, executions, CHUNK_EXECUTIONS):
        count = min(CHUNK_EXECUTIONS, executions - first)
        events = list(interleave(_runs(first, count, "b"), concurrency=IN_FLIGHT, seed=first))
        results = await log.append_many(events, max_in_flight=1024)
        last = results[-1].sequence
        rate = last / (time.perf_counter() - started)
        print(f"  generated {last:,} events ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    return last


async def raw_read_rate(nc: NatsClient, settings: TepSettings, total: int) -> float:
    """Events/s of an ordered push consumer with a counting callback over the whole log."""
    js = nc.jetstream()
    done = asyncio.Event()
    count = 0

    async def on_message(msg: Msg) -> None:
        nonlocal count
        count += 1
        if count >= total:
            done.set()

    started = time.perf_counter()
    sub = await js.subscribe(
        ">",
        stream=settings.stream,
        cb=on_message,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    await asyncio.wait_for(done.wait(), timeout=3600)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return total / elapsed


def tep(*args: str) -> list[str]:
    return [sys.executable, "-m", "tep.cli.main", *args]


def run_rebuild(url: str) -> tuple[dict[str, object], float]:
    started = time.perf_counter()
    out = subprocess.run(
        tep("rebuild", "--json", "--quiet", "--nats-url", url),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout), time.perf_counter() - started


async def projection_lag(
    nc: NatsClient, settings: TepSettings, url: str, rate: int, seconds: float
) -> list[float]:
    """Seconds from append-acknowledged to visible in the view, one sample per tick."""
    log = EventLog(nc, settings)
    _, _, view = await ensure_current_view(nc.jetstream(), settings)
    projector = await asyncio.create_subprocess_exec(
        *tep("projector", "--nats-url", url),
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "TEP_LOG_LEVEL": "WARNING"},
    )
    visible: list[tuple[int, float]] = []
    moved = asyncio.Event()
    watcher = await view.watch(CHECKPOINT_KEY)

    async def watch_checkpoint() -> None:
        async for entry in watcher:
            if entry is not None and entry.value:
                visible.append((decode_checkpoint(entry.value), time.perf_counter()))
                moved.set()

    async def until_visible(sequence: int) -> None:
        while not visible or visible[-1][0] < sequence:
            moved.clear()
            await asyncio.wait_for(moved.wait(), timeout=60)

    watching = asyncio.create_task(watch_checkpoint())
    try:
        await until_visible(await log.last_sequence())  # the projector has caught up
        per_tick = max(1, rate // 100)
        ticks = int(seconds * 100)
        runs = _runs(0, ticks * per_tick // EVENTS_PER_EXECUTION + IN_FLIGHT, "lag")
        stream = interleave(runs, concurrency=IN_FLIGHT, seed=1)
        appended: list[tuple[int, float]] = []
        began = time.perf_counter()
        for tick in range(ticks):
            batch = [next(stream) for _ in range(per_tick)]
            results = await log.append_many(batch)
            appended.append((results[-1].sequence, time.perf_counter()))
            pause = began + (tick + 1) / 100 - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)  # pacing the load, not waiting for a condition
        await until_visible(appended[-1][0])
    finally:
        watching.cancel()
        await watcher.stop()  # type: ignore[no-untyped-call]
        projector.terminate()
        await projector.wait()
    lags = []
    for sequence, acked in appended:
        seen = next((t for s, t in visible if s >= sequence), None)
        if seen is not None:
            lags.append(max(seen - acked, 0.0))
    return lags


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def bench(args: argparse.Namespace, url: str) -> dict[str, object]:
    settings = TepSettings(nats_url=url)
    nc = await connect(url, name="bench-rebuild")
    try:
        await ensure_log(nc.jetstream(), settings)
        log = EventLog(nc, settings)
        if await log.last_sequence():
            raise SystemExit("the stream is not empty: use a fresh server")
        executions = args.events // EVENTS_PER_EXECUTION
        print(f"generating {executions:,} executions x 50 events", file=sys.stderr)
        started = time.perf_counter()
        total = await generate(log, executions)
        generate_rate = total / (time.perf_counter() - started)

        # Raw read and rebuild alternate, so both see the same machine in each round.
        raws: list[float] = []
        reports: list[tuple[dict[str, object], float]] = []
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}: raw replay ...", file=sys.stderr, flush=True)
            raws.append(await raw_read_rate(nc, settings, total))
            print(f"  {raws[-1]:,.0f} events/s; tep rebuild ...", file=sys.stderr, flush=True)
            reports.append(run_rebuild(url))
            rate = float(reports[-1][0]["events_per_second"])  # type: ignore[arg-type]
            print(f"  {rate:,.0f} events/s: {rate / raws[-1]:.3f}x", file=sys.stderr)
        raw = max(raws)
        report, wall = max(reports, key=lambda r: float(r[0]["events_per_second"]))  # type: ignore[arg-type]
        rebuild_rate = float(report["events_per_second"])  # type: ignore[arg-type]
        round_ratios = [
            round(float(r["events_per_second"]) / w, 3)  # type: ignore[arg-type]
            for (r, _), w in zip(reports, raws, strict=True)
        ]

        lags: list[float] = []
        if args.lag_seconds > 0:
            print(f"projection lag at {args.lag_rate:,} events/s ...", file=sys.stderr, flush=True)
            lags = await projection_lag(nc, settings, url, args.lag_rate, args.lag_seconds)
    finally:
        await nc.close()
    return {
        "events": total,
        "executions": executions,
        "append_events_per_second": round(generate_rate),
        "raw_replay_events_per_second": round(raw),
        "rebuild_events_per_second": round(rebuild_rate),
        "rebuild_seconds": report["seconds"],
        "rebuild_wall_seconds": round(wall, 2),
        "rebuild_to_raw_ratio": round(rebuild_rate / raw, 3),
        "round_ratios": round_ratios,
        "lag_rate_events_per_second": args.lag_rate,
        "lag_samples": len(lags),
        "lag_p50_ms": round(statistics.median(lags) * 1000, 1) if lags else None,
        "lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1) if lags else None,
        "lag_max_ms": round(max(lags) * 1000, 1) if lags else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2, help="best of N for (a) and (b)")
    parser.add_argument("--lag-rate", type=int, default=5_000, help="events/s during (c)")
    parser.add_argument("--lag-seconds", type=float, default=10.0, help="0: skip (c)")
    parser.add_argument("--nats-url", help="an empty server to use instead of a fresh one")
    args = parser.parse_args()
    if args.nats_url:
        results = asyncio.run(bench(args, args.nats_url))
    else:
        with (
            tempfile.TemporaryDirectory(prefix="tep-bench-") as tmp,
            EmbeddedServer(data_dir=Path(tmp)) as server,
        ):
            results = asyncio.run(bench(args, server.url))
    print(msgspec.json.format(msgspec.json.encode(results), indent=2).decode())


if __name__ == "__main__":
    main()
