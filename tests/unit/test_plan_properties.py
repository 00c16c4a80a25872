"""Properties of plan validation over random DAGs."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
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
