"""One batch of the view: the records it takes, their fold, and the KV writes that store it.

No I/O here: the :class:`~projections.updater.ViewUpdater` reads the states a batch touches,
hands them in, and commits the writes that come out in one atomic batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from eventstore.errors import EventDecodeError
from eventstore.events import Event, PlanSubmitted
from eventstore.fold import apply
from eventstore.jetstream.kv_batch import MAX_BATCH, KvWrite
from eventstore.records import RawRecord, RecordedEvent
from eventstore.state import ExecutionState
from projections.poison import Poison, classify_undecodable
from projections.view import (
    WAITING_INDEX,
    ExecutionSummary,
    StateTooLargeError,
    ViewStats,
    contribution,
    encode_state,
    encode_summary,
    exec_key,
    index_key,
    summary_of,
    waits_for_person,
)

__all__ = [
    "CachedState",
    "Folded",
    "RecordRange",
    "Touched",
    "fold_range",
    "next_range",
    "state_writes",
    "stats_delta",
]

_log = logging.getLogger("tep.projector")

_INDEX_TOMBSTONE_TTL = "60s"
_UNKNOWN_SIZE = 4096
_BATCH_BYTES = 8 * 1024 * 1024
# Per execution: its state, an index entry and a tombstone, its waiting entry (or that
# entry's tombstone); plus counters and checkpoint.
_MAX_EXECUTIONS = (MAX_BATCH - 2) // 4


@dataclass
class CachedState:
    """A state as the bucket holds it: at KV ``revision``, ``size`` bytes encoded."""

    state: ExecutionState
    revision: int
    size: int


@dataclass
class Touched:
    """One execution touched by the batch being committed."""

    state: ExecutionState | None
    revision: int
    size: int = 0
    before: ExecutionSummary | None = None
    before_stats: ViewStats | None = None
    before_waiting: bool = False
    changed: bool = False


@dataclass
class RecordRange:
    """A run of records whose writes fit one atomic batch, decoded (or found poison)."""

    records: list[tuple[RawRecord, RecordedEvent | Poison]]
    first_events: dict[str, Event] = field(default_factory=dict)
    """The first event of each execution in the range, in order of appearance."""


@dataclass
class Folded:
    """What folding a range gave: the touched executions, the poison, the events applied."""

    touched: dict[str, Touched]
    poisons: list[Poison]
    applied: int


def next_range(
    records: Sequence[RawRecord], start: int, cache: Mapping[str, CachedState]
) -> tuple[int, RecordRange]:
    """Decode the longest run of records from ``start`` whose writes fit one atomic batch.

    Returns:
        Where the next range starts, and this one.
    """
    batch = RecordRange(records=[])
    taken = batch.records
    first_events = batch.first_events
    size = 0
    index = start
    count = len(records)
    while index < count:
        record = records[index]
        item: RecordedEvent | Poison
        try:
            item = record.decode()
        except EventDecodeError as exc:
            item = classify_undecodable(record, exc)
        else:
            event = item.event
            execution_id = event.execution_id
            if execution_id not in first_events:
                cached = cache.get(execution_id)
                grow = cached.size if cached else _UNKNOWN_SIZE
                full = len(first_events) >= _MAX_EXECUTIONS or size + grow > _BATCH_BYTES
                if full and taken:
                    break
                first_events[execution_id] = event
                size += grow
        taken.append((record, item))
        index += 1
    return index, batch


def fold_range(batch: RecordRange, states: Mapping[str, CachedState | None]) -> Folded:
    """Fold a range onto the states it touches (``None``: the execution is not in the bucket).

    Events at or below a state's ``last_sequence`` change nothing, so folding a range again
    after a conflict never double-counts. An event of an execution that has no
    ``plan.submitted`` is poison.
    """
    touched: dict[str, Touched] = {}
    poisons: list[Poison] = []
    applied = 0
    for record, item in batch.records:
        if isinstance(item, Poison):
            poisons.append(item)
            continue
        event = item.event
        execution_id = event.execution_id
        entry = touched.get(execution_id)
        if entry is None:
            entry = _touch(states.get(execution_id))
            touched[execution_id] = entry
        state = entry.state
        if state is None:
            if not isinstance(event, PlanSubmitted):
                poisons.append(
                    Poison(
                        record,
                        "unknown_execution",
                        f"no plan.submitted for execution {execution_id!r}",
                    )
                )
                continue
            before = -1
        else:
            before = state.last_sequence
        state = entry.state = apply(state, item)
        if state is not None and state.last_sequence != before:
            entry.changed = True
            applied += 1
    return Folded(touched, poisons, applied)


def _touch(cached: CachedState | None) -> Touched:
    if cached is None:
        return Touched(state=None, revision=0)
    return Touched(
        state=cached.state,
        revision=cached.revision,
        size=cached.size,
        before=summary_of(cached.state),
        before_stats=contribution(cached.state),
        before_waiting=waits_for_person(cached.state),
    )


def state_writes(
    touched: Mapping[str, Touched], value_limit: int
) -> tuple[list[KvWrite], dict[str, tuple[int, int]]]:
    """State and index writes (by status, and the ``waiting`` index) of the changed executions.

    Each state is written with compare-and-set on the revision it was read at. Returns the
    writes and, per execution written, (position of its state in the writes, value size). A
    state too large for one value is logged and not written.
    """
    writes: list[KvWrite] = []
    sizes: dict[str, tuple[int, int]] = {}
    for execution_id, entry in touched.items():
        state = entry.state
        if not entry.changed or state is None:
            continue
        try:
            value = encode_state(state, value_limit)
        except StateTooLargeError as exc:
            _log.error("state not written: %s", exc, extra={"execution_id": execution_id})
            continue
        sizes[execution_id] = (len(writes), len(value))
        writes.append(KvWrite(exec_key(execution_id), value, entry.revision))
        after = summary_of(state)
        if after != entry.before:
            writes.append(
                KvWrite(index_key(after.status, after.plan_id, execution_id), encode_summary(after))
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
        writes.extend(_waiting_writes(entry, state, after))
    return writes, sizes


def _waiting_writes(
    entry: Touched, state: ExecutionState, after: ExecutionSummary
) -> list[KvWrite]:
    """The execution's entry in the ``waiting`` index: written when a waitpoint starts waiting
    (and rewritten when its summary changes meanwhile), removed when none waits any more."""
    key = index_key(WAITING_INDEX, state.plan_id, state.execution_id)
    waiting = waits_for_person(state)
    if waiting and (not entry.before_waiting or after != entry.before):
        return [KvWrite(key, encode_summary(after))]
    if entry.before_waiting and not waiting:
        return [KvWrite(key, delete=True, ttl=_INDEX_TOMBSTONE_TTL)]
    return []


def stats_delta(touched: Mapping[str, Touched], written: Mapping[str, object]) -> ViewStats:
    """How the global counters change with the states in ``written``."""
    delta = ViewStats()
    for execution_id, entry in touched.items():
        if execution_id in written and entry.state is not None:
            delta.add(contribution(entry.state))
            if entry.before_stats is not None:
                delta.add(entry.before_stats, -1)
    return delta
