"""The executor process's loop: pull requests from the queue's durable consumer and run them.

Any number of executors bind to the same durable consumer (``queue-<queue>``) and compete for
its messages; the consumer's ``max_ack_pending`` is the queue's concurrency limit across all of
them. Each executor keeps at most ``concurrency`` requests in hand: its pull feed
(:class:`eventstore.jetstream.pull.PullFeed`) has that much credit, and starts each message
the moment it arrives.

At start the consumer's ack wait is set to the executor's ``ack_wait_s`` (how soon a crashed
executor's requests go to another one); a follower of ``action.cancelled`` aborts the
attempts of cancelled actions (:mod:`executor.cancellations`), and the process answers other
executors that ask whether it still runs an attempt (:mod:`executor.probe`).

Stopping (:meth:`Executor.stop`, e.g. on SIGTERM): no new pulls, and what still arrives for
the pulls already granted is handed back; in-flight attempts get ``shutdown_grace_s`` (or the
pulls' end, if later) to finish, the rest are handed back to the queue (nak) for another
executor.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial

import anyio
from anyio.abc import TaskGroup, TaskStatus
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import ConsumerInfo

from eventstore.config import TepSettings
from eventstore.events import ActionExecuteRequested
from eventstore.jetstream.consumer_metrics import sample_consumer
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.pull import PullFeed
from eventstore.jetstream.queues import consumer_name, ensure_queue_consumer
from eventstore.jetstream.settling import asking_again
from eventstore.metrics import count_consumed, label_cache
from eventstore.plan import DEFAULT_ACTION_TYPE
from executor.attempt import AttemptRunner
from executor.cancellations import follow_cancellations
from executor.config import ExecutorConfig
from executor.dispositions import Disposition
from executor.handler_call import output_limits
from executor.handlers import Handler, HandlerRegistry, default_registry
from executor.http_client import AiohttpClient, HttpClient
from executor.http_handler import HttpHandler
from executor.metrics import ACTIONS_IN_FLIGHT, DELIVERIES
from executor.probe import answer_probes

__all__ = ["Executor"]

_log = logging.getLogger("tep.executor")

_REFUSED_PAUSE_S = 0.25
_REQUESTED = str(ActionExecuteRequested.__struct_config__.tag)
_CLEANUP_TIMEOUT_S = 5.0


class Executor:
    """Serves one queue: competing consumer, bounded concurrency, clean stop.

    Example:
        >>> executor = Executor(nc, settings, ExecutorConfig(queue="http"))  # doctest: +SKIP
        >>> async with anyio.create_task_group() as tg:  # doctest: +SKIP
        ...     await tg.start(executor.run)
        ...     ...
        ...     executor.stop()
    """

    def __init__(
        self,
        nc: NatsClient,
        settings: TepSettings,
        config: ExecutorConfig | None = None,
        *,
        registry: HandlerRegistry | None = None,
        http_client: HttpClient | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.nc = nc
        self.settings = settings
        self.config = config or ExecutorConfig()
        self.registry = registry or default_registry
        self.log = EventLog(nc, settings)
        self._own_client = http_client is None
        self._http_client = http_client or AiohttpClient(
            max_connections=max(self.config.concurrency, 10),
            max_redirects=self.config.max_redirects,
            policy=self.config.target_policy(),
        )
        self._env = env
        self._stop_requested = False
        self._stop: anyio.Event | None = None
        self._idle: anyio.Event | None = None
        self._attempts: TaskGroup | None = None
        self._runner: AttemptRunner | None = None
        self._feed: PullFeed | None = None
        self._in_flight = 0
        self.stats: Counter[str] = Counter()
        self.running = False
        self._consumer: str | None = None
        self._deliveries = partial(label_cache(DELIVERIES), self.config.queue)

    @property
    def in_flight(self) -> int:
        """Requests being worked on right now."""
        return self._in_flight

    async def sample_metrics(self) -> None:
        """Sample the queue consumer's backlog into the metrics (``tep_consumer_pending``...)."""
        if self._consumer is not None:
            await sample_consumer(self.nc.jetstream(), self.settings.stream, self._consumer)

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe to call more than once, from the loop's thread)."""
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve the queue until :meth:`stop`; signals ``task_status`` once pulling."""
        self._stop = anyio.Event()
        if self._stop_requested:
            self._stop.set()
        consumer, info = await asking_again(
            self._consumer_info, what=f"setting up queue {self.config.queue}'s consumer"
        )
        self._consumer = consumer
        ACTIONS_IN_FLIGHT.labels(self.config.queue).set_function(lambda: self._in_flight)
        # Another executor may have set a shorter one since: heartbeat for whichever is less.
        ack_wait = min(
            float(info.config.ack_wait or self.config.ack_wait_s), self.config.ack_wait_s
        )
        # A body is read no further than the hard cap: a larger one fails, whatever its size.
        max_body_bytes = output_limits(self.log, self.config).max_bytes
        http = HttpHandler(self._http_client, max_body_bytes=max_body_bytes)
        runner = self._runner = AttemptRunner(
            self.log, self.config, self._resolver(http), ack_wait_s=ack_wait, env=self._env
        )
        feed = self._feed = PullFeed(
            self.nc,
            self.settings.stream,
            consumer,
            self._start,
            credit=self.config.concurrency,
            expires_s=self.config.pull_expires_s,
            refusal_pause_s=_REFUSED_PAUSE_S,
            on_refused=self._recreate_consumer,
        )
        _log.info(
            "executor serving queue %s",
            self.config.queue,
            extra={
                "queue": self.config.queue,
                "concurrency": self.config.concurrency,
                "executor_id": self.config.executor_id,
                "types": [DEFAULT_ACTION_TYPE, *self.registry.types()],
            },
        )
        self.running = True
        try:
            async with anyio.create_task_group() as attempts:
                self._attempts = attempts
                attempts.start_soon(runner.heartbeats.run)
                await attempts.start(follow_cancellations, self.log, runner.cancel_action)
                await attempts.start(
                    answer_probes, self.nc, self.config.executor_id, runner.holders.running
                )
                async with anyio.create_task_group() as feeding:
                    await feeding.start(feed.run)
                    task_status.started()
                    await self._stop.wait()
                    feed.stop()
                    await self._drain()
                # Only once the feed's requests are over: a request handed back earlier would
                # come straight back to them.
                attempts.cancel_scope.cancel()
        finally:
            self.running = False
            self._attempts = None
            if self._own_client:
                with anyio.move_on_after(_CLEANUP_TIMEOUT_S, shield=True):
                    await self._http_client.aclose()
            _log.info(
                "executor stopped",
                extra={"queue": self.config.queue, "handled": dict(self.stats)},
            )

    def _resolver(self, http: HttpHandler) -> Callable[[str], Handler | None]:
        registry = self.registry

        def resolve(action_type: str) -> Handler | None:
            if action_type == DEFAULT_ACTION_TYPE:
                return http
            return registry.get(action_type)

        return resolve

    async def _recreate_consumer(self) -> None:
        await self._ensure_consumer()

    async def _consumer_info(self) -> tuple[str, ConsumerInfo]:
        info = await self._ensure_consumer()
        return info.name or consumer_name(self.config.queue), info

    async def _ensure_consumer(self) -> ConsumerInfo:
        """At start, and after a refused pull (consumer deleted, leader change...): make sure
        the queue's consumer exists, with our ack wait."""
        return await ensure_queue_consumer(
            self.nc.jetstream(), self.settings, self.config.queue, ack_wait_s=self.config.ack_wait_s
        )

    def _start(self, msg: Msg) -> None:
        assert self._attempts is not None and self._runner is not None
        count_consumed("executor", _REQUESTED)
        self._in_flight += 1
        self._attempts.start_soon(self._run_one, self._runner, msg)

    async def _run_one(self, runner: AttemptRunner, msg: Msg) -> None:
        disposition: Disposition | str = "error"
        try:
            disposition = await runner.run(msg)
        except Exception:
            _log.exception("request processing failed", extra={"subject": msg.subject})
        finally:
            self.stats[disposition] += 1
            self._deliveries(disposition).inc()
            self._in_flight -= 1
            if self._feed is not None:
                self._feed.release()
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def _drain(self) -> None:
        """Give in-flight attempts the grace period; what is left is handed back (nak)."""
        if not self._in_flight:
            return
        _log.info(
            "stopping: waiting for %d in-flight requests",
            self._in_flight,
            extra={"queue": self.config.queue},
        )
        self._idle = anyio.Event()
        with anyio.move_on_after(self.config.shutdown_grace_s):
            await self._idle.wait()
        if self._in_flight:
            _log.warning(
                "stopping: %d requests handed back to the queue",
                self._in_flight,
                extra={"queue": self.config.queue},
            )
