"""The layout of the current-state view: keys, values, index entries and counters. Pure.

A view bucket (``tep_view_<generation>``) holds::

    exec.<execution_id>                          ExecutionState as JSON, without the plan
    idx.<status>.<plan_token>.<execution_id>     ExecutionSummary (one entry per execution)
    idx.waiting.<plan_token>.<execution_id>      ExecutionSummary, while a waitpoint waits
    stats                                        ViewStats: executions and actions by status
    meta.checkpoint                              last stream sequence fully applied

Values larger than one message are stored gzip-compressed; if even that does not fit, the
largest action outputs are replaced by a truncation marker (see :func:`encode_state`).
"""

from __future__ import annotations

import base64
import functools
import gzip
import re
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec.structs import replace

from eventstore.errors import TepError
from eventstore.state import (
    ACTION_STATUSES,
    EXECUTION_STATUSES,
    ExecutionState,
    ExecutionStatus,
)

__all__ = [
    "CHECKPOINT_KEY",
    "EXEC_PREFIX",
    "INDEX_PREFIX",
    "LISTING_STATUSES",
    "STATS_KEY",
    "TRUNCATED_MARKER",
    "WAITING_INDEX",
    "ExecutionSummary",
    "StateTooLargeError",
    "ViewStats",
    "contribution",
    "decode_checkpoint",
    "decode_state",
    "decode_stats",
    "decode_summary",
    "detached_state",
    "encode_checkpoint",
    "encode_state",
    "encode_stats",
    "encode_summary",
    "exec_key",
    "index_filter",
    "index_key",
    "plan_token",
    "summaries_of",
    "summary_of",
    "waits_for_person",
]

EXEC_PREFIX = "exec."
INDEX_PREFIX = "idx."
STATS_KEY = "stats"
CHECKPOINT_KEY = "meta.checkpoint"
TRUNCATED_MARKER = "tep_truncated"
"""Key of the object that replaces an action output too large for the view."""
WAITING_INDEX = "waiting"
"""The index of running executions with a waitpoint waiting for a person (not a status: the
execution itself stays ``running``; its entry is in both indexes)."""
LISTING_STATUSES: tuple[str, ...] = (*EXECUTION_STATUSES, WAITING_INDEX)
"""What an index listing can select: an execution status, or ``waiting``."""

_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,200}\Z")
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_LEVEL = 1
"""Fast: a large state is compressed each time it is rewritten (about twice as fast as level 6,
for some 5% more bytes)."""

_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(ExecutionState)


class StateTooLargeError(TepError, ValueError):
    """An execution state does not fit one KV value even compressed and without outputs."""


class ExecutionSummary(msgspec.Struct, kw_only=True):
    """What a listing shows of one execution (the value of its index entry)."""

    execution_id: str
    plan_id: str
    status: ExecutionStatus
    submitted_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None


class ViewStats(msgspec.Struct, kw_only=True):
    """Global counters: executions by status and actions by status, over the whole view."""

    executions: dict[str, int] = msgspec.field(
        default_factory=lambda: dict.fromkeys(EXECUTION_STATUSES, 0)
    )
    actions: dict[str, int] = msgspec.field(
        default_factory=lambda: dict.fromkeys(ACTION_STATUSES, 0)
    )

    def add(self, delta: ViewStats, sign: int = 1) -> None:
        """Add (or with ``sign=-1`` subtract) another set of counters into this one."""
        for name, count in delta.executions.items():
            self.executions[name] = self.executions.get(name, 0) + sign * count
        for name, count in delta.actions.items():
            self.actions[name] = self.actions.get(name, 0) + sign * count

    def is_zero(self) -> bool:
        """Every counter is 0."""
        return not any(self.executions.values()) and not any(self.actions.values())


_stats_decoder = msgspec.json.Decoder(ViewStats)
_summary_decoder = msgspec.json.Decoder(ExecutionSummary)


def exec_key(execution_id: str) -> str:
    """The key of an execution's state."""
    return f"{EXEC_PREFIX}{execution_id}"


@functools.lru_cache(maxsize=4096)
def plan_token(plan_id: str) -> str:
    """A plan id as one KV key token: itself when safe, else ``=`` + base64url of it."""
    if _SAFE_TOKEN.match(plan_id):
        return plan_id
    encoded = base64.urlsafe_b64encode(plan_id.encode()).decode().rstrip("=")
    return f"={encoded}"


def index_key(status: str, plan_id: str, execution_id: str) -> str:
    """The index entry of an execution in ``status``."""
    return f"{INDEX_PREFIX}{status}.{plan_token(plan_id)}.{execution_id}"


def index_filter(status: str | None = None, plan_id: str | None = None) -> str:
    """A key pattern matching the index entries of a status (or ``waiting``) and/or plan
    (``None`` = any; see :func:`summaries_of` for reading what it matches)."""
    plan = "*" if plan_id is None else plan_token(plan_id)
    return f"{INDEX_PREFIX}{status or '*'}.{plan}.*"


def summaries_of(entries: Mapping[str, bytes], pattern: str) -> list[ExecutionSummary]:
    """The executions of the index entries ``pattern`` matched, oldest submission first.

    A pattern for any status also matches the ``waiting`` entries: those are left out, so
    each execution is listed once (by its status).
    """
    waiting = f"{INDEX_PREFIX}{WAITING_INDEX}."
    every_status = pattern.startswith(f"{INDEX_PREFIX}*.")
    summaries = [
        decode_summary(value)
        for key, value in entries.items()
        if not (every_status and key.startswith(waiting))
    ]
    summaries.sort(key=lambda s: (s.submitted_at or "", s.execution_id))
    return summaries


def waits_for_person(state: ExecutionState) -> bool:
    """Whether a waitpoint of the (unfinished) execution waits to be resumed: its entry in
    the ``waiting`` index exists exactly while this holds."""
    if state.terminal:
        return False
    return any(
        action.status == "waiting"
        and action.wait is not None
        and action.wait.reason == "waitpoint"
        and action.wait.resume is None
        and action.wait.timer is None
        for action in state.actions.values()
    )


def summary_of(state: ExecutionState) -> ExecutionSummary:
    """The index entry of a state."""
    return ExecutionSummary(
        execution_id=state.execution_id,
        plan_id=state.plan_id,
        status=state.status,
        submitted_at=state.submitted_at,
        started_at=state.started_at,
        completed_at=state.completed_at,
    )


def contribution(state: ExecutionState) -> ViewStats:
    """What one execution adds to the global counters."""
    counts = state.counts
    stats = ViewStats()
    stats.executions[state.status] += 1
    for status in ACTION_STATUSES:
        stats.actions[status] += getattr(counts, status)
    return stats


def encode_state(state: ExecutionState, limit: int) -> bytes:
    """The view value of a state: JSON without the plan, at most ``limit`` bytes.

    Too large as JSON: gzip-compressed JSON. Still too large: the largest action outputs are
    replaced, one at a time, by ``{"tep_truncated": true, "bytes": <size>}``, then the outputs
    of a for-each action's items by ``{"tep_truncated": true}`` (their statuses and counts
    stay; the full outputs stay in the log: ``tep events``). The state passed in is never
    changed.

    Raises:
        StateTooLargeError: even with every output truncated the value does not fit.
    """
    view = msgspec.structs.replace(state, plan=None)
    data = _encoder.encode(view)
    if len(data) <= limit:
        return data
    packed = gzip.compress(data, compresslevel=_GZIP_LEVEL)
    if len(packed) <= limit:
        return packed
    return _truncated(view, limit)


def _truncated(view: ExecutionState, limit: int) -> bytes:
    sizes = {
        action_id: len(_encoder.encode(action.output))
        for action_id, action in view.actions.items()
        if action.output is not None
    }
    actions = dict(view.actions)
    view = msgspec.structs.replace(view, actions=actions)
    for action_id in sorted(sizes, key=lambda a: sizes[a], reverse=True):
        marker: dict[str, Any] = {TRUNCATED_MARKER: True, "bytes": sizes[action_id]}
        actions[action_id] = msgspec.structs.replace(actions[action_id], output=marker)
        packed = gzip.compress(_encoder.encode(view), compresslevel=_GZIP_LEVEL)
        if len(packed) <= limit:
            return packed
    for action_id, action in list(actions.items()):  # then a for-each action's item outputs
        if action.items is not None and any(i.output is not None for i in action.items.items):
            cut = {TRUNCATED_MARKER: True}
            listed = [i if i.output is None else replace(i, output=cut) for i in action.items.items]
            actions[action_id] = replace(action, items=replace(action.items, items=listed))
            packed = gzip.compress(_encoder.encode(view), compresslevel=_GZIP_LEVEL)
            if len(packed) <= limit:
                return packed
    raise StateTooLargeError(
        f"the state of execution {view.execution_id} does not fit {limit} bytes "
        "even compressed and with every output truncated"
    )


def decode_state(data: bytes) -> ExecutionState:
    """A view value back into a state (``plan`` is ``None``)."""
    if data[:2] == _GZIP_MAGIC:
        data = gzip.decompress(data)
    return _state_decoder.decode(data)


def detached_state(state: ExecutionState) -> ExecutionState:
    """A copy of ``state`` without the plan that shares nothing with it: what readers get."""
    return _state_decoder.decode(_encoder.encode(msgspec.structs.replace(state, plan=None)))


def encode_summary(summary: ExecutionSummary) -> bytes:
    """An index entry's value."""
    return _encoder.encode(summary)


def decode_summary(data: bytes) -> ExecutionSummary:
    """An index entry's value back into a summary."""
    return _summary_decoder.decode(data)


def encode_stats(stats: ViewStats) -> bytes:
    """The ``stats`` value."""
    return _encoder.encode(stats)


def decode_stats(data: bytes) -> ViewStats:
    """The ``stats`` value back into counters."""
    return _stats_decoder.decode(data)


def encode_checkpoint(sequence: int) -> bytes:
    """The ``meta.checkpoint`` value."""
    return str(sequence).encode()


def decode_checkpoint(data: bytes) -> int:
    """The ``meta.checkpoint`` value back into a sequence."""
    return int(data or b"0")
