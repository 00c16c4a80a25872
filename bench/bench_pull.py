"""Pull loop latency: publish ack -> handler for one idle consumer, next to raw nats-py.

    .venv/bin/python bench/bench_pull.py [--count 300] [--expires 0.1] [--pause-ms 4]

Publishes ``count`` messages one at a time (each after a random pause, so publications land
at every phase of the pull requests' lifetimes, expiries included) into a stream with one idle
consumer, and records the time from the publish ack to the handler, and from the start of the
publish to the handler. Scenarios, in one run on one embedded server:

- ``feed credit=1`` / ``feed credit=64``: :class:`eventstore.jetstream.pull.PullFeed` with a
  credit (the executor's mode), each message acked then released;
- ``feed max_ack_pending``: the feed without credit (the orchestrator's mode);
- ``raw core subscription``: a plain subscription on the same subject (no JetStream consumer:
  the floor);
- ``raw pull_subscribe fetch(1)``: nats-py's pull subscription, ``fetch(1)`` in a loop.

Prints p50/p99/max in microseconds of both latencies (the ack often comes after the delivery,
so the first can be negative) and the ratios, on the second, of each scenario to the raw
fetch loop and to the core subscription. Target: a feed sees a message within ~1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig

from eventstore.config import TepSettings
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.provision import log_stream_config
from eventstore.jetstream.pull import PullFeed
from tep.server import EmbeddedServer

STREAM = "BENCHPULL"
WARMUP = 20


@dataclasses.dataclass
class Result:
    name: str
    after_ack_us: list[float]
    after_publish_us: list[float]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Probe:
    """What the handler side records: when each message arrived."""

    def __init__(self) -> None:
        self.arrived: float | None = None
        self.event = anyio.Event()

    def hit(self) -> None:
        self.arrived = time.perf_counter()
        self.event.set()

    def reset(self) -> None:
        self.arrived = None
        self.event = anyio.Event()


async def add_consumer(nc: NatsClient, name: str, subject: str) -> None:
    await nc.jetstream().add_consumer(
        STREAM,
        config=ConsumerConfig(
            durable_name=name, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT
        ),
    )


async def measure(
    nc: NatsClient, name: str, subject: str, probe: Probe, args: argparse.Namespace
) -> Result:
    js = nc.jetstream()
    rng = random.Random(7)
    after_ack: list[float] = []
    after_publish: list[float] = []
    for i in range(WARMUP + args.count):
        await anyio.sleep(rng.uniform(0, args.pause_ms / 1000))
        probe.reset()
        began = time.perf_counter()
        await js.publish(subject, b"x" * 64)
        acked = time.perf_counter()
        with anyio.fail_after(10):
            await probe.event.wait()
        assert probe.arrived is not None
        if i >= WARMUP:
            after_ack.append((probe.arrived - acked) * 1e6)
            after_publish.append((probe.arrived - began) * 1e6)
    return Result(name, after_ack, after_publish)


@asynccontextmanager
async def feed_consumer(
    nc: NatsClient, tag: str, probe: Probe, credit: int | None, expires_s: float
) -> AsyncIterator[str]:
    subject = f"benchpull.{tag}"
    await add_consumer(nc, tag, subject)
    async with anyio.create_task_group() as tg:
        feed: PullFeed | None = None

        async def finish(msg: Msg) -> None:
            await msg.ack()
            if credit is not None:
                assert feed is not None
                feed.release()

        def handler(msg: Msg) -> None:
            probe.hit()
            tg.start_soon(finish, msg)

        feed = PullFeed(nc, STREAM, tag, handler, credit=credit, expires_s=expires_s)
        await tg.start(feed.run)
        yield subject
        tg.cancel_scope.cancel()


@asynccontextmanager
async def core_subscription(nc: NatsClient, probe: Probe) -> AsyncIterator[str]:
    subject = "benchpull.core"

    async def on_msg(_: Msg) -> None:
        probe.hit()

    sub = await nc.subscribe(subject, cb=on_msg)
    try:
        yield subject
    finally:
        await sub.unsubscribe()


@asynccontextmanager
async def fetch_loop(nc: NatsClient, probe: Probe, expires_s: float) -> AsyncIterator[str]:
    subject = "benchpull.fetch"
    await add_consumer(nc, "fetch", subject)
    psub = await nc.jetstream().pull_subscribe(subject, durable="fetch", stream=STREAM)

    async def loop() -> None:
        while True:
            try:
                msgs = await psub.fetch(1, timeout=expires_s)
            except NatsTimeoutError:
                continue
            for msg in msgs:
                probe.hit()
                await msg.ack()

    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        yield subject
        tg.cancel_scope.cancel()
    await psub.unsubscribe()


async def run_scenario(
    nc: NatsClient,
    name: str,
    consumer: Callable[[Probe], AbstractAsyncContextManager[str]],
    args: argparse.Namespace,
) -> Result:
    probe = Probe()
    async with consumer(probe) as subject:
        await anyio.sleep(0.05)  # idle: the first pull requests are in place
        return await measure(nc, name, subject, probe, args)


def print_results(results: list[Result], fetch: Result, core: Result) -> None:
    print(
        f"{'':30} {'publish ack -> handler':>26} {'publish start -> handler':>26}"
        f" {'p50, p99 vs fetch(1)':>21} {'p50, p99 vs core':>18}"
    )
    print(f"{'scenario':30} {'p50':>8} {'p99':>8} {'max':>8} {'p50':>8} {'p99':>8} {'max':>8}")
    for r in results:
        ack, pub = r.after_ack_us, r.after_publish_us
        p50, p99 = pct(pub, 0.5), pct(pub, 0.99)
        print(
            f"{r.name:30} {pct(ack, 0.5):8.0f} {pct(ack, 0.99):8.0f} {max(ack):8.0f}"
            f" {p50:8.0f} {p99:8.0f} {max(pub):8.0f}"
            f" {p50 / pct(fetch.after_publish_us, 0.5):9.2f}x"
            f" {p99 / pct(fetch.after_publish_us, 0.99):9.2f}x"
            f" {p50 / pct(core.after_publish_us, 0.5):8.2f}x"
            f" {p99 / pct(core.after_publish_us, 0.99):8.2f}x"
        )


async def main(args: argparse.Namespace) -> None:
    with EmbeddedServer() as server:
        settings = TepSettings(nats_url=server.url)
        nc = await connect(server.url)
        config = dataclasses.replace(
            log_stream_config(settings), name=STREAM, subjects=["benchpull.>"]
        )
        await nc.jetstream().add_stream(config)
        e = args.expires
        scenarios = [
            ("feed credit=1", lambda p: feed_consumer(nc, "credit1", p, 1, e)),
            ("feed credit=64", lambda p: feed_consumer(nc, "credit64", p, 64, e)),
            ("feed max_ack_pending", lambda p: feed_consumer(nc, "flow", p, None, e)),
            ("raw core subscription", lambda p: core_subscription(nc, p)),
            ("raw pull_subscribe fetch(1)", lambda p: fetch_loop(nc, p, e)),
        ]
        results = [await run_scenario(nc, name, make, args) for name, make in scenarios]
        await nc.close()
    core, fetch = results[-2:]
    print(
        f"{args.count} messages, one at a time, random pause up to {args.pause_ms} ms, "
        f"pull requests expiring after {args.expires} s; latencies in us (a negative one: the "
        "handler had the message before the publisher had its ack); ratios on publish start "
        "-> handler"
    )
    print_results(results, fetch, core)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--expires", type=float, default=0.1)
    parser.add_argument("--pause-ms", type=float, default=4.0)
    asyncio.run(main(parser.parse_args()))
