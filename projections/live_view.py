"""The live view as a reader sees it: the bucket the pointer names, followed across switches.

A reader keeps the bucket it resolved until the pointer moves. A publish on the pointer's key
is a hint to re-read it; so is a miss or a vanished bucket, since a rebuild may just have
switched readers to a new generation and deleted the old one. Each read therefore tries the
bucket in use, re-reads the pointer when that fails, and tries once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue

from eventstore.config import TepSettings
from eventstore.jetstream.kv_protocol import kv_subject
from eventstore.jetstream.scan import scan_keys
from eventstore.state import ExecutionState
from projections.buckets import (
    META_BUCKET,
    POINTER_KEY,
    bucket_name,
    ensure_current_view,
    read_pointer,
)
from projections.errors import ViewTimeoutError
from projections.view import (
    CHECKPOINT_KEY,
    STATS_KEY,
    ExecutionSummary,
    ViewStats,
    decode_checkpoint,
    decode_state,
    decode_stats,
    exec_key,
    summaries_of,
)

__all__ = ["LiveView"]

_VIEW_GONE = (NotFoundError, NoRespondersError, ServiceUnavailableError)
_TRIES = 2
_WATCH_POLL_S = 1.0


class LiveView:
    """Reads of the live view bucket; call :meth:`open` first and :meth:`close` last.

    Args:
        nc: the connection.
        js: its JetStream context.
    """

    def __init__(self, nc: NatsClient, js: JetStreamContext) -> None:
        self.nc = nc
        self.js = js
        self.generation = 0
        """The generation in use (0 before :meth:`open`)."""
        self._meta: KeyValue | None = None
        self._view: KeyValue | None = None
        self._pointer_sub: Subscription | None = None

    async def open(self, settings: TepSettings) -> None:
        """Resolve the live view (creating the first one if none) and follow its switches."""
        # Subscribe before reading the pointer, so a switch in between is not missed.
        self._pointer_sub = await self.nc.subscribe(
            kv_subject(META_BUCKET, POINTER_KEY), cb=self._on_pointer
        )
        self._meta, pointer, self._view = await ensure_current_view(self.js, settings)
        self.generation = pointer.generation

    async def close(self) -> None:
        """Stop following the pointer."""
        if self._pointer_sub is not None:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await self._pointer_sub.unsubscribe()
            self._pointer_sub = None

    # ----------------------------------------------------------------- reads

    async def state(self, execution_id: str) -> ExecutionState | None:
        """The execution's state in the view, or ``None`` if the view has none."""
        for _ in range(_TRIES):
            view = await self.bucket()
            try:
                entry = await view.get(exec_key(execution_id))
            except KeyNotFoundError:
                if await self.refresh():
                    continue  # the view was switched under us: look in the new one
                return None
            except _VIEW_GONE:
                await self.refresh()
                continue
            return decode_state(entry.value or b"")
        return None

    async def summaries(self, pattern: str) -> list[ExecutionSummary]:
        """The index entries matching ``pattern``, oldest submission first."""
        for _ in range(_TRIES):
            await self.bucket()
            try:
                entries = await scan_keys(self.nc, bucket_name(self.generation), pattern)
            except _VIEW_GONE:
                await self.refresh()
                continue
            return summaries_of(entries, pattern)
        return []

    async def stats(self) -> ViewStats:
        """The view's global counters."""
        view = await self.bucket()
        try:
            entry = await view.get(STATS_KEY)
        except KeyNotFoundError:
            return ViewStats()
        return decode_stats(entry.value or b"{}")

    async def checkpoint(self) -> int:
        """The last stream sequence the view has applied."""
        for _ in range(_TRIES):
            view = await self.bucket()
            try:
                entry = await view.get(CHECKPOINT_KEY)
            except KeyNotFoundError:
                return 0
            except _VIEW_GONE:
                await self.refresh()
                continue
            return decode_checkpoint(entry.value or b"")
        return 0

    async def wait_for_sequence(self, sequence: int, timeout: float) -> None:
        """Wait until the view has applied stream sequence ``sequence``.

        Raises:
            ViewTimeoutError: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            reached = await self.checkpoint()
            if reached >= sequence:
                return
            if time.monotonic() >= deadline:
                raise ViewTimeoutError(
                    f"the view has applied up to sequence {reached}, not {sequence}, after "
                    f"{timeout:g}s: is a projector running (tep projector)?"
                )
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.05)

    async def states(self, execution_id: str) -> AsyncGenerator[ExecutionState, None]:
        """States of the execution's key as they are written, following view switches.

        Never ends by itself.
        """
        while True:
            generation = self.generation
            view = await self.bucket()
            watcher = await view.watch(exec_key(execution_id))
            try:
                while generation == self.generation:
                    try:
                        entry = await watcher.updates(timeout=_WATCH_POLL_S)  # type: ignore[no-untyped-call]
                    except NatsTimeoutError:
                        continue
                    if entry is None or not entry.value or entry.operation is not None:
                        continue
                    yield decode_state(entry.value)
            finally:
                with contextlib.suppress(Exception):  # the bucket may be gone already
                    await watcher.stop()  # type: ignore[no-untyped-call]

    # --------------------------------------------------------------- pointer

    async def bucket(self) -> KeyValue:
        """The bucket of the generation in use.

        Raises:
            RuntimeError: :meth:`open` was not called.
        """
        self._require_open()
        if self._view is None:
            self._view = await self.js.key_value(bucket_name(self.generation))
        return self._view

    async def refresh(self) -> bool:
        """Re-read the pointer; ``True`` if it names another view than the one in use."""
        meta = self._require_open()
        try:
            pointer = await read_pointer(meta)
        except msgspec.DecodeError:
            return False
        if pointer is None or pointer.generation == self.generation:
            return False
        self.generation = pointer.generation
        self._view = None
        return True

    def _require_open(self) -> KeyValue:
        if self._meta is None:
            raise RuntimeError("StateManager is not open: use StateManager.connect() or open()")
        return self._meta

    async def _on_pointer(self, msg: Msg) -> None:
        # A publish on the pointer's subject is only a hint (it may have lost its
        # compare-and-set): read what the bucket actually holds.
        try:
            await self.refresh()
        except Exception:  # the next miss re-reads it anyway
            return
