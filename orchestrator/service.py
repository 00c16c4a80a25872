"""The orchestrator process: consume -> load state -> fold -> decide -> append -> ack.

A thin loop around :func:`orchestrator.decide.decide`. Any number of replicas run; the one
holding the lease (:mod:`orchestrator.lease`) consumes, the others stand by. Correctness does
not rest on leadership: every decision is appended with a guard (:mod:`orchestrator.guards`)
so a second dispatch, skip or end of the same thing can never be stored, whoever writes it.
Leadership only keeps replicas from doing the same work twice.

Per message, in stream order and serially per execution (different executions run
concurrently) the leader's :class:`orchestrator.processor.EventProcessor` loads the state,
folds the event in, decides, appends with guards and acknowledges
(:mod:`orchestrator.processor`); outcomes of one execution that wait together are decided
together, in one append (:mod:`orchestrator.batch`). Messages arrive through the pull feed
(:class:`eventstore.jetstream.pull.PullFeed`), flow-controlled by the consumer's
``max_ack_pending``.

Recovery from a leader that died is quick: the lease is short (``lease_s``, 3 s), a standby
pulls the moment it takes it, and the consumer's ``ack_wait`` is short too (3 s), so what the
dead leader held comes back at about the same time. A message in hand for longer (waiting in
its execution's lane, or a slow decision) is kept with in-progress acks every third of the ack
wait (:class:`eventstore.jetstream.heartbeats.Heartbeats`), so it is not redelivered while
being worked on.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventstore.config import TepSettings
from eventstore.jetstream.consumer_metrics import sample_consumer
from eventstore.jetstream.heartbeats import Heartbeats
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_kv
from eventstore.jetstream.pull import PullFeed
from eventstore.subjects import ORCHESTRATOR_FILTERS
from orchestrator.batch import LaneBatcher
from orchestrator.cache import StateCache
from orchestrator.config import OrchestratorConfig
from orchestrator.lease import Lease
from orchestrator.processor import EventProcessor, execution_of, settle
from orchestrator.scheduler import Scheduler

__all__ = ["Orchestrator", "execution_of"]

_log = logging.getLogger("tep.orchestrator")
_RETRY_DELAY_S = 1.0
_CLEANUP_TIMEOUT_S = 3.0


class Orchestrator:
    """One orchestrator replica.

    Example:
        >>> orchestrator = Orchestrator(nc, TepSettings())  # doctest: +SKIP
        >>> async with anyio.create_task_group() as tg:  # doctest: +SKIP
        ...     await tg.start(orchestrator.run)
    """

    def __init__(
        self,
        nc: NatsClient,
        settings: TepSettings,
        config: OrchestratorConfig | None = None,
        *,
        instance_id: str | None = None,
    ) -> None:
        self.nc = nc
        self.settings = settings
        self.config = config or OrchestratorConfig()
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.log = EventLog(nc, settings)
        self.js = self.log.js
        self.cache = StateCache(self.config.cache_size)
        self.lease: Lease | None = None
        self.stats: dict[str, int] = {
            "processed": 0,
            "appended": 0,
            "conflicts": 0,
            "dead_lettered": 0,
            "retried": 0,
            "batches": 0,
            "batched": 0,
        }
        self.processor = EventProcessor(self.log, settings, self.config, self.cache, self.stats)
        self.batcher = LaneBatcher(self.processor, self.config.max_batch)
        self.scheduler = Scheduler(self.log, stats=self.stats, stall_s=self.config.lease_s)
        self._lanes: dict[str, deque[Msg]] = {}
        self._lane_group: TaskGroup | None = None
        self._heartbeats = Heartbeats(self.config.ack_wait_s / 3)
        self._lead_scope: anyio.CancelScope | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this replica currently holds the lease."""
        return self.lease is not None and self.lease.is_leader

    def status(self) -> dict[str, Any]:
        """A health snapshot: role, leadership, connection, counters."""
        return {
            "role": "orchestrator",
            "instance": self.instance_id,
            "leader": self.is_leader,
            "current_leader": self.lease.leader if self.lease else None,
            "connected": bool(self.nc.is_connected),
            "cached_executions": len(self.cache),
            "busy_executions": len(self._lanes),
            **self.stats,
        }

    async def sample_metrics(self) -> None:
        """Sample the consumer's backlog into the metrics (``tep_consumer_pending``...)."""
        await sample_consumer(self.js, self.settings.stream, self.config.consumer)

    # ------------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Provision, compete for the lease, and lead whenever it is held. Runs until cancelled.

        Cancelling stops cleanly: undelivered and unfinished messages are given back to the
        consumer and the lease is released, so a standby takes over at once.
        """
        await self._provision()
        kv = await ensure_kv(self.js, self.config.lease_bucket, replicas=self.settings.replicas)
        self.lease = Lease(
            kv,
            self.config.lease_key,
            self.instance_id,
            lease_s=self.config.lease_s,
            renew_s=self.config.renew_s,
            on_change=self._on_leadership,
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.lease.run)
                task_status.started()
                while True:
                    await self.lease.wait_until_leader()
                    try:
                        await self._lead()
                    except Exception:
                        _log.exception("consuming failed; retrying", extra=self._ids())
                        await anyio.sleep(_RETRY_DELAY_S)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT_S):
                await self.lease.release()

    async def _provision(self) -> None:
        config = ConsumerConfig(
            durable_name=self.config.consumer,
            description="tep orchestrator: plans, action outcomes, cancel requests",
            filter_subjects=list(ORCHESTRATOR_FILTERS),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.config.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=self.config.max_ack_pending,
            max_waiting=512,
            num_replicas=self.settings.replicas,
        )
        # Create or update: a consumer an earlier version made gets today's filters.
        await self.js.add_consumer(self.settings.stream, config=config)

    def _ids(self) -> dict[str, str]:
        return {"instance": self.instance_id}

    def _on_leadership(self, leading: bool) -> None:
        if not leading and self._lead_scope is not None:
            self._lead_scope.cancel()

    async def _lead(self) -> None:
        self.cache.clear()
        _log.info("leading: consuming", extra=self._ids())
        feed = PullFeed(
            self.nc,
            self.settings.stream,
            self.config.consumer,
            self._route,
            batch=self.config.pull_batch,
            expires_s=self.config.pull_expires_s,
        )
        try:
            with anyio.CancelScope() as scope:
                self._lead_scope = scope
                if not self.is_leader:
                    return
                async with anyio.create_task_group() as beating:
                    beating.start_soon(self._heartbeats.run)
                    beating.start_soon(self.scheduler.run)  # schedule ticks, while leading
                    async with anyio.create_task_group() as lanes:
                        self._lane_group = self.processor.background = lanes
                        await feed.run()
                    beating.cancel_scope.cancel()  # every lane is done
        finally:
            self._lead_scope = None
            self._lane_group = self.processor.background = None
            self._heartbeats.clear()
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT_S):
                await self._give_back()
            self.cache.clear()
            _log.info("stopped leading", extra=self._ids())

    async def _give_back(self) -> None:
        # Nak for a message acked a moment ago is ignored by the server.
        lanes, self._lanes = self._lanes, {}
        if not self.nc.is_connected:
            return  # they come back after ack_wait
        for lane in lanes.values():
            for msg in lane:
                await settle(msg.nak(), msg)

    # --------------------------------------------------------------------- routing

    def _route(self, msg: Msg) -> None:
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
            # Outcomes waiting together are decided together (orchestrator.batch).
            for _ in range(await self.batcher.handle(lane)):
                self._heartbeats.discard(lane.popleft())
        del self._lanes[key]
