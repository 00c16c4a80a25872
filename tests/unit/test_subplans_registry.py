"""The plan registry's names and values, who may write it, and the orchestrator's new
subscriptions (a child's end)."""

from __future__ import annotations

import pytest

from eventstore.access import Role, permissions
from eventstore.events import ExecutionCancelled, ExecutionCompleted, ExecutionFailed
from eventstore.plan import Action, Plan
from eventstore.plan_registry import (
    PLAN_BUCKET,
    PlanRegistryError,
    RegistryEntry,
    decode_entry,
    encode_entry,
    plan_key,
    plan_name_of,
    plan_name_problem,
)
from eventstore.subjects import ORCHESTRATOR_FILTERS, orchestrator_subject_type

PLAN = Plan(id="greet", actions=[Action(id="a", type="noop")])


def test_names_are_one_key_token() -> None:
    assert plan_name_problem("send-welcome_2") is None
    assert plan_name_problem("a.b") is not None
    assert plan_name_problem("") is not None
    assert plan_key("greet") == "plan.greet"
    with pytest.raises(PlanRegistryError, match="must match"):
        plan_key("no spaces")
    assert plan_name_of("plan.greet") == "greet"
    assert plan_name_of("other.greet") is None
    assert plan_name_of("plan.a.b") is None


def test_an_entry_round_trips_with_its_revision() -> None:
    data = encode_entry(RegistryEntry(plan=PLAN, stored_at="2030-01-01T00:00:00Z"))
    registered = decode_entry("greet", data, 7)
    assert (registered.name, registered.revision, registered.plan) == ("greet", 7, PLAN)
    with pytest.raises(PlanRegistryError, match='registered plan "greet" is unreadable'):
        decode_entry("greet", b"{}", 1)


def test_clients_put_plans_the_orchestrator_and_projector_only_read_them() -> None:
    subject = f"$KV.{PLAN_BUCKET}.>"
    assert subject in permissions(Role.CLIENT).publish_allow
    orchestrator = permissions(Role.ORCHESTRATOR)
    assert not any(s.startswith(f"$KV.{PLAN_BUCKET}") for s in orchestrator.publish_allow)
    assert subject in permissions(Role.PROJECTOR).publish_deny
    # Reading is a direct get on the bucket's stream, which every role may do.
    for role in (Role.CLIENT, Role.ORCHESTRATOR):
        assert "$JS.API.DIRECT.GET.*" in permissions(role).publish_allow


def test_the_orchestrator_starts_children_and_cancels_them() -> None:
    allowed = permissions(Role.ORCHESTRATOR).publish_allow
    for subject in ("action.started.*.*", "plan.submitted.*", "execution.cancel.requested.*"):
        assert subject in allowed


@pytest.mark.parametrize(
    ("subject", "event_type"),
    [
        ("execution.completed.sub_1", ExecutionCompleted),
        ("execution.failed.sub_1", ExecutionFailed),
        ("execution.cancelled.sub_1", ExecutionCancelled),
    ],
)
def test_the_orchestrator_consumes_execution_ends(subject: str, event_type: type) -> None:
    assert orchestrator_subject_type(subject) == (event_type, "sub_1")
    assert orchestrator_subject_type(subject + ".x") is None
    prefix = subject.rsplit(".", 1)[0]
    assert f"{prefix}.>" in ORCHESTRATOR_FILTERS


def test_the_orchestrator_filters_do_not_overlap() -> None:
    # A consumer's filter subjects must not overlap (the server refuses the consumer).
    roots = [f.removesuffix(".>") for f in ORCHESTRATOR_FILTERS]
    for one in roots:
        for other in roots:
            assert one == other or not other.startswith(one + ".")
