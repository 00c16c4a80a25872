"""Pattern builders produce the intended wiring, and their plans pass parse_plan."""

from __future__ import annotations

import msgspec
import pytest

from eventstore.dag import topological_levels
from eventstore.errors import PlanValidationError
from eventstore.patterns import (
    batch,
    conditional_branch,
    fan_out_fan_in,
    negate_condition,
    retry_with_fallback,
    sequential_pipeline,
)
from eventstore.plan import Action, Condition, Plan, RequestSpec, RetryPolicy
from eventstore.plan_validation import parse_plan
from eventstore.routes import with_routes


def call(action_id: str, **fields: object) -> Action:
    return Action(id=action_id, request=RequestSpec(url=f"http://svc.local/{action_id}"), **fields)  # type: ignore[arg-type]


def assert_valid_document(plan: Plan) -> None:
    assert parse_plan(msgspec.json.encode(plan)) == plan


def test_sequential_pipeline_chains_each_step_to_the_previous() -> None:
    plan = sequential_pipeline(
        "etl",
        [call("extract"), call("transform", depends_on=["extract"]), call("load")],
        input={"day": "2024-01-01"},
    )

    assert [a.depends_on for a in plan.actions] == [[], ["extract"], ["transform"]]
    assert topological_levels(plan) == [["extract"], ["transform"], ["load"]]
    assert plan.input == {"day": "2024-01-01"}
    assert_valid_document(plan)


def test_pipeline_step_may_use_any_earlier_output() -> None:
    load = call("load", input={"rows": "{{actions.extract.output.rows}}"})

    plan = sequential_pipeline("etl", [call("extract"), call("transform"), load])

    assert plan.action("load").input == {"rows": "{{actions.extract.output.rows}}"}


def test_fan_out_fan_in_runs_branches_in_parallel_then_joins() -> None:
    plan = fan_out_fan_in(
        "scatter",
        [call(f"part-{n}") for n in range(3)],
        call("merge"),
        source=call("split"),
    )

    assert topological_levels(plan) == [["split"], ["part-0", "part-1", "part-2"], ["merge"]]
    assert plan.action("merge").depends_on == ["part-0", "part-1", "part-2"]
    assert_valid_document(plan)


def test_conditional_branch_negates_the_condition_for_the_other_branch() -> None:
    approved = Condition(path="actions.check.output.approved", truthy=True)

    plan = conditional_branch("review", call("check"), approved, call("ship"), call("reject"))

    assert plan.action("ship").when == approved
    assert plan.action("reject").when == Condition(
        path="actions.check.output.approved", truthy=False
    )
    assert plan.action("ship").depends_on == plan.action("reject").depends_on == ["check"]
    assert_valid_document(plan)


def test_conditional_branch_keeps_an_explicit_else_condition() -> None:
    tier = Condition(path="actions.check.output.tier", in_=["gold", "premium"])
    other = Condition(path="actions.check.output.tier", equals="bronze")

    plan = conditional_branch("tiers", call("check"), tier, call("vip"), call("basic", when=other))

    assert plan.action("basic").when == other


def test_conditional_branch_without_else_has_one_branch() -> None:
    plan = conditional_branch(
        "maybe", call("check"), Condition(path="input.enabled", truthy=True), call("run")
    )

    assert [a.id for a in plan.actions] == ["check", "run"]


def test_in_condition_cannot_be_negated() -> None:
    with pytest.raises(ValueError, match="cannot negate an 'in' condition"):
        conditional_branch(
            "tiers",
            call("check"),
            Condition(path="actions.check.output.tier", in_=["gold"]),
            call("vip"),
            call("basic"),
        )


@pytest.mark.parametrize(
    ("condition", "negated"),
    [
        (Condition(path="input.a", equals=1), Condition(path="input.a", not_equals=1)),
        (Condition(path="input.a", not_equals=None), Condition(path="input.a", equals=None)),
        (Condition(path="input.a", exists=True), Condition(path="input.a", exists=False)),
        (Condition(path="input.a", truthy=False), Condition(path="input.a", truthy=True)),
    ],
)
def test_negate_condition(condition: Condition, negated: Condition) -> None:
    assert negate_condition(condition) == negated
    assert negate_condition(negated) == condition


def test_negate_condition_needs_one_operator() -> None:
    with pytest.raises(ValueError, match="exactly one operator"):
        negate_condition(Condition(path="input.a"))


def test_retry_with_fallback_wires_primary_and_fallback() -> None:
    retry = RetryPolicy(max_attempts=4, min_backoff_ms=100, max_backoff_ms=1000)

    plan = retry_with_fallback("resilient", call("primary"), call("backup"), retry)

    primary, fallback = plan.actions
    assert primary.retry == retry
    assert primary.on_error == ["backup"]
    assert fallback.depends_on == ["primary"]
    assert fallback.when is None
    assert with_routes(plan).action("backup").run_if == "failed"
    assert_valid_document(plan)


def test_batch_makes_one_action_per_chunk() -> None:
    plan = batch(
        "emails",
        [f"user-{n}" for n in range(7)],
        3,
        lambda index, chunk: Action(id=f"send-{index}", type="mailer", input={"to": chunk}),
        then=Action(id="report", type="noop"),
        concurrency_limit=2,
    )

    assert [a.input for a in plan.actions[:3]] == [
        {"to": ["user-0", "user-1", "user-2"]},
        {"to": ["user-3", "user-4", "user-5"]},
        {"to": ["user-6"]},
    ]
    assert topological_levels(plan) == [["send-0", "send-1", "send-2"], ["report"]]
    assert plan.queues["mailer"].concurrency_limit == 2
    assert_valid_document(plan)


def test_sequential_batch_chains_the_chunks() -> None:
    plan = batch(
        "slow",
        list(range(4)),
        2,
        lambda index, chunk: Action(id=f"c{index}", type="noop", input=chunk),
        sequential=True,
    )

    assert [a.depends_on for a in plan.actions] == [[], ["c0"]]


def test_batch_rejects_a_chunk_size_below_one() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        batch("b", [1], 0, lambda index, chunk: Action(id="x", type="noop"))


def test_batch_limit_needs_a_single_queue() -> None:
    with pytest.raises(ValueError, match="one queue"):
        batch(
            "b",
            [1, 2],
            1,
            lambda index, chunk: Action(id=f"x{index}", type="noop", queue=f"q{index}"),
            concurrency_limit=1,
        )


def test_builders_reject_invalid_actions() -> None:
    with pytest.raises(PlanValidationError, match='duplicate action id "a"'):
        sequential_pipeline("dup", [call("a"), call("a")])
