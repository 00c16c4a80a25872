"""Errors of the read side and the StateManager facade (all are ``TepError``)."""

from __future__ import annotations

from eventstore.errors import TepError

__all__ = [
    "ActionNotFoundError",
    "ExecutionNotFoundError",
    "InvalidExecutionIdError",
    "InvalidTransitionError",
    "ResumeTimeoutError",
    "RetryRefusedError",
    "ViewTimeoutError",
    "WaitpointRefusedError",
]


class ExecutionNotFoundError(TepError, LookupError):
    """No execution with this id exists (no ``plan.submitted`` in the log or the view)."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"execution {execution_id!r} not found")


class InvalidExecutionIdError(TepError, ValueError):
    """A string that cannot name an execution (it would not be a single subject token)."""

    def __init__(self, execution_id: str, problem: str) -> None:
        self.execution_id = execution_id
        super().__init__(problem)


class ActionNotFoundError(TepError, LookupError):
    """The execution's plan has no action with this id."""

    def __init__(self, execution_id: str, action_id: str) -> None:
        self.execution_id = execution_id
        self.action_id = action_id
        super().__init__(f"execution {execution_id!r} has no action {action_id!r}")


class InvalidTransitionError(TepError, ValueError):
    """A status change that the action's current status does not allow (nothing was written).

    Attributes:
        current: the action's status now.
        requested: the status asked for.
    """

    def __init__(self, action_id: str, current: str, requested: str, why: str = "") -> None:
        self.action_id = action_id
        self.current = current
        self.requested = requested
        reason = f": {why}" if why else ""
        super().__init__(f"action {action_id!r}: cannot go from {current} to {requested}{reason}")


class ViewTimeoutError(TepError, TimeoutError):
    """The view did not reach the awaited state (a sequence, a terminal status) in time."""


class WaitpointRefusedError(TepError, ValueError):
    """A resume request that cannot end the waitpoint: nothing it asked for happened.

    Raised before anything is appended when the execution's history already says why (the
    words are the fold's, see :func:`eventstore.waits.resume_refusal`), or after the request
    was appended when something else ended the wait first (another resume, the timeout).

    Attributes:
        execution_id: the execution (empty when a token named none).
        action_id: the waitpoint (empty when a token named none).
        reason: why, in one line.
        problems: each way the data does not match the waitpoint's schema, as
            ``<path>: <message>`` (empty when the refusal has another reason).
        appended: whether the request was appended (it lost a race) or refused beforehand.
    """

    def __init__(
        self,
        reason: str,
        *,
        execution_id: str = "",
        action_id: str = "",
        problems: tuple[str, ...] = (),
        appended: bool = False,
    ) -> None:
        self.execution_id = execution_id
        self.action_id = action_id
        self.reason = reason
        self.problems = problems
        self.appended = appended
        super().__init__(reason)


class ResumeTimeoutError(TepError, TimeoutError):
    """A resume request was accepted, but its outcome was not in the log in time.

    The request stands: an orchestrator records the outcome once one runs.

    Attributes:
        sequence: the stream sequence of the accepted request.
    """

    def __init__(self, message: str, sequence: int) -> None:
        self.sequence = sequence
        super().__init__(message)


class RetryRefusedError(TepError, ValueError):
    """A retry that cannot re-open the execution: nothing was appended.

    For example the execution still runs, an action named to run again from is not in its
    plan, or nothing failed and no action was named (see :mod:`projections.retry`).
    """
