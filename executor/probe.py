"""Asking the executor that started an attempt whether it still runs it, before running it again.

A request comes back after the ack wait when its executor stopped heartbeating it. That executor
may be dead (crashed, killed) or only paused, stalled or cut off, with its call still going on
at the target. Starting the attempt again is right in the first case and makes two calls of one
action run at once in the second. So every executor answers, on
:func:`eventstore.subjects.executor_probe_subject` of its id, whether it runs a given action,
and the next one asks before it takes an interrupted attempt over:

* no responder (the server dropped the process's connection: it died) or "not running here":
  the attempt was interrupted, start it again;
* "running here": leave the request to it (it heartbeats the message and settles it);
* no answer (paused, stalled, cut off): wait, until the attempt's time limit has passed since
  its start; by then a live executor would have ended the call itself.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import anyio
import msgspec
from anyio.abc import TaskStatus
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from eventstore.events import ActionStarted
from eventstore.subjects import executor_probe_subject

__all__ = ["HolderState", "answer_probes", "probe_holder", "seconds_until_over", "takeover_wait_s"]

HolderState = Literal["gone", "idle", "running", "silent"]
"""What a probe learned: the process is gone, alive without the attempt, alive running it, or
alive (connected) and not answering."""

_LIMIT_MARGIN_S = 1.0

_log = logging.getLogger("tep.executor")


class _Probe(msgspec.Struct, frozen=True):
    execution_id: str
    action_id: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Probe)


async def probe_holder(nc: NatsClient, started: ActionStarted, *, timeout_s: float) -> HolderState:
    """Ask the executor that recorded ``started`` whether it still runs the action."""
    if started.executor_id is None:
        return "gone"
    question = _encoder.encode(_Probe(started.execution_id, started.action_id))
    try:
        reply = await nc.request(
            executor_probe_subject(started.executor_id), question, timeout=timeout_s
        )
    except NoRespondersError:
        return "gone"
    except Exception:
        # A timeout, or our own connection in trouble: nothing says the holder is gone.
        return "silent"
    return "running" if reply.data == b"1" else "idle"


def seconds_until_over(
    started: ActionStarted, limit_s: float, *, now: float | None = None
) -> float:
    """How long until an attempt started at ``started`` is over by its time limit (<= 0: it
    is); a start time that cannot be read counts as long over."""
    try:
        began = datetime.fromisoformat(started.occurred_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    return began + limit_s + _LIMIT_MARGIN_S - (time.time() if now is None else now)


async def takeover_wait_s(
    nc: NatsClient, started: ActionStarted, *, own_id: str, limit_s: float, timeout_s: float
) -> float:
    """Whether the interrupted attempt ``started`` may be started again now.

    Returns:
        0 to take it over now; ``math.inf`` when its executor still runs it; else how many
        seconds to wait (its executor does not answer, and its time limit has not passed).
    """
    if started.executor_id == own_id:
        return 0.0  # this process, which does not run it (the caller checked)
    state = await probe_holder(nc, started, timeout_s=timeout_s)
    if state == "running":
        return math.inf
    if state == "silent":
        return max(seconds_until_over(started, limit_s), 0.0)
    return 0.0


async def answer_probes(
    nc: NatsClient,
    executor_id: str,
    running: Callable[[str, str], bool],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Answer probes for ``executor_id`` from ``running(execution_id, action_id)`` until
    cancelled; signals ``task_status`` once subscribed."""

    async def answer(msg: Msg) -> None:
        try:
            probe = _decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        try:
            await msg.respond(b"1" if running(probe.execution_id, probe.action_id) else b"0")
        except Exception as exc:
            _log.debug("could not answer a probe: %s", exc)

    subscription = await nc.subscribe(executor_probe_subject(executor_id), cb=answer)
    task_status.started()
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.move_on_after(1.0, shield=True):
            try:
                await subscription.unsubscribe()
            except Exception as exc:
                _log.debug("could not unsubscribe the probe answers: %s", exc)
