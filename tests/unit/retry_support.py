"""Plays the log, the orchestrator's ``decide`` and the executor around retries, without a
server: every event gets a stream sequence, as the log would give it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionStarted,
    ErrorInfo,
    Event,
    ExecutionCancelRequested,
    ExecutionRetried,
    PlanSubmitted,
)
from eventstore.fold import apply
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.records import Guard, RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import subject_for
from orchestrator.decide import decide
from orchestrator.guards import guard_for
from projections.retry import reset_for

URL = "http://127.0.0.1:9/x"


def http(action_id: str, *deps: str, **fields: Any) -> Action:
    """An HTTP action depending on ``deps``."""
    fields.setdefault("request", RequestSpec(url=URL))
    return Action(id=action_id, depends_on=list(deps), **fields)


def chain(*ids: str, **fields: Any) -> Plan:
    """``ids[0] -> ids[1] -> ...``, each depending on the one before."""
    actions = [http(a, *([ids[n - 1]] if n else [])) for n, a in enumerate(ids)]
    return Plan(id="chain", actions=actions, **fields)


class Play:
    """One execution: each event is stored (a sequence), folded, then decided on."""

    def __init__(self, plan: Plan, execution_id: str = "e1") -> None:
        self.execution_id = execution_id
        self.sequence = 0
        self.state_or_none: ExecutionState | None = None
        self.records: list[RecordedEvent] = []
        self.guards: list[tuple[Event, Guard | None]] = []
        self.first = self.feed(PlanSubmitted(execution_id=execution_id, plan=plan))

    @property
    def state(self) -> ExecutionState:
        assert self.state_or_none is not None
        return self.state_or_none

    def store(self, event: Event) -> int:
        """Append ``event`` to the played log and fold it; its sequence."""
        self.sequence += 1
        record = RecordedEvent(self.sequence, subject_for(event), event)
        self.records.append(record)
        self.state_or_none = apply(self.state_or_none, record)
        return self.sequence

    def feed(self, event: Event) -> list[Event]:
        """Store ``event``, then the decisions on it (with the guards they would carry)."""
        self.store(event)
        decisions = decide(self.state_or_none, event)
        guards = [guard_for(d, self.state_or_none) for d in decisions]
        for decision, guard in zip(decisions, guards, strict=True):
            self.guards.append((decision, guard))
            self.store(decision)
        return decisions

    def start(self, key: str) -> list[Event]:
        return self.feed(ActionStarted(execution_id=self.execution_id, action_id=key, attempt=1))

    def complete(self, key: str, output: dict[str, Any] | None = None) -> list[Event]:
        return self.feed(
            ActionCompleted(
                execution_id=self.execution_id, action_id=key, attempt=1, output=output or {}
            )
        )

    def fail(self, key: str, attempt: int = 1) -> list[Event]:
        error = ErrorInfo(message="boom", code="http_5xx", status_code=500)
        return self.feed(
            ActionFailed(
                execution_id=self.execution_id, action_id=key, attempt=attempt, error=error
            )
        )

    def cancel(self) -> list[Event]:
        return self.feed(ExecutionCancelRequested(execution_id=self.execution_id, reason="stop"))

    def retry(self, from_actions: Sequence[str] = (), *, only_failed: bool = False) -> list[Event]:
        """What a client's retry appends (the reset from :func:`reset_for`), and the decisions."""
        event = ExecutionRetried(
            execution_id=self.execution_id,
            run=self.state.run + 1,
            reset=reset_for(self.state, from_actions, only_failed=only_failed),
            from_actions=list(from_actions),
            only_failed=only_failed,
            requested_by="ana",
        )
        return self.feed(event)


def requested(events: list[Event]) -> list[str]:
    """The keys of the dispatches among ``events``."""
    return [e.action_id for e in events if isinstance(e, ActionExecuteRequested)]


def failed_at_third(**output: Any) -> Play:
    """``one -> two -> three -> four``: one and two completed, three failed, the execution
    failed (four skipped: its dependency failed)."""
    play = Play(chain("one", "two", "three", "four"))
    play.complete("one", {"n": 1})
    play.complete("two", {"n": 2, **output})
    play.fail("three")
    assert play.state.status == "failed"
    return play
