"""Folding log records into a view bucket: coalesced, idempotent, all-or-nothing per batch.

The projector and the rebuild both feed raw records to a :class:`ViewUpdater`. It folds every
event with :func:`eventstore.fold.apply` (the one fold), keeps the touched states in memory and
writes each execution's key once per batch, together with the index entries whose status
changed, the global counters and the checkpoint, in one atomic batch with compare-and-set on
every key that must not have moved. When another writer got there first the whole batch is
refused; the updater re-reads what it touched and folds the same records again (events at or
below a state's ``last_sequence`` change nothing), so replicas and redeliveries never
double-count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from eventstore.codec import decode_event
from eventstore.errors import EventDecodeError, TepError
from eventstore.events import EVENT_TYPES, Event, PlanSubmitted
from eventstore.fold import apply
from eventstore.jetstream.kv_batch import (
    MAX_BATCH,
    AtomicWriter,
    KvWrite,
    WriteConflictError,
    wait_stored,
)
from eventstore.records import RawRecord, RecordedEvent
from eventstore.state import ExecutionState
from projections.view import (
    CHECKPOINT_KEY,
    STATS_KEY,
    ExecutionSummary,
    StateTooLargeError,
    ViewStats,
    contribution,
    decode_checkpoint,
    decode_state,
    decode_stats,
    encode_checkpoint,
    encode_state,
    encode_stats,
    encode_summary,
    exec_key,
    index_key,
    summary_of,
)

__all__ = ["Poison", "PoisonHandler", "PoisonReason", "ViewUpdater"]

_log = logging.getLogger("tep.projector")

PoisonReason = Literal["undecodable", "unknown_type", "unknown_execution"]

_MAX_CONFLICT_RETRIES = 50
_INDEX_TOMBSTONE_TTL = "60s"
_UNKNOWN_SIZE = 4096
_BATCH_BYTES = 8 * 1024 * 1024


class Poison(msgspec.Struct, frozen=True):
    """A record the view cannot take, and why."""

    record: RawRecord
    reason: PoisonReason
    detail: str


PoisonHandler = Callable[[Poison], Awaitable[None]]


class _TypeOnly(msgspec.Struct):
    type: str


_type_decoder = msgspec.json.Decoder(_TypeOnly)


def _classify(record: RawRecord, exc: EventDecodeError) -> Poison:
    try:
        tag = _type_decoder.decode(record.data).type
    except msgspec.DecodeError:
        return Poison(record, "undecodable", str(exc))
    if tag not in EVENT_TYPES:
        return Poison(record, "unknown_type", f"unknown event type {tag!r}")
    return Poison(record, "undecodable", str(exc))


@dataclass
class _Cached:
    state: ExecutionState
    revision: int
    size: int


@dataclass
class _Work:
    """One execution touched by the batch being committed."""

    state: ExecutionState | None
    revision: int
    size: int = 0
    before: ExecutionSummary | None = None
    before_stats: ViewStats | None = None
    changed: bool = False


@dataclass
class _Range:
    records: list[tuple[RawRecord, Event | Poison]]
    first_events: dict[str, Event] = field(default_factory=dict)


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
        self._checkpoint_revision = 0
        self._stats_revision = 0
        self._cache: dict[str, _Cached] = {}
        self._writer = AtomicWriter(nc, bucket)
        self._started = False
        self.pipeline = pipeline
        self._in_flight: list[tuple[asyncio.Future[int], int]] = []
        self._next_revision = 0

    async def load(self) -> None:
        """Read the checkpoint and counters from the bucket (call before the first batch)."""
        if not self._started:
            await self._writer.start()
            self._started = True
        if self.pipeline:
            info = await self.js.stream_info(f"KV_{self.bucket}")
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
        start = 0
        while start < len(records):
            start, batch = self._next_range(records, start)
            await self._commit_range(batch)

    # ---------------------------------------------------------------- ranges

    def _next_range(self, records: Sequence[RawRecord], start: int) -> tuple[int, _Range]:
        """Decode the longest run of records whose writes fit one atomic batch."""
        # Per execution: its state, an index entry and a tombstone; plus counters, checkpoint.
        max_executions = (MAX_BATCH - 2) // 3
        batch = _Range(records=[])
        size = 0
        index = start
        first_events = batch.first_events
        cache = self._cache
        while index < len(records):
            record = records[index]
            item: Event | Poison
            try:
                item = decode_event(record.data)
            except EventDecodeError as exc:
                item = _classify(record, exc)
            if not isinstance(item, Poison):
                execution_id = item.execution_id
                if execution_id not in first_events:
                    cached = cache.get(execution_id)
                    grow = cached.size if cached else _UNKNOWN_SIZE
                    full = len(first_events) >= max_executions or size + grow > _BATCH_BYTES
                    if full and batch.records:
                        break
                    first_events[execution_id] = item
                    size += grow
            batch.records.append((record, item))
            index += 1
        return index, batch

    async def _commit_range(self, batch: _Range) -> None:
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

    async def _load_states(self, batch: _Range, reload: bool) -> dict[str, _Cached | None]:
        found: dict[str, _Cached | None] = {}
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

    async def _read(self, execution_id: str) -> _Cached | None:
        try:
            entry = await self.kv.get(exec_key(execution_id))
        except KeyNotFoundError:
            return None
        data = entry.value or b""
        return _Cached(decode_state(data), entry.revision or 0, len(data))

    async def _try_commit(self, batch: _Range, *, reload: bool) -> None:
        states = await self._load_states(batch, reload)
        work: dict[str, _Work] = {}
        poisons: list[Poison] = []
        applied = 0
        for record, item in batch.records:
            if isinstance(item, Poison):
                poisons.append(item)
                continue
            execution_id = item.execution_id
            entry = work.get(execution_id)
            if entry is None:
                cached = states.get(execution_id)
                if cached is None:
                    entry = _Work(state=None, revision=0)
                else:
                    entry = _Work(
                        state=cached.state,
                        revision=cached.revision,
                        size=cached.size,
                        before=summary_of(cached.state),
                        before_stats=contribution(cached.state),
                    )
                work[execution_id] = entry
            if entry.state is None and not isinstance(item, PlanSubmitted):
                poisons.append(
                    Poison(
                        record,
                        "unknown_execution",
                        f"no plan.submitted for execution {execution_id!r}",
                    )
                )
                continue
            before = entry.state.last_sequence if entry.state is not None else -1
            entry.state = apply(entry.state, RecordedEvent(record.sequence, record.subject, item))
            if entry.state is not None and entry.state.last_sequence != before:
                entry.changed = True
                applied += 1

        end = batch.records[-1][0].sequence
        writes, sizes = self._writes(work)
        delta = ViewStats()
        for execution_id, entry in work.items():
            if execution_id in sizes and entry.state is not None:  # written in this batch
                delta.add(contribution(entry.state))
                if entry.before_stats is not None:
                    delta.add(entry.before_stats, -1)
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
            first = await self._writer.commit(writes)
            self.commits += 1
        self.poisoned += len(poisons)
        self.events_applied += applied
        if new_stats is not None:
            self.stats = new_stats
            self._stats_revision = first + stats_at
        if checkpoint_at >= 0:
            self.checkpoint = end
            self._checkpoint_revision = first + checkpoint_at
        self._remember(work, sizes, first)

    def _writes(self, work: dict[str, _Work]) -> tuple[list[KvWrite], dict[str, tuple[int, int]]]:
        """State and index writes; per execution (position in the batch, value size)."""
        writes: list[KvWrite] = []
        sizes: dict[str, tuple[int, int]] = {}
        for execution_id, entry in work.items():
            state = entry.state
            if not entry.changed or state is None:
                continue
            try:
                value = encode_state(state, self.value_limit)
            except StateTooLargeError as exc:
                _log.error("state not written: %s", exc, extra={"execution_id": execution_id})
                continue
            sizes[execution_id] = (len(writes), len(value))
            writes.append(KvWrite(exec_key(execution_id), value, entry.revision))
            after = summary_of(state)
            if after != entry.before:
                writes.append(
                    KvWrite(
                        index_key(after.status, after.plan_id, execution_id), encode_summary(after)
                    )
                )
                before = entry.before
                if before is not None and before.status != after.status:
                    writes.append(
                        KvWrite(
                            index_key(before.status, before.plan_id, execution_id),
                            delete=True,
                            ttl=_INDEX_TOMBSTONE_TTL,
                        )
                    )
        return writes, sizes

    def _remember(
        self, work: dict[str, _Work], sizes: dict[str, tuple[int, int]], first: int
    ) -> None:
        cache = self._cache
        for execution_id, entry in work.items():
            cache.pop(execution_id, None)
            state = entry.state
            if state is None or state.terminal:
                continue  # finished executions rarely see another event: re-read if they do
            if not entry.changed:
                cache[execution_id] = _Cached(state, entry.revision, entry.size)
            elif execution_id in sizes:
                position, size = sizes[execution_id]
                state.plan = None
                cache[execution_id] = _Cached(state, first + position, size)
        while len(cache) > self.cache_size:
            cache.pop(next(iter(cache)))
