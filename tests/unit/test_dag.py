"""The plan as a graph: cycles, levels, upstream sets, dependents, reachability."""

from __future__ import annotations

import pytest

from eventstore.dag import (
    Reachability,
    dependents_index,
    find_cycle,
    find_cycles,
    strongly_connected_components,
    topological_levels,
    upstream,
)
from eventstore.plan import Action, Plan


def plan_of(**depends_on: list[str]) -> Plan:
    return Plan(
        id="p",
        actions=[
            Action(id=name, type="noop", depends_on=deps) for name, deps in depends_on.items()
        ],
    )


DIAMOND = plan_of(fetch=[], left=["fetch"], right=["fetch"], merge=["left", "right"])


def test_acyclic_graph_has_no_cycle() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None


def test_two_node_cycle_is_a_closed_path() -> None:
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]


def test_self_loop_is_a_cycle() -> None:
    assert find_cycle({"a": [], "b": ["b"]}) == ["b", "b"]


def test_shortest_cycle_through_the_first_node_is_reported() -> None:
    edges = {"a": ["b"], "b": ["c", "a"], "c": ["a"]}

    assert find_cycle(edges) == ["a", "b", "a"]


def test_edges_to_unknown_nodes_are_ignored() -> None:
    assert find_cycle({"a": ["ghost"], "b": ["a"]}) is None


def test_one_cycle_per_component_in_mapping_order() -> None:
    edges = {"x": ["y"], "y": ["x"], "a": ["b"], "b": ["c"], "c": ["a"], "free": []}

    assert find_cycles(edges) == [["x", "y", "x"], ["a", "b", "c", "a"]]


def test_components_come_after_what_they_point_to() -> None:
    components = strongly_connected_components({"c": ["b"], "b": ["a"], "a": []})

    assert components == [["a"], ["b"], ["c"]]


def test_deep_chain_does_not_hit_the_recursion_limit() -> None:
    edges = {f"n{i}": [f"n{i - 1}"] if i else [] for i in range(20_000)}
    edges["n0"] = ["n19999"]

    cycle = find_cycle(edges)

    assert cycle is not None
    assert len(cycle) == 20_001
    assert cycle[0] == cycle[-1] == "n0"


def test_topological_levels_group_parallel_actions() -> None:
    assert topological_levels(DIAMOND) == [["fetch"], ["left", "right"], ["merge"]]


def test_level_is_one_more_than_the_deepest_dependency() -> None:
    plan = plan_of(a=[], b=["a"], c=["b"], d=["a", "c"], e=[])

    assert topological_levels(plan) == [["a", "e"], ["b"], ["c"], ["d"]]


def test_topological_levels_reject_a_cycle() -> None:
    with pytest.raises(ValueError, match=r"cycle: a -> b -> a"):
        topological_levels(plan_of(a=["b"], b=["a"]))


def test_upstream_is_transitive_and_excludes_the_action() -> None:
    assert upstream(DIAMOND, "merge") == {"fetch", "left", "right"}
    assert upstream(DIAMOND, "left") == {"fetch"}
    assert upstream(DIAMOND, "fetch") == set()


def test_upstream_of_unknown_action_raises() -> None:
    with pytest.raises(KeyError):
        upstream(DIAMOND, "ghost")


def test_dependents_index_lists_direct_dependents_in_plan_order() -> None:
    assert dependents_index(DIAMOND) == {
        "fetch": ["left", "right"],
        "left": ["merge"],
        "right": ["merge"],
        "merge": [],
    }


def test_dependents_index_counts_a_repeated_dependency_once() -> None:
    assert dependents_index(plan_of(a=[], b=["a", "a"]))["a"] == ["b"]


def test_reachability_follows_edges_transitively() -> None:
    reach = Reachability({"a": [], "b": ["a"], "c": ["b"], "d": []})

    assert reach.reaches("c", "a")
    assert reach.reaches("c", "b")
    assert not reach.reaches("a", "c")
    assert not reach.reaches("c", "d")
    assert not reach.reaches("c", "c")
    assert not reach.reaches("ghost", "a")


def test_reachability_inside_a_cycle() -> None:
    reach = Reachability({"a": ["b"], "b": ["a"], "c": ["a"]})

    assert reach.reaches("a", "a")
    assert reach.reaches("c", "b")
    assert not reach.reaches("a", "c")


def test_reachability_on_a_long_chain_does_not_recurse() -> None:
    # 5,000 levels: past the interpreter's recursion limit, so a recursive walk would fail.
    edges = {f"n{i}": [f"n{i - 1}"] if i else [] for i in range(5_000)}

    reach = Reachability(edges)

    assert reach.reaches("n4999", "n0")
    assert not reach.reaches("n0", "n4999")
