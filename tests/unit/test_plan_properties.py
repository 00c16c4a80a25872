"""Properties of plan validation over random DAGs."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from eventstore.dag import find_cycle, topological_levels, upstream
from eventstore.errors import PlanValidationError
from eventstore.plan_validation import parse_plan


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """(node count, edges) where every edge points from a higher to a lower index."""
    size = draw(st.integers(min_value=1, max_value=25))
    pairs = [(high, low) for high in range(size) for low in range(high)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    return size, edges


def document(size: int, edges: list[tuple[int, int]]) -> dict[str, Any]:
    depends_on: dict[int, list[str]] = {n: [] for n in range(size)}
    for source, target in edges:
        depends_on[source].append(f"n{target}")
    return {
        "id": "random",
        "actions": [
            {"id": f"n{n}", "type": "noop", "depends_on": depends_on[n]} for n in range(size)
        ],
    }


@settings(max_examples=200, deadline=None)
@given(random_dags())
def test_any_dag_validates(dag: tuple[int, list[tuple[int, int]]]) -> None:
    size, edges = dag

    plan = parse_plan(document(size, edges))

    levels = topological_levels(plan)
    position = {node: depth for depth, level in enumerate(levels) for node in level}
    assert sorted(position) == sorted(f"n{n}" for n in range(size))
    for source, target in edges:
        assert position[f"n{target}"] < position[f"n{source}"]


@st.composite
def dags_with_a_path(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]], list[int]]:
    """A random DAG containing a path of at least two nodes (the path's edges are included)."""
    size, edges = draw(random_dags().filter(lambda dag: dag[0] >= 2))
    length = draw(st.integers(min_value=2, max_value=size))
    nodes = sorted(
        draw(st.lists(st.integers(0, size - 1), min_size=length, max_size=length, unique=True)),
        reverse=True,
    )
    path_edges = list(itertools.pairwise(nodes))
    all_edges = list(dict.fromkeys([*edges, *path_edges]))
    return size, all_edges, nodes


@settings(max_examples=200, deadline=None)
@given(dags_with_a_path())
def test_a_back_edge_on_a_path_is_reported_as_a_real_cycle(
    dag: tuple[int, list[tuple[int, int]], list[int]],
) -> None:
    size, edges, path = dag
    # The path runs from path[0] (highest) down to path[-1]; an edge back closes a loop.
    back_edge = (path[-1], path[0])
    doc = document(size, [*edges, back_edge])
    depends_on = {a["id"]: set(a["depends_on"]) for a in doc["actions"]}

    with pytest.raises(PlanValidationError) as caught:
        parse_plan(doc)

    cycles = [p for p in caught.value.problems if p.startswith("cycle: ")]
    assert cycles, caught.value.problems
    for problem in cycles:
        cycle = problem.removeprefix("cycle: ").split(" -> ")
        assert len(cycle) >= 3
        assert cycle[0] == cycle[-1]
        for node, dependency in itertools.pairwise(cycle):
            assert dependency in depends_on[node], (problem, node, dependency)


@settings(max_examples=100, deadline=None)
@given(random_dags())
def test_find_cycle_is_none_exactly_for_dags(dag: tuple[int, list[tuple[int, int]]]) -> None:
    size, edges = dag
    graph = {f"n{n}": [f"n{t}" for s, t in edges if s == n] for n in range(size)}

    assert find_cycle(graph) is None


@settings(max_examples=100, deadline=None)
@given(random_dags(), st.data())
def test_templates_are_accepted_exactly_on_upstream_actions(
    dag: tuple[int, list[tuple[int, int]]], data: st.DataObject
) -> None:
    size, edges = dag
    plan = parse_plan(document(size, edges))
    source = data.draw(st.sampled_from([a.id for a in plan.actions]))
    target = data.draw(st.sampled_from([a.id for a in plan.actions if a.id != source] or [source]))
    doc = document(size, edges)
    for action in doc["actions"]:
        if action["id"] == source:
            action["input"] = f"{{{{actions.{target}.output}}}}"

    if target in upstream(plan, source):
        assert parse_plan(doc).action(source).input == f"{{{{actions.{target}.output}}}}"
    else:
        with pytest.raises(PlanValidationError) as caught:
            parse_plan(doc)
        (problem,) = caught.value.problems
        assert problem.startswith(f'action "{source}": input: template')


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["{{", "{{input.x}}", "{{actions.a.output}}", "http://h/", "a", "noop"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["id", "actions", "depends_on", "dependsOn", "request", "url", "when", "path",
             "equals", "in", "retry", "maxAttempts", "factor", "timeoutMs", "queues", "type",
             "input", "method", "headers", "x"]
        ),
        children,
        max_size=5,
    ),
    max_leaves=20,
)  # fmt: skip


def mutate(value: Any, path: list[int], replacement: Any) -> Any:
    """Replace the node reached by following ``path`` (child indexes) with ``replacement``."""
    if not path:
        return replacement
    if isinstance(value, dict) and value:
        key = list(value)[path[0] % len(value)]
        return {**value, key: mutate(value[key], path[1:], replacement)}
    if isinstance(value, list) and value:
        index = path[0] % len(value)
        return [*value[:index], mutate(value[index], path[1:], replacement), *value[index + 1 :]]
    return replacement


VALID = {
    "id": "p",
    "input": {"x": 1},
    "actions": [
        {"id": "a", "request": {"url": "http://h/{{input.x}}"}, "retry": {"maxAttempts": 2}},
        {"id": "b", "type": "noop", "dependsOn": ["a"], "input": "{{actions.a.output}}",
         "when": {"path": "actions.a.status", "equals": "completed"}},
    ],
}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_arbitrary_json_never_crashes_the_validator(document: Any) -> None:
    try:
        plan = parse_plan(document if isinstance(document, dict) else json.dumps(document))
    except PlanValidationError as exc:
        assert exc.problems
        assert all(isinstance(p, str) and p and "\n" not in p for p in exc.problems)
    else:
        assert plan.actions


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10), max_size=5), JSON_VALUES)
def test_mutated_valid_plan_is_accepted_or_rejected_with_problems(
    path: list[int], replacement: Any
) -> None:
    document = mutate(VALID, path, replacement)
    assume(isinstance(document, dict))

    try:
        first = parse_plan(document)
    except PlanValidationError as exc:
        assert exc.problems
        with pytest.raises(PlanValidationError) as again:
            parse_plan(json.dumps(document))
        assert again.value.problems == exc.problems
    else:
        assert parse_plan(json.dumps(document)) == first
