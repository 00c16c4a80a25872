"""Schedules on JetStream: their KV bucket and the submission of one tick's execution.

Definitions and state live in :data:`~eventstore.schedules.SCHEDULE_BUCKET` (see
:mod:`eventstore.schedules`). Every write of a key is a compare-and-set on the revision it was
read at; a lost race re-reads the key and applies the change again, so two writers never
overwrite each other's tick or flag.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import NotFoundError as StreamNotFoundError
from nats.js.kv import KeyValue

from eventstore.errors import ExecutionExistsError
from eventstore.events import PlanSubmitted
from eventstore.jetstream.consumer_read import read_matching
from eventstore.jetstream.kv_protocol import is_deleted, kv_stream, kv_subject_prefix
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_kv
from eventstore.schedules import (
    SCHEDULE_BUCKET,
    ScheduleDefinition,
    ScheduleError,
    ScheduleNotFoundError,
    ScheduleState,
    definition_key,
    state_key,
    submission_event_id,
)

__all__ = ["ScheduleStore", "Schedules", "Stored", "submit_scheduled"]

_log = logging.getLogger("tep.schedules")
T = TypeVar("T")
_CAS_ROUNDS = 16
_READ_TIMEOUT_S = 10.0

_encode = msgspec.json.Encoder().encode
_decode_definition = msgspec.json.Decoder(ScheduleDefinition).decode
_decode_state = msgspec.json.Decoder(ScheduleState).decode


@dataclass(frozen=True)
class Stored(Generic[T]):
    """A value read from the bucket with the revision it was read at."""

    value: T
    revision: int


@dataclass
class Schedules:
    """Every schedule in the bucket at one moment: definitions and states by name."""

    definitions: dict[str, Stored[ScheduleDefinition]] = field(default_factory=dict)
    states: dict[str, Stored[ScheduleState]] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    """Keys whose value could not be decoded, with the reason."""


class ScheduleStore:
    """Reads and writes schedules in their KV bucket.

    Build it with :meth:`open` (the bucket must exist) or :meth:`ensure` (created if absent,
    for the admin and the orchestrator).
    """

    def __init__(self, log: EventLog, kv: KeyValue) -> None:
        self.log = log
        self.kv = kv

    @classmethod
    async def ensure(cls, log: EventLog) -> ScheduleStore:
        """The store, creating its bucket if needed."""
        kv = await ensure_kv(log.js, SCHEDULE_BUCKET, replicas=log.settings.replicas)
        return cls(log, kv)

    @classmethod
    async def open(cls, log: EventLog) -> ScheduleStore | None:
        """The store, or ``None`` when its bucket does not exist (no schedule was ever added)."""
        try:
            return cls(log, await log.js.key_value(SCHEDULE_BUCKET))
        except (BucketNotFoundError, StreamNotFoundError):
            return None

    # ------------------------------------------------------------------- reading

    async def read_all(self) -> Schedules:
        """Every definition and state, with revisions, in one pass over the bucket."""
        prefix = kv_subject_prefix(SCHEDULE_BUCKET)

        def live(msg: Msg) -> tuple[str, bytes, int] | None:
            if msg.headers and is_deleted(msg.headers):
                return None
            return msg.subject.removeprefix(prefix), msg.data, msg.metadata.sequence.stream

        entries = await read_matching(
            self.log.nc,
            self.log.js,
            kv_stream(SCHEDULE_BUCKET),
            [prefix + ">"],
            live,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            timeout=_READ_TIMEOUT_S,
        )
        found = Schedules()
        for key, data, revision in entries:
            kind, _, name = key.partition(".")
            try:
                if kind == "def":
                    found.definitions[name] = Stored(_decode_definition(data), revision)
                elif kind == "state":
                    found.states[name] = Stored(_decode_state(data), revision)
            except msgspec.DecodeError as exc:
                found.unreadable[key] = str(exc)
        return found

    async def definition(self, name: str) -> Stored[ScheduleDefinition]:
        """One definition.

        Raises:
            ScheduleNotFoundError: there is no schedule ``name``.
            ScheduleError: its value is unreadable.
        """
        data, revision = await self._get(definition_key(name))
        if data is None:
            raise ScheduleNotFoundError(
                f'unknown schedule "{name}" (tep schedule list shows them)'
            )
        try:
            return Stored(_decode_definition(data), revision)
        except msgspec.DecodeError as exc:
            raise ScheduleError(f'schedule "{name}" has an unreadable definition: {exc}') from None

    async def state(self, name: str) -> Stored[ScheduleState]:
        """One state (empty, revision 0, before anything fired)."""
        data, revision = await self._get(state_key(name))
        if data is None:
            return Stored(ScheduleState(), 0)
        try:
            return Stored(_decode_state(data), revision)
        except msgspec.DecodeError:
            _log.warning("schedule %s: unreadable state replaced", name, extra={"schedule": name})
            return Stored(ScheduleState(), revision)

    async def _get(self, key: str) -> tuple[bytes | None, int]:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:  # also a deleted key
            return None, 0
        return entry.value, int(entry.revision or 0)

    # ------------------------------------------------------------------- writing

    async def add(self, definition: ScheduleDefinition) -> None:
        """Store a new definition.

        Raises:
            ScheduleError: a schedule of that name exists.
        """
        try:
            await self.kv.create(definition_key(definition.name), _encode(definition))
        except KeyWrongLastSequenceError:
            raise ScheduleError(
                f'schedule "{definition.name}" already exists: remove it first '
                f"(tep schedule remove {definition.name})"
            ) from None

    async def change(
        self, name: str, edit: Callable[[ScheduleDefinition], ScheduleDefinition]
    ) -> ScheduleDefinition:
        """Apply ``edit`` to a definition by compare-and-set; the definition as stored.

        Raises:
            ScheduleError: there is no schedule ``name``.
        """
        for _ in range(_CAS_ROUNDS):
            current = await self.definition(name)
            changed = edit(current.value)
            if changed == current.value:
                return changed
            try:
                await self.kv.update(definition_key(name), _encode(changed), last=current.revision)
            except KeyWrongLastSequenceError:
                continue
            return changed
        raise ScheduleError(f'schedule "{name}" keeps changing under us; try again')

    async def remove(self, name: str) -> None:
        """Delete a definition and its state.

        Raises:
            ScheduleError: there is no schedule ``name``.
        """
        await self.definition(name)
        await self.kv.delete(definition_key(name))
        await self.kv.delete(state_key(name))

    async def record(
        self,
        name: str,
        edit: Callable[[ScheduleState], ScheduleState],
        known: Stored[ScheduleState] | None = None,
    ) -> ScheduleState:
        """Apply ``edit`` to a schedule's state by compare-and-set; the state as stored.

        Args:
            name: the schedule.
            edit: the change, applied again to a fresh read after a lost race.
            known: the state as last read (saves a read when it is still current).
        """
        current = known
        for _ in range(_CAS_ROUNDS):
            if current is None:
                current = await self.state(name)
            changed = edit(current.value)
            if changed == current.value:
                return changed
            try:
                if current.revision:
                    await self.kv.update(state_key(name), _encode(changed), last=current.revision)
                else:
                    await self.kv.create(state_key(name), _encode(changed))
            except KeyWrongLastSequenceError:
                current = None
                continue
            return changed
        raise ScheduleError(f'the state of schedule "{name}" keeps changing under us')


async def submit_scheduled(
    log: EventLog, definition: ScheduleDefinition, execution_id: str
) -> bool:
    """Submit the schedule's plan as ``execution_id``; whether this call started it.

    ``False`` when the execution exists already: an earlier try of the same tick (by this
    orchestrator or another) was stored, which is what makes a tick fire exactly once.
    """
    event = PlanSubmitted(
        execution_id=execution_id,
        event_id=submission_event_id(execution_id),
        correlation_id=execution_id,
        plan=definition.plan,
    )
    try:
        result = await log.append(event)
    except ExecutionExistsError:
        return False
    return not result.duplicate
