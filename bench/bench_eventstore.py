"""Event log throughput next to raw nats-py doing the same work, in one run on one server.

    .venv/bin/python bench/bench_eventstore.py [--sequential 5000] [--pipelined 50000]
        [--replay 200000]

Prints each rate and the ratio ours/raw. Targets: append >= 0.8x raw (both modes),
replay >= 0.7x raw.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable

from nats.js.api import ConsumerConfig, DeliverPolicy

from eventstore.codec import encode_event
from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ActionStarted, Event
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log, log_stream_config
from eventstore.subjects import execution_filters, subject_for
from tep.server import EmbeddedServer


def make_events(count: int, executions: int = 1000, tag: str = "") -> list[Event]:
    events: list[Event] = []
    for i in range(count):
        execution = f"x{tag}{i % executions}"
        if i % 2:
            events.append(
                ActionCompleted(
                    execution_id=execution, action_id=f"a{i}", attempt=1, output={"i": i}
                )
            )
        else:
            events.append(ActionStarted(execution_id=execution, action_id=f"a{i}", attempt=1))
    return events


@dataclasses.dataclass
class Result:
    name: str
    ours: float
    raw: float
    unit: str

    @property
    def ratio(self) -> float:
        return self.ours / self.raw


async def best_rate(runs: int, count: int, work: Callable[[int], Awaitable[None]]) -> float:
    rates = []
    for run in range(runs):
        started = time.perf_counter()
        await work(run)
        rates.append(count / (time.perf_counter() - started))
    return max(rates)


async def raw_stream(nc: NatsClient, name: str, settings: TepSettings) -> None:
    """A stream with the log's settings on a subject space of its own, for raw publishes."""
    js = nc.jetstream()
    config = log_stream_config(settings)
    config = dataclasses.replace(config, name=name, subjects=[f"{name.lower()}.>"])
    await js.add_stream(config)


async def bench_sequential(nc: NatsClient, log: EventLog, count: int) -> Result:
    js = nc.jetstream()
    raw_events = [make_events(count, tag=f"rs{r}") for r in range(2)]
    our_events = [make_events(count, tag=f"os{r}") for r in range(2)]

    async def raw(run: int) -> None:
        for event in raw_events[run]:
            await js.publish(
                "raw1." + subject_for(event),
                encode_event(event),
                headers={"Nats-Msg-Id": event.event_id},
            )

    async def ours(run: int) -> None:
        for event in our_events[run]:
            await log.append(event)

    raw_rate = await best_rate(2, count, raw)
    our_rate = await best_rate(2, count, ours)
    return Result("append, awaited one by one", our_rate, raw_rate, "events/s")


async def bench_pipelined(nc: NatsClient, log: EventLog, count: int) -> Result:
    js = nc.jetstream(publish_async_max_pending=4000)
    raw_events = [make_events(count, tag=f"rp{r}") for r in range(2)]
    our_events = [make_events(count, tag=f"op{r}") for r in range(2)]

    async def raw(run: int) -> None:
        futures = []
        for event in raw_events[run]:
            futures.append(
                await js.publish_async(
                    "raw2." + subject_for(event),
                    encode_event(event),
                    headers={"Nats-Msg-Id": event.event_id},
                )
            )
        await asyncio.gather(*futures)

    async def ours(run: int) -> None:
        await log.append_many(our_events[run])

    raw_rate = await best_rate(2, count, raw)
    our_rate = await best_rate(2, count, ours)
    return Result("append, pipelined", our_rate, raw_rate, "events/s")


async def bench_history(nc: NatsClient, log: EventLog, settings: TepSettings) -> Result:
    js = nc.jetstream()
    executions = [f"x{n}" for n in range(0, 200, 7)]  # ~25 scattered events each in the log

    async def raw_read(execution: str) -> int:
        received: list[bytes] = []
        done = asyncio.Event()
        info = await js.add_consumer(
            settings.stream,
            config=ConsumerConfig(
                filter_subjects=execution_filters(execution),
                deliver_policy=DeliverPolicy.ALL,
                mem_storage=True,
                inactive_threshold=5,
            ),
        )
        total = info.num_pending or 0
        await js.delete_consumer(settings.stream, info.name)

        async def on_msg(msg: object) -> None:
            received.append(msg.data)  # type: ignore[attr-defined]
            if len(received) >= total:
                done.set()

        sub = await js.subscribe(
            "",
            stream=settings.stream,
            cb=on_msg,
            ordered_consumer=True,
            config=ConsumerConfig(filter_subjects=execution_filters(execution)),
        )
        if total:
            await asyncio.wait_for(done.wait(), 10)
        await sub.unsubscribe()
        return len(received)

    raw_times, our_times = [], []
    for execution in executions:
        started = time.perf_counter()
        raw_count = await raw_read(execution)
        raw_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        ours = await log.read_execution(execution)
        our_times.append(time.perf_counter() - started)
        assert len(ours) == raw_count, (execution, len(ours), raw_count)
    raw_rate = 1 / statistics.median(raw_times)
    our_rate = 1 / statistics.median(our_times)
    return Result("history of one execution (median)", our_rate, raw_rate, "reads/s")


async def bench_replay(nc: NatsClient, log: EventLog, settings: TepSettings) -> Result:
    js = nc.jetstream()
    total = await log.last_sequence()

    async def raw(_: int) -> None:
        done = asyncio.Event()
        seen = 0

        async def on_msg(msg: object) -> None:
            nonlocal seen
            seen += 1
            if seen >= total:
                done.set()

        sub = await js.subscribe(
            "",
            stream=settings.stream,
            cb=on_msg,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            pending_msgs_limit=16384,
        )
        await asyncio.wait_for(done.wait(), 600)
        await sub.unsubscribe()

    async def ours(_: int) -> None:
        seen = 0
        async for _record in log.replay():
            seen += 1
        assert seen == total, (seen, total)

    raw_rate = await best_rate(2, total, raw)
    our_rate = await best_rate(2, total, ours)
    return Result(f"full replay of {total:,} events (decoded)", our_rate, raw_rate, "events/s")


async def main(args: argparse.Namespace) -> None:
    with EmbeddedServer() as server:
        settings = TepSettings(nats_url=server.url)
        nc = await connect(server.url)
        await ensure_log(nc.jetstream(), settings)
        await raw_stream(nc, "RAW1", settings)
        await raw_stream(nc, "RAW2", settings)
        log = EventLog(nc, settings)
        results = [
            await bench_sequential(nc, log, args.sequential),
            await bench_pipelined(nc, log, args.pipelined),
        ]
        filler = args.replay - await log.last_sequence()
        if filler > 0:
            await log.append_many(make_events(filler, tag="fill"))
        results.append(await bench_history(nc, log, settings))
        results.append(await bench_replay(nc, log, settings))
        await nc.close()
    print(f"{'benchmark':42} {'ours':>12} {'raw nats-py':>12}  ratio")
    for r in results:
        print(f"{r.name:42} {r.ours:>12,.0f} {r.raw:>12,.0f}  {r.ratio:.2f}x  ({r.unit})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=5_000)
    parser.add_argument("--pipelined", type=int, default=50_000)
    parser.add_argument("--replay", type=int, default=200_000)
    asyncio.run(main(parser.parse_args()))
