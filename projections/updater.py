"""Folding log records into a view bucket: coalesced, idempotent, all-or-nothing per batch.

The projector and the rebuild both feed raw records to a :class:`ViewUpdater`. It folds every
event with :func:`eventstore.fold.apply` (the one fold), keeps the touched states in memory and
writes each execution's key once per batch, together with the index entries whose status
changed, the global counters and the checkpoint, in one atomic batch with compare-and-set on
every key that must not have moved. When another writer got there first the whole batch is
refused; the updater re-reads what it touched and folds the same records again (events at or
below a state's ``last_sequence`` change nothing), so replicas and redeliveries never
double-count. What one batch takes, folds and writes is worked out in
:mod:`projections.view_batch`; this module reads and commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from eventstore.errors import TepError
from eventstore.events import Event, PlanSubmitted
from eventstore.jetstream.batch import wait_answered
from eventstore.jetstream.kv_batch import AtomicWriter, KvWrite, WriteConflictError, wait_stored
from eventstore.jetstream.kv_protocol import kv_stream
from eventstore.records import RawRecord
from projections.poison import Poison, PoisonHandler, PoisonReason
from projections.view import (
    CHECKPOINT_KEY,
    STATS_KEY,
    ViewStats,
    decode_checkpoint,
    decode_state,
    decode_stats,
    encode_checkpoint,
    encode_stats,
    exec_key,
)
from projections.view_batch import (
    CachedState,
    RecordRange,
    Touched,
    fold_range,
    next_range,
    state_writes,
    stats_delta,
)

__all__ = ["Poison", "PoisonHandler", "PoisonReason", "ViewUpdater"]

_MAX_CONFLICT_RETRIES = 50


class ViewUpdater:
    """Folds records into one view bucket. Not safe for concurrent use by several tasks.

    Args:
        nc: the NATS connection (atomic batches are published on it).
        kv: the view bucket.
        value_limit: the largest value a key may hold (message size minus header room).
        cache_size: how many non-terminal states to keep in memory between batches.
        on_poison: awaited for each record the view cannot take, before the batch that
            passes it is committed.
        pipeline: for a writer that is alone on the bucket (a rebuild): how many batches may
            be on their way to the server while the next is folded. Their revisions are
            predicted; if anyone else writes to the bucket, a batch fails and with it every
            later one (nothing half-applied), and :meth:`flush` or the next batch raises.
            ``0`` (the default) waits for each batch and retries conflicts.
        write_timeout_s: how long to wait for the answer to one batch (not pipelined); a
            write whose answer was lost (the server restarted) fails after this, and the
            caller starts over from the bucket's checkpoint.

    After an exception other than a conflict the in-memory states may be ahead of the bucket:
    discard the updater and start a new one from the bucket's checkpoint.
    """

    def __init__(
        self,
        nc: NatsClient,
        kv: KeyValue,
        bucket: str,
        *,
        value_limit: int,
        cache_size: int = 10_000,
        on_poison: PoisonHandler | None = None,
        pipeline: int = 0,
        write_timeout_s: float = 30.0,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=30.0)
        self.kv = kv
        self.bucket = bucket
        self.value_limit = value_limit
        self.cache_size = cache_size
        self.on_poison = on_poison
        self.checkpoint = 0
        self.stats = ViewStats()
        self.events_applied = 0
        self.commits = 0
        self.conflicts = 0
        self.poisoned = 0
        self.largest_write = 0
        """The largest state (bytes) the last :meth:`apply` wrote."""
        self._checkpoint_revision = 0
        self._stats_revision = 0
        self._cache: dict[str, CachedState] = {}
        self._writer = AtomicWriter(nc, bucket)
        self._started = False
        self.pipeline = pipeline
        self.write_timeout_s = write_timeout_s
        self._in_flight: list[tuple[asyncio.Future[int], int]] = []
        self._next_revision = 0

    async def load(self) -> None:
        """Read the checkpoint and counters from the bucket (call before the first batch)."""
        if not self._started:
            await self._writer.start()
            self._started = True
        if self.pipeline:
            info = await self.js.stream_info(kv_stream(self.bucket))
            self._next_revision = int(info.state.last_seq) + 1
        self.checkpoint, self._checkpoint_revision = 0, 0
        self.stats, self._stats_revision = ViewStats(), 0
        try:
            entry = await self.kv.get(CHECKPOINT_KEY)
            self.checkpoint = decode_checkpoint(entry.value or b"")
            self._checkpoint_revision = entry.revision or 0
        except KeyNotFoundError:
            pass
        try:
            entry = await self.kv.get(STATS_KEY)
            self.stats = decode_stats(entry.value or b"{}")
            self._stats_revision = entry.revision or 0
        except KeyNotFoundError:
            pass

    async def close(self) -> None:
        """Stop listening for answers (batches still on their way are not awaited)."""
        await self._writer.close()
        self._started = False

    async def flush(self) -> None:
        """Wait until every batch sent has been stored (pipelined mode).

        Raises:
            TepError: a batch was refused: someone else wrote to the bucket.
        """
        await self._settle(0)

    async def _settle(self, limit: int) -> None:
        while self._in_flight and (len(self._in_flight) > limit or self._in_flight[0][0].done()):
            future, predicted = self._in_flight.pop(0)
            try:
                first = await wait_stored(future)
            except WriteConflictError as exc:
                raise TepError(
                    f"bucket {self.bucket} was written by someone else meanwhile ({exc})"
                ) from exc
            if first != predicted:
                raise TepError(
                    f"bucket {self.bucket} was written by someone else meanwhile "
                    f"(revision {first}, expected {predicted})"
                )

    async def apply(self, records: Sequence[RawRecord]) -> None:
        """Fold ``records`` (in log order) into the bucket, committing one or more batches."""
        self.largest_write = 0
        start = 0
        while start < len(records):
            start, batch = next_range(records, start, self._cache)
            await self._commit_range(batch)

    # --------------------------------------------------------------- commits

    async def _commit_range(self, batch: RecordRange) -> None:
        attempt = 0
        while True:
            try:
                await self._try_commit(batch, reload=attempt > 0)
                return
            except WriteConflictError:
                pass  # someone else wrote first: re-read what the batch touches, fold again
            except BaseException:
                self._forget(batch.first_events)
                raise
            self.conflicts += 1
            attempt += 1
            self._forget(batch.first_events)
            if attempt > _MAX_CONFLICT_RETRIES:
                raise TepError(
                    f"bucket {self.bucket}: gave up after {attempt} write conflicts in a row"
                )
            await self.load()

    def _forget(self, execution_ids: dict[str, Event]) -> None:
        for execution_id in execution_ids:
            self._cache.pop(execution_id, None)

    async def _load_states(self, batch: RecordRange, reload: bool) -> dict[str, CachedState | None]:
        found: dict[str, CachedState | None] = {}
        missing = []
        for execution_id, first in batch.first_events.items():
            cached = None if reload else self._cache.get(execution_id)
            if cached is not None:
                found[execution_id] = cached
            elif isinstance(first, PlanSubmitted) and not reload:
                # Its first event creates it: assume it is new; the create is a
                # compare-and-set on "absent", so a wrong guess is a conflict, not a clobber.
                found[execution_id] = None
            else:
                missing.append(execution_id)
        if missing:
            loaded = await asyncio.gather(*(self._read(e) for e in missing))
            found.update(zip(missing, loaded, strict=True))
        return found

    async def _read(self, execution_id: str) -> CachedState | None:
        try:
            entry = await self.kv.get(exec_key(execution_id))
        except KeyNotFoundError:
            return None
        data = entry.value or b""
        return CachedState(decode_state(data), entry.revision or 0, len(data))

    async def _try_commit(self, batch: RecordRange, *, reload: bool) -> None:
        folded = fold_range(batch, await self._load_states(batch, reload))
        work, poisons = folded.touched, folded.poisons
        end = batch.records[-1][0].sequence
        writes, sizes = state_writes(work, self.value_limit)
        largest = max((size for _, size in sizes.values()), default=0)
        delta = stats_delta(work, sizes)
        stats_at = checkpoint_at = -1
        new_stats = None
        if not delta.is_zero():
            new_stats = ViewStats(
                executions=dict(self.stats.executions), actions=dict(self.stats.actions)
            )
            new_stats.add(delta)
            stats_at = len(writes)
            writes.append(KvWrite(STATS_KEY, encode_stats(new_stats), self._stats_revision))
        if end > self.checkpoint:
            checkpoint_at = len(writes)
            writes.append(
                KvWrite(CHECKPOINT_KEY, encode_checkpoint(end), self._checkpoint_revision)
            )
        if self.on_poison is not None:
            for poison in poisons:
                await self.on_poison(poison)
        first = 0
        if writes and self.pipeline:
            first = self._next_revision
            self._in_flight.append((await self._writer.send(writes), first))
            self._next_revision += len(writes)
            self.commits += 1
            await self._settle(self.pipeline)
        elif writes:
            first = await wait_answered(await self._writer.send(writes), self.write_timeout_s)
            self.commits += 1
        self.poisoned += len(poisons)
        self.events_applied += folded.applied
        self.largest_write = max(self.largest_write, largest)
        if new_stats is not None:
            self.stats = new_stats
            self._stats_revision = first + stats_at
        if checkpoint_at >= 0:
            self.checkpoint = end
            self._checkpoint_revision = first + checkpoint_at
        self._remember(work, sizes, first)

    def _remember(
        self, work: dict[str, Touched], sizes: dict[str, tuple[int, int]], first: int
    ) -> None:
        cache = self._cache
        for execution_id, entry in work.items():
            cache.pop(execution_id, None)
            state = entry.state
            if state is None or state.terminal:
                continue  # finished executions rarely see another event: re-read if they do
            if not entry.changed:
                cache[execution_id] = CachedState(state, entry.revision, entry.size)
            elif execution_id in sizes:
                position, size = sizes[execution_id]
                state.plan = None
                cache[execution_id] = CachedState(state, first + position, size)
        while len(cache) > self.cache_size:
            cache.pop(next(iter(cache)))
