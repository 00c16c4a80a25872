"""The attempts this process is running, by action, so one can be cut short from outside.

Two things end an attempt before its call returns: its action was cancelled (the orchestrator
recorded ``action.cancelled``), or a newer delivery of the same request in this process
started the action again (the old delivery was given up on by the server, e.g. after a pause
longer than the ack wait). Either way the call is cancelled at once and the attempt records
nothing more.
"""

from __future__ import annotations

from typing import Literal

import anyio

__all__ = ["AbortReason", "Holder", "Holders"]

AbortReason = Literal["cancelled", "superseded"]


class Holder:
    """One running attempt: the cancel scope of its call, and why it was aborted, if it was."""

    __slots__ = ("key", "reason", "scope")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.scope = anyio.CancelScope()
        self.reason: AbortReason | None = None

    def abort(self, reason: AbortReason) -> None:
        """Cancel the call (now, or as soon as it starts); the first reason given sticks."""
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()


class Holders:
    """Running attempts by ``(execution_id, action_id)``; at most one per action."""

    def __init__(self) -> None:
        self._by_action: dict[tuple[str, str], Holder] = {}

    def __len__(self) -> int:
        return len(self._by_action)

    def hold(self, execution_id: str, action_id: str) -> Holder:
        """Register an attempt that just started; an older one of the action is superseded."""
        key = (execution_id, action_id)
        previous = self._by_action.get(key)
        if previous is not None:
            previous.abort("superseded")
        holder = self._by_action[key] = Holder(key)
        return holder

    def release(self, holder: Holder) -> None:
        """The attempt is over (no error if a newer one replaced it)."""
        if self._by_action.get(holder.key) is holder:
            del self._by_action[holder.key]

    def running(self, execution_id: str, action_id: str) -> bool:
        """Whether an attempt of the action runs in this process."""
        return (execution_id, action_id) in self._by_action

    def abort(self, execution_id: str, action_id: str, reason: AbortReason) -> bool:
        """Abort the action's running attempt; whether there was one."""
        holder = self._by_action.get((execution_id, action_id))
        if holder is None:
            return False
        holder.abort(reason)
        return True
