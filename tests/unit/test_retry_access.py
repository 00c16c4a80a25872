"""Who may retry: the client role publishes ``execution.retried``, the orchestrator consumes it."""

from __future__ import annotations

import pytest

from eventstore.access import ROLES, Role, permissions
from eventstore.events import ExecutionRetried
from eventstore.subjects import (
    ORCHESTRATOR_FILTERS,
    orchestrator_subject_type,
    subject_for,
    terminal_filter,
)


def test_a_client_may_publish_a_retry() -> None:
    assert "execution.retried.*" in permissions(Role.CLIENT).publish_allow


@pytest.mark.parametrize("role", [r for r in ROLES if r not in (Role.CLIENT, Role.ADMIN)])
def test_no_other_role_publishes_a_retry(role: Role) -> None:
    assert not any("retried" in s for s in permissions(role).publish_allow)


def test_the_orchestrator_consumes_retries_on_the_terminal_filter() -> None:
    subject = subject_for(ExecutionRetried(execution_id="e1", run=2, reset=["a"]))

    assert subject == "execution.retried.e1"
    assert "execution.retried.>" in ORCHESTRATOR_FILTERS
    assert orchestrator_subject_type(subject) == (ExecutionRetried, "e1")
    assert orchestrator_subject_type("execution.retried.e1.extra") is None
    assert terminal_filter("e1") == "execution.*.e1"
