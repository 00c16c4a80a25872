"""Serving one partition: its durable consumer on the partition stream, in lanes per execution.

Messages arrive through the pull feed (:class:`eventstore.jetstream.pull.PullFeed`),
flow-controlled by the consumer's ``max_ack_pending``, are made to look as they are in the log
(:func:`eventstore.jetstream.partition_messages.as_logged`: the log's subject and sequence), and
wait in their execution's lane: per execution serially, in stream order, different executions
concurrently. Outcomes of one execution that wait together are decided together
(:mod:`orchestrator.batch`). A message in hand for longer than a third of the ack wait is kept
with in-progress acks (:class:`eventstore.jetstream.heartbeats.Heartbeats`). Stopping hands
every message not yet settled back to the consumer (nak), so the partition's next holder has
them at once.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from eventstore.jetstream.heartbeats import Heartbeats
from eventstore.jetstream.partition_messages import as_logged
from eventstore.jetstream.provision import partition_consumer_config
from eventstore.jetstream.pull import PullFeed
from eventstore.partitions import partition_consumer
from orchestrator.batch import LaneBatcher
from orchestrator.config import OrchestratorConfig
from orchestrator.processor import execution_of, settle

__all__ = ["PartitionWorker"]

_log = logging.getLogger("tep.orchestrator")
_CLEANUP_TIMEOUT_S = 3.0
_RETRY_DELAY_S = 1.0


class PartitionWorker:
    """Consumes one partition until stopped.

    Args:
        nc: the connection.
        js: its JetStream context.
        stream: the partition stream.
        log_stream: the log (the stream the messages are made to look as if from).
        partition: the partition's number.
        config: the orchestrator's settings (consumer prefix, pull and ack settings).
        batcher: decides a lane's waiting messages.
        replicas: replicas of the consumer when it is created.
        also: run alongside while serving (the schedules' ticks, for partition 0).
        fresh: whether the partition's lease is still this process's to act on; asked before
            every decision (after a pause the answer is no: its messages are handed back).
    """

    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        *,
        stream: str,
        log_stream: str,
        partition: int,
        config: OrchestratorConfig,
        batcher: LaneBatcher,
        replicas: int,
        also: Callable[[], Coroutine[Any, Any, None]] | None = None,
        fresh: Callable[[], bool] = lambda: True,
    ) -> None:
        self.nc = nc
        self.js = js
        self.stream = stream
        self.log_stream = log_stream
        self.partition = partition
        self.config = config
        self.batcher = batcher
        self.replicas = replicas
        self.consumer = partition_consumer(config.consumer, partition)
        self._also = also
        self._fresh = fresh
        self._serving = True
        self._lanes: dict[str, deque[Msg]] = {}
        self._lane_group: TaskGroup | None = None
        self._heartbeats = Heartbeats(config.ack_wait_s / 3)
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()

    @property
    def busy_executions(self) -> int:
        """Executions with messages in hand."""
        return len(self._lanes)

    async def run(self) -> None:
        """Serve the partition until :meth:`stop`; a failure is logged and consuming resumes."""
        try:
            with self._scope:
                while True:
                    try:
                        await self._consume()
                    except Exception:
                        _log.exception(
                            "consuming partition %s failed; retrying",
                            self.partition,
                            extra={"partition": self.partition},
                        )
                        await anyio.sleep(_RETRY_DELAY_S)
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop deciding at once, stop consuming, hand back what is not settled, and return
        once done."""
        self._serving = False
        self._scope.cancel()
        await self._done.wait()

    async def _consume(self) -> None:
        await self._ensure_consumer()
        feed = PullFeed(
            self.nc,
            self.stream,
            self.consumer,
            self._route,
            batch=self.config.pull_batch,
            expires_s=self.config.pull_expires_s,
        )
        try:
            async with anyio.create_task_group() as beating:
                beating.start_soon(self._heartbeats.run)
                if self._also is not None:
                    beating.start_soon(self._also)
                async with anyio.create_task_group() as lanes:
                    self._lane_group = lanes
                    await feed.run()
                beating.cancel_scope.cancel()  # every lane is done
        finally:
            self._lane_group = None
            self._heartbeats.clear()
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT_S):
                await self._give_back()

    async def _ensure_consumer(self) -> None:
        config = partition_consumer_config(
            self.partition,
            prefix=self.config.consumer,
            ack_wait_s=self.config.ack_wait_s,
            max_ack_pending=self.config.max_ack_pending,
            replicas=self.replicas,
        )
        # Create or update: the consumer provisioning made gets this holder's timings.
        await self.js.add_consumer(self.stream, config=config)

    async def _give_back(self) -> None:
        # Nak for a message acked a moment ago is ignored by the server.
        lanes, self._lanes = self._lanes, {}
        if not self.nc.is_connected:
            return  # they come back after ack_wait
        for lane in lanes.values():
            for msg in lane:
                await settle(msg.nak(), msg)

    def _route(self, msg: Msg) -> None:
        msg = as_logged(msg, self.log_stream)
        key = execution_of(msg.subject) or ""
        self._heartbeats.add(msg)
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(msg)
            return
        self._lanes[key] = deque([msg])
        assert self._lane_group is not None
        self._lane_group.start_soon(self._run_lane, key)

    async def _run_lane(self, key: str) -> None:
        lane = self._lanes[key]
        while lane:
            if not (self._serving and self._fresh()):
                # Another process may serve the partition by now: its cache must not miss
                # what this one would decide. Handed back, the messages go to whoever holds it.
                while lane:
                    msg = lane.popleft()
                    self._heartbeats.discard(msg)
                    await settle(msg.nak(), msg)
                break
            for _ in range(await self.batcher.handle(lane)):
                self._heartbeats.discard(lane.popleft())
        del self._lanes[key]
