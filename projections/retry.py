"""Re-running an ended execution from a step: which actions a retry resets, and the one
``execution.retried`` that does it, checked against the log.

Which actions are reset (:func:`reset_for`), in plan order:

- ``from_actions``: each named action and everything downstream of it, transitively (its
  dependents, their dependents, ... and the error routes named in ``on_error``), whatever
  their status. Upstream actions keep their outputs, which the reset actions see again.
- ``only_failed``: the failed and cancelled actions (and any that never started), and,
  downstream of them, only what did not complete (skipped, cancelled, failed): completed
  actions keep their results, even downstream.
- neither (the default): the failed and cancelled actions (and any that never started) and
  everything downstream of them, as if each were named in ``from_actions``.
- both: the union.

A failed or cancelled execution may be retried in each of these ways; a completed one only
with ``from_actions`` (a replay from there). A retry is refused (nothing appended) while the
execution runs, for an action its plan does not have, when it would reset nothing, when an
action that fails the execution would stay failed (not reset), and for an execution whose
plan was invalid.

The retry reads the execution's history from the log (not the view, which may lag), computes
the reset, and appends ``execution.retried`` guarded on the last event of the execution's
terminal filter (``execution.*.<execution>``, which the retry itself is on) being the one it
read: of two racing retries, one lands and the other is refused on its second look.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eventstore.dag import dependents_index
from eventstore.error_codes import ErrorCode
from eventstore.errors import ConcurrencyError
from eventstore.events import ExecutionRetried
from eventstore.fold import apply, blocking_failures, fold
from eventstore.jetstream.log import EventLog
from eventstore.plan import Plan
from eventstore.records import Guard, RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import execution_id_problem, subject_for, terminal_filter
from projections.errors import ExecutionNotFoundError, InvalidExecutionIdError, RetryRefusedError

__all__ = ["downstream", "reset_for", "retry"]

_ATTEMPTS = 5
_LISTED = 5
_NOT_SUCCEEDED = frozenset({"failed", "cancelled"})


def _listed(action_ids: Sequence[str]) -> str:
    shown = ", ".join(action_ids[:_LISTED])
    more = len(action_ids) - _LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def downstream(plan: Plan, roots: Iterable[str]) -> set[str]:
    """``roots`` and every action downstream of them: dependents and error routes, transitively."""
    dependents = dependents_index(plan)
    for action in plan.actions:
        dependents[action.id] = [*dependents[action.id], *action.on_error]
    found: set[str] = set()
    pending = list(roots)
    while pending:
        action_id = pending.pop()
        if action_id in found or action_id not in dependents:
            continue
        found.add(action_id)
        pending.extend(dependents[action_id])
    return found


def reset_for(
    state: ExecutionState, from_actions: Sequence[str] = (), *, only_failed: bool = False
) -> list[str]:
    """The actions a retry of ``state`` resets, in plan order (rules: see the module).

    Raises:
        RetryRefusedError: the execution cannot be retried so (the message says why).
    """
    execution = state.execution_id
    plan = state.plan
    if not state.terminal:
        cancelling = " (cancellation requested)" if state.cancel_requested else ""
        raise RetryRefusedError(
            f"execution {execution} is {state.status}{cancelling}: only a failed, cancelled "
            "or completed execution can be retried"
        )
    if plan is None or (state.error is not None and state.error.code == ErrorCode.INVALID_PLAN):
        raise RetryRefusedError(
            f"execution {execution} failed because its plan is invalid: nothing can run "
            "again; submit a corrected plan"
        )
    unknown = [a for a in dict.fromkeys(from_actions) if a not in state.actions]
    if unknown:
        noun = "action" if len(unknown) == 1 else "actions"
        raise RetryRefusedError(
            f"unknown {noun} {_listed(unknown)} in execution {execution} (plan {plan.id})"
        )
    if state.status == "completed" and not from_actions:
        raise RetryRefusedError(
            f"execution {execution} completed: nothing failed to run again; name the actions "
            "to run again from (--from ACTION)"
        )
    reset = downstream(plan, from_actions)
    if only_failed or not from_actions:
        reset |= _failed_and_after(state, plan, keep_completed=only_failed)
    if not reset:
        raise RetryRefusedError(f"execution {execution} {state.status}: nothing to retry")
    staying = [a for a in blocking_failures(state) if a not in reset]
    if staying:
        raise RetryRefusedError(
            f"{_listed(staying)} of execution {execution} would stay "
            f"{state.actions[staying[0]].status} and fail it again: run again from there "
            "too (--from), or retry only what failed (--only-failed)"
        )
    return [spec.id for spec in plan.actions if spec.id in reset]


def _failed_and_after(state: ExecutionState, plan: Plan, *, keep_completed: bool) -> set[str]:
    """The actions that failed, were cancelled or never started, and what is downstream of
    them (without what completed, with ``keep_completed``)."""
    roots = [
        spec.id
        for spec in plan.actions
        if (action := state.actions[spec.id]).status in _NOT_SUCCEEDED
        or (action.status == "pending" and action.dispatched_at is None)
    ]
    after = downstream(plan, roots)
    if keep_completed:
        after = {a for a in after if state.actions[a].status != "completed"}
    return after


async def retry(
    log: EventLog,
    execution_id: str,
    *,
    from_actions: Sequence[str] = (),
    only_failed: bool = False,
    requested_by: str | None = None,
    reason: str | None = None,
) -> ExecutionState:
    """Re-open an ended execution: append ``execution.retried`` resetting the actions
    :func:`reset_for` names.

    Returns:
        The execution's state right after the retry (folded from the log): running, each reset
        action pending as the new run with its earlier runs in ``runs``; ``last_sequence`` is
        where the retry was stored.

    Raises:
        InvalidExecutionIdError: ``execution_id`` cannot name an execution.
        ExecutionNotFoundError: no such execution in the log.
        RetryRefusedError: the execution cannot be retried so (nothing was appended); also
            when another retry (or anything else ending or re-opening it) came first.
        ConcurrencyError: the log kept moving on the execution's terminal filter.
    """
    problem = execution_id_problem(execution_id)
    if problem:
        raise InvalidExecutionIdError(execution_id, problem)
    # One action id alone is one action, not its letters.
    named = [from_actions] if isinstance(from_actions, str) else list(dict.fromkeys(from_actions))
    for attempt in range(_ATTEMPTS):
        # The terminal filter's last event first: a history read after it contains it, and
        # anything stored on the filter after it makes the append conflict.
        last = await log.last_on(terminal_filter(execution_id), leader=True)
        state = fold(await log.read_execution(execution_id))
        if state is None:
            raise ExecutionNotFoundError(execution_id)
        event = ExecutionRetried(
            execution_id=execution_id,
            correlation_id=execution_id,
            run=state.run + 1,
            reset=reset_for(state, named, only_failed=only_failed),
            from_actions=named,
            only_failed=only_failed,
            requested_by=requested_by,
            reason=reason,
        )
        guard = Guard(0 if last is None else last.sequence, terminal_filter(execution_id))
        try:
            stored = await log.append(event, guard=guard)
        except ConcurrencyError:
            if attempt == _ATTEMPTS - 1:
                raise
            continue  # something ended or re-opened it meanwhile: look again
        apply(state, RecordedEvent(stored.sequence, subject_for(event), event))
        return state
    raise AssertionError("unreachable")
