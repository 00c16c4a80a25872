"""Following ``action.cancelled`` as the log stores it, to abort cancelled attempts at once.

The orchestrator records ``action.cancelled`` for every unfinished action of an execution it
cancels (and for those it gives up on when an execution fails). A request not yet started
finds that event where it reads its action's position and never runs; an attempt already in
its call is aborted by this follower. It reads the log itself (an ordered consumer from the
end of the log at start), so only cancellations that were stored count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from eventstore.jetstream.log import EventLog
from eventstore.subjects import ACTION_CANCELLED_FILTER, action_ids

__all__ = ["follow_cancellations"]

_RESTART_PAUSE_S = 1.0

_log = logging.getLogger("tep.executor")


async def follow_cancellations(
    log: EventLog,
    on_cancelled: Callable[[str, str], object],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_cancelled(execution_id, action_id)`` for every ``action.cancelled`` stored
    from now on, until cancelled; signals ``task_status`` once following.

    A broken subscription is opened again where it stopped, so none is missed.
    """
    start = await log.last_sequence() + 1
    task_status.started()
    while True:
        try:
            async for batch in log.follow_raw([ACTION_CANCELLED_FILTER], start):
                for record in batch:
                    start = record.sequence + 1
                    ids = action_ids(record.subject)
                    if ids is not None:
                        on_cancelled(*ids)
        except Exception as exc:
            _log.warning("following cancellations failed (%s); following again", exc)
        await anyio.sleep(_RESTART_PAUSE_S)
