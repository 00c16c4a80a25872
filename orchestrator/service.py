"""The orchestrator process: consume -> load state -> fold -> decide -> append -> ack.

A thin loop around :func:`orchestrator.decide.decide`. Executions are spread over the
deployment's partitions (:mod:`eventstore.partitions`); any number of orchestrator processes
share them, each taking a fair share by lease (:mod:`orchestrator.partition_leases`,
:mod:`orchestrator.balance`) and serving each partition it holds with that partition's own
durable consumer (:mod:`orchestrator.partition_worker`). Correctness does not rest on the
leases: every decision is appended with a guard (:mod:`orchestrator.guards`) so a second
dispatch, skip or end of the same thing can never be stored, whoever writes it. The leases only
keep processes from doing the same work twice.

Per message, in stream order and serially per execution (different executions run
concurrently) an :class:`orchestrator.processor.EventProcessor` loads the state, folds the event
in, decides, appends with guards and acknowledges (:mod:`orchestrator.processor`); outcomes of
one execution that wait together are decided together, in one append (:mod:`orchestrator.batch`).

Recovery from a process that died is quick: leases are short (``lease_s``, 3 s), a process
serves a partition the moment it takes it, and the consumers' ``ack_wait`` is short too (3 s),
so what the dead process held comes back at about the same time. The schedules' ticks are made
by the holder of partition 0.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from nats.aio.client import Client as NatsClient

from eventstore.config import TepSettings
from eventstore.jetstream.consumer_metrics import forget_consumer, sample_consumer
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_kv, ensure_partitions
from eventstore.jetstream.settling import asking_again
from eventstore.partitions import partition_consumer, partition_of, partition_stream
from orchestrator.batch import LaneBatcher
from orchestrator.cache import StateCache
from orchestrator.config import OrchestratorConfig
from orchestrator.partition_leases import PartitionLeases
from orchestrator.partition_worker import PartitionWorker
from orchestrator.processor import EventProcessor, execution_of
from orchestrator.scheduler import Scheduler
from orchestrator.source_watch import SourceWatch

__all__ = ["Orchestrator", "execution_of"]

_log = logging.getLogger("tep.orchestrator")
_CLEANUP_TIMEOUT_S = 3.0


class Orchestrator:
    """One orchestrator process.

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
        self.leases: PartitionLeases | None = None
        self.partitions = 0
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
        self.batcher = LaneBatcher(self.processor, self.config.max_batch, self.config.max_deciding)
        self.scheduler = Scheduler(self.log, stats=self.stats, stall_s=self.config.lease_s)
        self.source_watch = SourceWatch(nc, partition_stream(settings.stream), stats=self.stats)
        self._workers: dict[int, PartitionWorker] = {}
        self._serving: TaskGroup | None = None

    @property
    def held(self) -> list[int]:
        """The partitions this process serves."""
        return sorted(self._workers)

    @property
    def is_leader(self) -> bool:
        """Whether this process serves at least one partition."""
        return bool(self._workers)

    def status(self) -> dict[str, Any]:
        """A health snapshot: role, partitions held, connection, counters."""
        return {
            "role": "orchestrator",
            "instance": self.instance_id,
            "leader": self.is_leader,
            "partitions": self.held,
            "partition_count": self.partitions,
            "members": self.leases.members() if self.leases else [],
            "connected": bool(self.nc.is_connected),
            "cached_executions": len(self.cache),
            "busy_executions": sum(w.busy_executions for w in self._workers.values()),
            **self.stats,
        }

    async def sample_metrics(self) -> None:
        """Sample the held partitions' consumer backlogs into the metrics."""
        stream = partition_stream(self.settings.stream)
        for partition in self.held:
            await sample_consumer(
                self.js, stream, partition_consumer(self.config.consumer, partition)
            )

    # ------------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Provision, take a fair share of the partitions and serve them. Runs until cancelled.

        Cancelling stops cleanly: undelivered and unfinished messages are given back to the
        consumers and the leases released, so the other processes take over at once.
        """
        self.partitions = await asking_again(
            lambda: ensure_partitions(self.js, self.settings), what="setting up the partitions"
        )
        kv = await asking_again(
            lambda: ensure_kv(self.js, self.config.lease_bucket, replicas=self.settings.replicas),
            what="setting up the lease bucket",
        )
        self.leases = PartitionLeases(
            kv,
            self.instance_id,
            self.partitions,
            lease_s=self.config.lease_s,
            renew_s=self.config.renew_s,
            serve=self._serve,
            stop=self._stop_serving,
        )
        _log.info(
            "orchestrator %s: %d partitions",
            self.instance_id,
            self.partitions,
            extra=self._ids(),
        )
        try:
            async with anyio.create_task_group() as serving:
                self._serving = self.processor.background = serving
                serving.start_soon(self.leases.run)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT_S):
                await self.leases.release_all()
            self._serving = self.processor.background = None

    def _ids(self) -> dict[str, Any]:
        return {"instance": self.instance_id, "partitions": self.held}

    async def _beside_partition_zero(self) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self.scheduler.run)
            group.start_soon(self.source_watch.run)

    def _serve(self, partition: int) -> None:
        assert self._serving is not None
        worker = PartitionWorker(
            self.nc,
            self.js,
            stream=partition_stream(self.settings.stream),
            log_stream=self.settings.stream,
            partition=partition,
            config=self.config,
            batcher=self.batcher,
            replicas=self.settings.replicas,
            also=self._beside_partition_zero if partition == 0 else None,
            fresh=partial(self.leases.fresh, partition) if self.leases else lambda: True,
        )
        self._workers[partition] = worker
        self._serving.start_soon(worker.run)
        _log.info("serving partition %s", partition, extra=self._ids())

    async def _stop_serving(self, partition: int) -> None:
        worker = self._workers.pop(partition, None)
        if worker is None:
            return
        await worker.stop()
        forget_consumer(partition_consumer(self.config.consumer, partition))
        # Another process may decide on its executions from now on; the others' stay cached.
        self.cache.drop_where(lambda e: partition_of(e, self.partitions) == partition)
        _log.info("stopped serving partition %s", partition, extra=self._ids())
