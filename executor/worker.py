"""The executor process's loop: pull requests from the queue's durable consumer and run them.

Any number of executors bind to the same durable consumer (``queue-<queue>``) and compete for
its messages; the consumer's ``max_ack_pending`` is the queue's concurrency limit across all of
them. Each executor keeps at most ``concurrency`` requests in hand: it asks the server for
exactly as many messages as it has free slots, with one pull request outstanding at a time, and
starts each message the moment it arrives.

Stopping (:meth:`Executor.stop`, e.g. on SIGTERM): no new pulls; messages of the pull already
granted still run; in-flight attempts get ``shutdown_grace_s`` to finish, the rest are handed
back to the queue (nak) for another executor.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping

import anyio
from anyio.abc import TaskGroup, TaskStatus
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventstore.config import Settings
from eventstore.log import EventLog
from eventstore.plan import DEFAULT_ACTION_TYPE
from eventstore.queues import ensure_queue_consumer
from executor.attempt import AttemptRunner, Disposition, output_limit
from executor.config import ExecutorConfig
from executor.handlers import Handler, HandlerRegistry, default_registry
from executor.http_client import AiohttpClient, HttpClient
from executor.http_handler import HttpHandler

__all__ = ["Executor"]

_log = logging.getLogger("tep.executor")

_STATUS = "Status"
_HEARTBEAT = "100"
_PULL_OVER = frozenset({"404", "408"})
_PULL_SLACK_S = 1.0
_REFUSED_PAUSE_S = 0.25


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
        settings: Settings,
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
            max_connections=max(self.config.concurrency, 10)
        )
        self._env = env
        self._stopping = anyio.Event()
        self._changed = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self.in_flight = 0
        self.stats: Counter[str] = Counter()
        self.running = False

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe to call more than once, from the loop's thread)."""
        self._stopping.set()
        self._changed.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve the queue until :meth:`stop`; signals ``task_status`` once pulling."""
        js = self.nc.jetstream()
        consumer = await ensure_queue_consumer(js, self.settings, self.config.queue)
        info = await js.consumer_info(self.settings.stream, consumer)
        ack_wait = float(info.config.ack_wait or 30.0)
        http = HttpHandler(self._http_client, max_body_bytes=output_limit(self.log, self.config))
        runner = AttemptRunner(
            self.log, self.config, self._resolver(http), ack_wait_s=ack_wait, env=self._env
        )
        inbox = self.nc.new_inbox()
        subscription = await self.nc.subscribe(inbox, pending_msgs_limit=-1, pending_bytes_limit=-1)
        pull_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.settings.stream}.{consumer}"
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
            async with anyio.create_task_group() as group:
                task_status.started()
                while not self._stopping.is_set():
                    if self.in_flight >= self.config.concurrency:
                        await self._wait_for_change()
                        continue
                    await self._pull(group, runner, subscription, inbox, pull_subject)
                await self._drain(group)
        finally:
            self.running = False
            await subscription.unsubscribe()
            if self._own_client:
                await self._http_client.aclose()
            _log.info("executor stopped", extra={"queue": self.config.queue, **self.stats})

    def _resolver(self, http: HttpHandler) -> Callable[[str], Handler | None]:
        registry = self.registry

        def resolve(action_type: str) -> Handler | None:
            if action_type == DEFAULT_ACTION_TYPE:
                return http
            return registry.get(action_type)

        return resolve

    async def _pull(
        self,
        group: TaskGroup,
        runner: AttemptRunner,
        subscription: Subscription,
        inbox: str,
        pull_subject: str,
    ) -> None:
        """One pull request for every free slot; start each message as it arrives."""
        wanted = self.config.concurrency - self.in_flight
        expires = self.config.pull_expires_s
        request = {"batch": wanted, "expires": int(expires * 1_000_000_000)}
        await self.nc.publish(pull_subject, json.dumps(request).encode(), reply=inbox)
        deadline = time.monotonic() + expires + _PULL_SLACK_S
        received = 0
        while received < wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                msg = await subscription.next_msg(timeout=remaining)
            except TimeoutError:
                return
            headers = msg.headers or {}
            status = headers.get(_STATUS)
            if status is not None:
                if status == _HEARTBEAT:
                    continue
                if status not in _PULL_OVER:
                    # 409 and friends (consumer deleted, leader change, too many waiting).
                    _log.warning("pull refused: %s %s", status, headers.get("Description", ""))
                    await anyio.sleep(_REFUSED_PAUSE_S)
                return
            received += 1
            self.in_flight += 1
            self._idle = anyio.Event()
            group.start_soon(self._run_one, runner, msg)

    async def _run_one(self, runner: AttemptRunner, msg: Msg) -> None:
        disposition: Disposition | str = "error"
        try:
            disposition = await runner.run(msg)
        except Exception:
            _log.exception("request processing failed", extra={"subject": msg.subject})
        finally:
            self.stats[disposition] += 1
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()
            self._changed.set()

    async def _wait_for_change(self) -> None:
        await self._changed.wait()
        self._changed = anyio.Event()

    async def _drain(self, group: TaskGroup) -> None:
        """Give in-flight attempts the grace period, then hand the rest back to the queue."""
        if self.in_flight:
            _log.info(
                "stopping: waiting for %d in-flight requests",
                self.in_flight,
                extra={"queue": self.config.queue},
            )
            with anyio.move_on_after(self.config.shutdown_grace_s):
                await self._idle.wait()
        if self.in_flight:
            _log.warning(
                "stopping: %d requests handed back to the queue",
                self.in_flight,
                extra={"queue": self.config.queue},
            )
        group.cancel_scope.cancel()
