"""The projector: tails the whole log and folds it into the live view bucket.

Each projector process reads the log in order from the view's checkpoint (an ordered consumer,
so one execution's events are never split between replicas or reordered by redelivery) and
commits through a :class:`ViewUpdater`; the checkpoint travels in the same atomic batch as the
states, so a restart resumes exactly where the view stands. Any number of replicas may run:
compare-and-set makes the one that falls behind re-read instead of overwrite. When a rebuild
switches the view pointer, the projector starts over on the new bucket from its checkpoint.

Following starts over from the checkpoint too, within a fraction of a second, whenever the
connection was re-established (a restarted server has lost the ordered consumer, and an answer
to a write sent before the drop never comes), and whenever the log holds events past the
checkpoint but nothing was applied for ``stall_s`` (:mod:`projections.progress`). ``/healthz``
says 503 while the projector is stalled like that, not only while it is disconnected.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import anyio
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue

from eventstore.config import TepSettings
from eventstore.jetstream.deadletter import dead_letter
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from eventstore.jetstream.settling import asking_again
from projections.buckets import POINTER_KEY, ViewPointer, ensure_current_view, read_pointer
from projections.metrics import batch_applied, follow_pending
from projections.poison import Poison
from projections.progress import DEFAULT_STALL_S, ProgressWatch, ProjectionRestart
from projections.updater import ViewUpdater

__all__ = ["DEFAULT_BATCH", "DEFAULT_STALL_S", "ProjectionRestart", "Projector", "value_limit"]

_log = logging.getLogger("tep.projector")

DEFAULT_BATCH = 4096
_HEADER_ROOM = 2048
_MAX_BACKOFF_S = 5.0
_FIRST_BACKOFF_S = 0.2
_PACE_ABOVE_S = 0.01
_PACE_STATE_BYTES = 64 * 1024
_PACE_FACTOR = 3.0
_MAX_PACE_S = 0.5


def value_limit(nc: NatsClient, settings: TepSettings) -> int:
    """The largest value a view key may hold on this connection."""
    limit = min(nc.max_payload or settings.max_msg_bytes, settings.max_msg_bytes)
    return limit - _HEADER_ROOM


class Projector:
    """Keeps the live view up to date. Run :meth:`run` in a task; cancel it to stop.

    Example:
        >>> projector = Projector(nc, TepSettings())  # doctest: +SKIP
        >>> async with anyio.create_task_group() as tg:  # doctest: +SKIP
        ...     tg.start_soon(projector.run)
    """

    def __init__(
        self,
        nc: NatsClient,
        settings: TepSettings | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
        cache_size: int = 10_000,
        stall_s: float = DEFAULT_STALL_S,
        write_timeout_s: float = 5.0,
    ) -> None:
        self.nc = nc
        self.settings = settings or TepSettings()
        self.log = EventLog(nc, self.settings)
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.write_timeout_s = write_timeout_s
        self.progress = ProgressWatch(nc, self.log, stall_s)
        self.running = False
        self.generation: int | None = None
        self.updater: ViewUpdater | None = None
        self.last_error: str | None = None
        self.restarts = 0
        self._progress = anyio.Event()
        follow_pending(lambda: self.progress.log_last_sequence - self.checkpoint)

    @property
    def checkpoint(self) -> int:
        """The last stream sequence applied to the live view by anyone (as this process knows)."""
        return self.updater.checkpoint if self.updater is not None else 0

    async def wait_for(self, sequence: int) -> None:
        """Wait until this projector has applied the log up to ``sequence`` (no timeout)."""
        while self.checkpoint < sequence:
            await self._progress.wait()

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Health document: healthy while connected, following the log and keeping up with it
        (not ``stalled``: events past the checkpoint and nothing applied for ``stall_s``)."""
        updater = self.updater
        stalled = self.progress.stalled
        healthy = bool(self.nc.is_connected and self.running and not stalled)
        return healthy, {
            "role": "projector",
            "nats_connected": bool(self.nc.is_connected),
            "running": self.running,
            "stalled": stalled,
            "view_generation": self.generation,
            "checkpoint": self.checkpoint,
            "log_last_sequence": self.progress.log_last_sequence,
            "events_applied": updater.events_applied if updater else 0,
            "commits": updater.commits if updater else 0,
            "conflicts": updater.conflicts if updater else 0,
            "poisoned": updater.poisoned if updater else 0,
            "restarts": self.restarts,
            "last_error": self.last_error,
        }

    async def run(self) -> None:
        """Project forever: survive errors (logged, retried with backoff) and view switches."""
        await self._provision()
        backoff = _FIRST_BACKOFF_S
        while True:
            before = self.updater
            try:
                await self._run_generation()
                backoff = _FIRST_BACKOFF_S
            except Exception as exc:
                self.running = False
                self.restarts += 1
                current = self.updater
                if current is not None and current is not before and current.events_applied:
                    backoff = _FIRST_BACKOFF_S  # it made progress: a new trouble, not the same
                self.last_error = _describe(exc)
                if isinstance(_leaf(exc), ProjectionRestart):
                    _log.warning("following the log again: %s", self.last_error)
                    backoff = 0.0
                else:
                    _log.error("projection interrupted, restarting: %s", self.last_error)
                await anyio.sleep(backoff)
                backoff = min(max(backoff * 2, _FIRST_BACKOFF_S), _MAX_BACKOFF_S)

    async def _provision(self) -> None:
        """Provision the log, asking again while JetStream is settling (a refused permission
        is raised)."""

        def note(exc: Exception) -> None:
            self.last_error = _describe(exc)

        await asking_again(
            lambda: ensure_log(self.log.js, self.settings),
            what="provisioning the log",
            on_error=note,
        )

    async def _run_generation(self) -> None:
        """Follow the log into the current view until the pointer moves (then return)."""
        meta, pointer, kv = await ensure_current_view(self.log.js, self.settings)
        updater = ViewUpdater(
            self.nc,
            kv,
            pointer.bucket,
            value_limit=value_limit(self.nc, self.settings),
            cache_size=self.cache_size,
            on_poison=self._dead_letter,
            write_timeout_s=self.write_timeout_s,
        )
        await updater.load()
        self.updater = updater
        self.generation = pointer.generation
        _log.info(
            "projecting into %s from sequence %d",
            pointer.bucket,
            updater.checkpoint + 1,
            extra={"view": pointer.bucket},
        )
        async with anyio.create_task_group() as group:

            async def until_switched() -> None:
                await self._wait_for_switch(meta, pointer)
                group.cancel_scope.cancel()

            group.start_soon(until_switched)
            group.start_soon(self.progress.watch, lambda: updater.checkpoint)
            self.running = True
            try:
                await self._follow(updater)
            finally:
                self.running = False
                await updater.close()

    async def _follow(self, updater: ViewUpdater) -> None:
        started = time.monotonic()
        applied_at_start = updater.events_applied
        async for batch in self.log.replay_batches(
            updater.checkpoint + 1,
            follow=True,
            buffer=4 * self.batch_size,
            max_batch=self.batch_size,
        ):
            began = time.monotonic()
            with self.progress.applying():
                await updater.apply(batch)
            batch_applied(batch)
            self._progress.set()
            self._progress = anyio.Event()
            await self._pace(len(batch), time.monotonic() - began, updater.largest_write)
            if _log.isEnabledFor(logging.DEBUG):
                elapsed = time.monotonic() - started
                _log.debug(
                    "applied %d events (%.0f/s), checkpoint %d",
                    updater.events_applied,
                    (updater.events_applied - applied_at_start) / max(elapsed, 1e-9),
                    updater.checkpoint,
                )

    async def _pace(self, records: int, took_s: float, largest_write: int) -> None:
        """After a slow batch that rewrote a large state and left nothing behind, let the next
        one gather more events.

        The cost of a batch is mostly rewriting the states it touched, whole: a large one
        (a for-each of thousands of items) changed by a few events at a time would be encoded
        and stored many times a second. Pausing for a multiple of the time the batch took
        caps that share of the projector's time, and the view lags a fraction of a second
        more. Batches of small states are not paused: many executions at once make a batch
        slow by their number, and a pause would only add to every one's lag. A full batch
        means a backlog: it is worked off without pause.
        """
        slow = took_s > _PACE_ABOVE_S and largest_write >= _PACE_STATE_BYTES
        if records < self.batch_size and slow:
            await anyio.sleep(min(took_s * _PACE_FACTOR, _MAX_PACE_S))

    async def _wait_for_switch(self, meta: KeyValue, pointer: ViewPointer) -> None:
        watcher = await meta.watch(POINTER_KEY)
        try:
            async for entry in watcher:
                if entry is None or not entry.value:
                    continue
                current = await read_pointer(meta)
                if current is not None and current.generation != pointer.generation:
                    _log.info(
                        "view switched to generation %d; following it",
                        current.generation,
                        extra={"view": current.bucket},
                    )
                    return
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _dead_letter(self, poison: Poison) -> None:
        await dead_letter(
            self.log.js,
            poison.record,
            role="projector",
            stream=self.settings.stream,
            reason=f"{poison.reason}: {poison.detail}",
            reason_code=poison.reason,
            max_bytes=self.settings.max_msg_bytes,
        )


def _leaf(exc: BaseException) -> BaseException:
    """The one error inside (nested) task-group exception groups, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """``Type: message`` of the error, or of each error a task group collected."""
    leaf = _leaf(exc)
    if isinstance(leaf, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in leaf.exceptions)
    return f"{type(leaf).__name__}: {leaf}"
