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

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping

import anyio
from anyio.abc import TaskStatus
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from eventstore.config import Settings
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.queues import ensure_queue_consumer
from eventstore.plan import DEFAULT_ACTION_TYPE
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


class _Pull:
    """The one outstanding pull request: how many messages it may still bring."""

    def __init__(self, wanted: int) -> None:
        self.remaining = wanted
        self.over = asyncio.Event()
        self.refusal: str | None = None


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
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        # Attempts run as plain asyncio tasks (cheaper than a task-group spawn per message);
        # run() owns them and cancels what is left when it ends.
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: AttemptRunner | None = None
        self._current: _Pull | None = None
        self.stats: Counter[str] = Counter()
        self.running = False

    @property
    def in_flight(self) -> int:
        """Requests being worked on right now."""
        return len(self._tasks)

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe to call more than once, from the loop's thread)."""
        self._stopping.set()
        self._slot_freed.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve the queue until :meth:`stop`; signals ``task_status`` once pulling."""
        js = self.nc.jetstream()
        consumer = await ensure_queue_consumer(js, self.settings, self.config.queue)
        info = await js.consumer_info(self.settings.stream, consumer)
        ack_wait = float(info.config.ack_wait or 30.0)
        http = HttpHandler(self._http_client, max_body_bytes=output_limit(self.log, self.config))
        self._runner = AttemptRunner(
            self.log, self.config, self._resolver(http), ack_wait_s=ack_wait, env=self._env
        )
        inbox = self.nc.new_inbox()
        subscription = await self.nc.subscribe(
            inbox, cb=self._on_message, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
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
            task_status.started()
            while not self._stopping.is_set():
                if self.in_flight >= self.config.concurrency:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                await self._pull(inbox, pull_subject)
            await self._drain()
        finally:
            self.running = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await subscription.unsubscribe()
                await self._cancel_remaining()
                if self._own_client:
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

    async def _pull(self, inbox: str, pull_subject: str) -> None:
        """Ask for one message per free slot; return when the pull is over.

        Messages are started by :meth:`_on_message` the moment they arrive. The pull is over
        when all were delivered, or the server ends it (expired, or refused), or, should that
        word never come, shortly after its expiry.
        """
        wanted = self.config.concurrency - self.in_flight
        expires = self.config.pull_expires_s
        pull = self._current = _Pull(wanted)
        request = {"batch": wanted, "expires": int(expires * 1_000_000_000)}
        await self.nc.publish(pull_subject, json.dumps(request).encode(), reply=inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pull.over.wait(), expires + _PULL_SLACK_S)
        if pull.refusal is not None:
            # 409 and friends (consumer deleted, leader change, too many waiting pulls), or 503
            # when the consumer is gone: pause, and make sure the consumer exists again.
            _log.warning("pull refused: %s", pull.refusal, extra={"queue": self.config.queue})
            await asyncio.sleep(_REFUSED_PAUSE_S)
            try:
                await ensure_queue_consumer(self.nc.jetstream(), self.settings, self.config.queue)
            except Exception as exc:
                _log.warning("queue consumer check failed: %s", exc)

    async def _on_message(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get(_STATUS) if headers else None
        pull = self._current
        if status is not None:
            if status != _HEARTBEAT and pull is not None:
                if status not in _PULL_OVER:
                    pull.refusal = f"{status} {(headers or {}).get('Description', '')}"
                pull.over.set()
            return
        assert self._runner is not None
        task = asyncio.get_running_loop().create_task(self._run_one(self._runner, msg))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        if pull is not None:
            pull.remaining -= 1
            if pull.remaining <= 0:
                pull.over.set()

    async def _run_one(self, runner: AttemptRunner, msg: Msg) -> None:
        disposition: Disposition | str = "error"
        try:
            disposition = await runner.run(msg)
        except Exception:
            _log.exception("request processing failed", extra={"subject": msg.subject})
        finally:
            self.stats[disposition] += 1

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()

    async def _drain(self) -> None:
        """Give in-flight attempts the grace period; what is left is handed back (nak)."""
        if not self._tasks:
            return
        _log.info(
            "stopping: waiting for %d in-flight requests",
            self.in_flight,
            extra={"queue": self.config.queue},
        )
        await asyncio.wait(set(self._tasks), timeout=self.config.shutdown_grace_s)
        if self._tasks:
            _log.warning(
                "stopping: %d requests handed back to the queue",
                self.in_flight,
                extra={"queue": self.config.queue},
            )

    async def _cancel_remaining(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
