"""Rebuild: replay the whole log into a fresh view bucket, then switch readers to it at once.

The next generation's bucket is filled through the same :class:`ViewUpdater` as the live view
(same fold, same atomic batches with the checkpoint inside), so an interrupted rebuild resumes
from the new bucket's checkpoint when run again. Once it has caught up with the live view, the
pointer is switched with a compare-and-set: readers go from one complete view to the other and
never see a half-built one. Live projectors notice the switch and continue on the new bucket.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import cast

import msgspec
from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyNotFoundError, NotFoundError

from eventstore.config import TepSettings
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from eventstore.records import RawRecord
from projections.buckets import (
    bucket_name,
    delete_view_bucket,
    ensure_meta_bucket,
    ensure_view_bucket,
    read_pointer,
    switch_pointer,
)
from projections.log_range_reader import few_collections, read_in_child
from projections.poison import Poison
from projections.projector import value_limit
from projections.updater import ViewUpdater
from projections.view import CHECKPOINT_KEY, decode_checkpoint

__all__ = [
    "DEFAULT_REBUILD_BATCH",
    "PARALLEL_THRESHOLD",
    "RebuildProgress",
    "RebuildReport",
    "rebuild",
]

_log = logging.getLogger("tep.rebuild")

DEFAULT_REBUILD_BATCH = 32_768
PARALLEL_THRESHOLD = 100_000
"""From this many events on, a rebuild reads the log in a child process (a second core)."""
_CACHE_SIZE = 100_000
_PIPELINE = 4

_Batches = AsyncGenerator[list[RawRecord], None]


class RebuildProgress(msgspec.Struct, frozen=True, kw_only=True):
    """Where a running rebuild stands.

    Attributes:
        sequence: the last stream sequence folded.
        end: the log's last sequence when this pass began.
        events: events folded so far in this run.
        seconds: time since this run began (the clock of :attr:`RebuildReport.seconds`).
    """

    bucket: str
    sequence: int
    end: int
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        """Events folded per second so far in this run."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


class RebuildReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a rebuild did (the ``tep rebuild --json`` document).

    ``seconds`` is the whole run, from reading the pointer to the switch (and the old bucket's
    deletion); ``events_per_second`` is ``events / seconds``: the rate the progress lines
    report so far, at the end.
    """

    bucket: str
    generation: int
    previous_generation: int | None
    resumed_from: int
    checkpoint: int
    events: int
    events_applied: int
    poisoned: int
    executions: int
    seconds: float
    events_per_second: float
    switched: bool
    previous_deleted: bool


async def rebuild(
    nc: NatsClient,
    settings: TepSettings,
    *,
    keep_old: bool = False,
    batch_size: int = DEFAULT_REBUILD_BATCH,
    progress: Callable[[RebuildProgress], None] | None = None,
    parallel: bool | None = None,
) -> RebuildReport:
    """Rebuild the view into the next generation and switch to it.

    Args:
        keep_old: keep the previous bucket instead of deleting it after the switch.
        batch_size: records folded between writes (larger coalesces more).
        progress: called after every batch.
        parallel: read the log in a child process while this one folds and writes
            (default: when at least :data:`PARALLEL_THRESHOLD` events are to be read).

    Raises:
        PointerConflictError: another rebuild switched the view meanwhile (this one's bucket
            is left in place; delete it with ``nats kv del`` or let a later rebuild reuse it).
    """
    with few_collections():
        return await _rebuild(nc, settings, keep_old, batch_size, progress, parallel)


async def _rebuild(
    nc: NatsClient,
    settings: TepSettings,
    keep_old: bool,
    batch_size: int,
    progress: Callable[[RebuildProgress], None] | None,
    parallel: bool | None,
) -> RebuildReport:
    began = time.monotonic()
    log = EventLog(nc, settings)
    await ensure_log(log.js, settings)
    meta = await ensure_meta_bucket(log.js, settings)
    pointer = await read_pointer(meta)
    previous = pointer.generation if pointer is not None else None
    generation = (previous or 0) + 1
    bucket = bucket_name(generation)
    kv = await ensure_view_bucket(log.js, settings, generation)
    updater = ViewUpdater(
        nc,
        kv,
        bucket,
        value_limit=value_limit(nc, settings),
        cache_size=_CACHE_SIZE,
        on_poison=_note_poison,
        pipeline=_PIPELINE,
    )
    await updater.load()
    try:
        report = await _fill(
            log, settings, updater, batch_size, progress, parallel, previous, began
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await updater.flush()  # let what was sent land: the checkpoint is then final
        raise
    finally:
        await updater.close()
    await switch_pointer(meta, pointer, generation)
    deleted = False
    if previous is not None and not keep_old:
        deleted = await delete_view_bucket(log.js, previous)
    seconds = time.monotonic() - began
    _log.info(
        "rebuilt %s: %d events in %.3fs; readers switched",
        bucket,
        report.events,
        seconds,
        extra={"view": bucket},
    )
    shown = round(seconds, 4)  # the rate is of the time reported, so the two always agree
    return msgspec.structs.replace(
        report,
        seconds=shown,
        events_per_second=round(report.events / shown, 1) if shown > 0 else 0.0,
        switched=True,
        previous_deleted=deleted,
    )


async def _fill(
    log: EventLog,
    settings: TepSettings,
    updater: ViewUpdater,
    batch_size: int,
    progress: Callable[[RebuildProgress], None] | None,
    parallel: bool | None,
    previous: int | None,
    began: float,
) -> RebuildReport:
    """Fold the log into the new bucket until it has caught up with the live view (the
    report's timings are left for :func:`rebuild` to fill in)."""
    bucket = updater.bucket
    resumed_from = updater.checkpoint
    if resumed_from:
        _log.info("resuming the rebuild of %s after sequence %d", bucket, resumed_from)
    events = 0
    position = updater.checkpoint
    while True:
        end = await log.last_sequence()
        if end > position:
            in_child = parallel if parallel is not None else end - position >= PARALLEL_THRESHOLD
            source = (
                read_in_child(settings, position + 1, end, max_batch=batch_size)
                if in_child
                else log.replay_batches(
                    position + 1, to_sequence=end, buffer=4 * batch_size, max_batch=batch_size
                )
            )
            async with contextlib.aclosing(cast(_Batches, source)) as batches:
                async for records in batches:
                    await updater.apply(records)
                    events += len(records)
                    if progress is not None:
                        progress(
                            RebuildProgress(
                                bucket=bucket,
                                sequence=records[-1].sequence,
                                end=end,
                                events=events,
                                seconds=time.monotonic() - began,
                            )
                        )
            position = end
        await updater.flush()
        live = await _live_checkpoint(log, previous)
        if updater.checkpoint >= live:
            break  # at least as far as the view readers use now: safe to switch
    return RebuildReport(
        bucket=bucket,
        generation=int(bucket.rsplit("_", 1)[1]),
        previous_generation=previous,
        resumed_from=resumed_from,
        checkpoint=updater.checkpoint,
        events=events,
        events_applied=updater.events_applied,
        poisoned=updater.poisoned,
        executions=sum(updater.stats.executions.values()),
        seconds=0.0,
        events_per_second=0.0,
        switched=False,
        previous_deleted=False,
    )


async def _note_poison(poison: Poison) -> None:
    # The live projector dead-letters poison events; a rebuild only skips them again.
    _log.warning(
        "poison event skipped: %s",
        poison.detail,
        extra={"reason": poison.reason, "sequence": poison.record.sequence},
    )


async def _live_checkpoint(log: EventLog, generation: int | None) -> int:
    if generation is None:
        return 0
    try:
        kv = await log.js.key_value(bucket_name(generation))
        entry = await kv.get(CHECKPOINT_KEY)
    except (KeyNotFoundError, NotFoundError):  # never written, or the bucket is gone
        return 0
    return decode_checkpoint(entry.value or b"")
