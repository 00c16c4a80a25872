"""The times of the sleep bench's executions, as the log stored them: each sleep's ``until``,
its ``action.timer.fired`` and ``action.completed``, and the ``execution.completed``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from eventstore.codec import decode_event
from eventstore.events import ActionWaiting
from eventstore.jetstream.consumer_read import read_matching


def _stored(msg: Msg) -> tuple[str, bytes, datetime]:
    return msg.subject, msg.data, msg.metadata.timestamp


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass
class TepTimes:
    """Per execution: the sleep's ``until`` and the stored times of what followed."""

    until: dict[str, datetime] = field(default_factory=dict)
    fired: dict[str, datetime] = field(default_factory=dict)
    slept: dict[str, datetime] = field(default_factory=dict)
    ended: dict[str, datetime] = field(default_factory=dict)


async def read_tep_times(
    admin: NatsClient, stream: str, ids: set[str], *, sleep_action: str
) -> TepTimes:
    """The times of the bench's executions ``ids``, whose sleep is the action ``sleep_action``,
    read from the log (stored timestamps)."""
    js = admin.jetstream()

    async def read(subject: str) -> list[tuple[str, bytes, datetime]]:
        return await read_matching(admin, js, stream, [subject], _stored, timeout=120)

    times = TepTimes()
    for _, data, _ in await read(f"action.waiting.*.{sleep_action}"):
        event = decode_event(data)
        if isinstance(event, ActionWaiting) and event.until and event.execution_id in ids:
            times.until[event.execution_id] = _when(event.until)
    for target, prefix in (
        (times.fired, f"action.timer.fired.*.{sleep_action}"),
        (times.slept, f"action.completed.*.{sleep_action}"),
        (times.ended, "execution.completed.*"),
    ):
        for subject, _, stored in await read(prefix):
            execution = subject.split(".")[3 if prefix.startswith("action.timer") else 2]
            if execution in ids:
                target[execution] = stored
    return times
