"""The continuous pull feed against a real consumer."""

from __future__ import annotations

import anyio
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from eventstore.config import TepSettings
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.pull import PullFeed

pytestmark = pytest.mark.anyio


async def _consumer(nc: NatsClient, settings: TepSettings, ack_wait: float = 30.0) -> str:
    await nc.jetstream().add_consumer(
        settings.stream,
        config=ConsumerConfig(
            durable_name="feed-test",
            filter_subject="action.completed.>",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
        ),
    )
    return "feed-test"


async def test_feed_delivers_many_batches_without_waiting_for_requests_to_expire(
    nc: NatsClient, settings: TepSettings
) -> None:
    consumer = await _consumer(nc, settings)
    js = nc.jetstream()
    received: list[Msg] = []
    everything = anyio.Event()

    def handler(msg: Msg) -> None:
        received.append(msg)
        if len(received) == 200:
            everything.set()

    # Requests of 8 that live 1 s: waiting for expiries would take 25 s; top-ups are instant.
    feed = PullFeed(nc, settings.stream, consumer, handler, batch=8, expires_s=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.run)
        for i in range(200):
            await js.publish(f"action.completed.e{i}.a", b"{}")
        with anyio.fail_after(0.9):
            await everything.wait()
        for msg in received:
            await msg.ack()
        tg.cancel_scope.cancel()

    assert [m.subject for m in received] == [f"action.completed.e{i}.a" for i in range(200)]


async def test_stopped_feed_hands_back_what_arrives_while_stopping(
    nc: NatsClient, settings: TepSettings
) -> None:
    consumer = await _consumer(nc, settings, ack_wait=30)
    js = nc.jetstream()
    first: list[Msg] = []
    got_first = anyio.Event()
    feed = PullFeed(
        nc, settings.stream, consumer, lambda m: (first.append(m), got_first.set()), expires_s=0.5
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.run)
        await js.publish("action.completed.e0.a", b"{}")
        with anyio.fail_after(3):
            await got_first.wait()
        tg.cancel_scope.cancel()  # e0 stays unacked (settling it is the handler's job)

    second: list[Msg] = []
    got_second = anyio.Event()
    again = PullFeed(
        nc, settings.stream, consumer, lambda m: (second.append(m), got_second.set()), expires_s=0.5
    )
    await js.publish("action.completed.e1.a", b"{}")
    async with anyio.create_task_group() as tg:
        tg.start_soon(again.run)
        with anyio.fail_after(3):  # far below ack_wait: e1 never went to the stopped feed
            await got_second.wait()
        tg.cancel_scope.cancel()

    assert [m.subject for m in second] == ["action.completed.e1.a"]
