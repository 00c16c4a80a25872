"""The plan as a graph: cycles, levels, upstream sets and dependents. Pure.

Edges point from an action to the actions it depends on (``depends_on``), so a cycle
``[a, b, a]`` reads "a depends on b, which depends on a". Every function is deterministic:
nodes are visited in the order of the mapping (plan order), never in set order.

Example:
    >>> find_cycle({"a": ["b"], "b": ["a"], "c": []})
    ['a', 'b', 'a']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from eventstore.errors import TepError
from eventstore.plan import Plan

__all__ = [
    "CycleError",
    "Edges",
    "Reachability",
    "dependents_index",
    "find_cycle",
    "find_cycles",
    "plan_edges",
    "strongly_connected_components",
    "topological_levels",
    "upstream",
]

Edges = Mapping[str, Sequence[str]]
"""Node -> the nodes it points to. Targets that are not keys are ignored."""


class CycleError(TepError, ValueError):
    """The graph has a cycle where an order is needed; the message names one."""


def plan_edges(plan: Plan) -> dict[str, list[str]]:
    """Action id -> its ``depends_on``, in plan order."""
    return {action.id: list(action.depends_on) for action in plan.actions}


def strongly_connected_components(edges: Edges) -> list[list[str]]:
    """Tarjan's components, each in discovery order, listed targets-first.

    A component comes after every component it points to, so for ``depends_on`` edges the list
    is a valid execution order of the condensed graph. Iterative: deep chains of thousands of
    actions do not hit the recursion limit.
    """
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    for root in edges:
        if root in index_of:
            continue
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work[-1]
            targets = edges[node]
            if position < len(targets):
                work[-1] = (node, position + 1)
                target = targets[position]
                if target not in edges:
                    continue
                if target not in index_of:
                    index_of[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index_of[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                component.reverse()
                components.append(component)
    return components


def _cycle_through(start: str, members: set[str], edges: Edges) -> list[str]:
    """The shortest cycle from ``start`` back to itself inside one component (BFS)."""
    previous: dict[str, str] = {}
    queue: deque[str] = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for target in edges[node]:
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                path.reverse()
                return [*path, start]
            if target in members and target not in seen:
                seen.add(target)
                previous[target] = node
                queue.append(target)
    raise AssertionError(f"no cycle through {start!r} in its component")  # pragma: no cover


def find_cycles(edges: Edges) -> list[list[str]]:
    """One cycle per cyclic component, each as a closed path ``[a, ..., a]``.

    A self-loop is the cycle ``[a, a]``. Cycles start at the component's first node in the
    mapping's order and are listed in that order.
    """
    order = {node: position for position, node in enumerate(edges)}
    cycles: list[tuple[int, list[str]]] = []
    for component in strongly_connected_components(edges):
        start = min(component, key=order.__getitem__)
        if len(component) == 1 and start not in edges[start]:
            continue
        cycles.append((order[start], _cycle_through(start, set(component), edges)))
    cycles.sort(key=lambda item: item[0])
    return [cycle for _, cycle in cycles]


def find_cycle(edges: Edges) -> list[str] | None:
    """A cycle as a closed path like ``["a", "b", "a"]``, or ``None`` if the graph is acyclic.

    Example:
        >>> find_cycle({"a": ["a"]})
        ['a', 'a']
        >>> find_cycle({"a": [], "b": ["a"]}) is None
        True
    """
    cycles = find_cycles(edges)
    return cycles[0] if cycles else None


def topological_levels(plan: Plan) -> list[list[str]]:
    """Actions grouped by depth: level 0 has no dependencies, level n depends on level n - 1.

    Within a level actions keep plan order. Every action of a level can run in parallel once
    the previous levels finished.

    Raises:
        CycleError: the plan has a cycle (validated plans never do).
    """
    edges = plan_edges(plan)
    depth: dict[str, int] = {}
    for component in strongly_connected_components(edges):
        if len(component) > 1 or component[0] in edges[component[0]]:
            cycle = find_cycle(edges) or component
            raise CycleError("cycle: " + " -> ".join(cycle))
        node = component[0]
        depth[node] = 1 + max((depth[d] for d in edges[node] if d in depth), default=-1)
    levels: list[list[str]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for action in plan.actions:
        levels[depth[action.id]].append(action.id)
    return levels


def upstream(plan: Plan, action_id: str) -> set[str]:
    """Every action ``action_id`` depends on, directly or transitively (not itself).

    Raises:
        KeyError: no action has this id.
    """
    edges = plan_edges(plan)
    if action_id not in edges:
        raise KeyError(action_id)
    found: set[str] = set()
    pending = list(edges[action_id])
    while pending:
        node = pending.pop()
        if node in found or node not in edges:
            continue
        found.add(node)
        pending.extend(edges[node])
    found.discard(action_id)
    return found


def dependents_index(plan: Plan) -> dict[str, list[str]]:
    """Action id -> the actions that list it in ``depends_on`` (plan order); every id is a key."""
    index: dict[str, list[str]] = {action.id: [] for action in plan.actions}
    for action in plan.actions:
        for dependency in dict.fromkeys(action.depends_on):
            if dependency in index:
                index[dependency].append(action.id)
    return index


class Reachability:
    """Answers "is ``b`` upstream of ``a``?" in O(1) after one linear pass.

    Each node's upstream set is a bitmask (a Python int) built over the components in
    targets-first order, so a 5,000-action chain costs milliseconds, not a quadratic walk.
    Nodes on a cycle reach each other (and themselves).
    """

    def __init__(self, edges: Edges) -> None:
        self._bit = {node: 1 << position for position, node in enumerate(edges)}
        self._mask: dict[str, int] = {}
        for component in strongly_connected_components(edges):
            members = set(component)
            mask = 0
            for node in component:
                for target in edges[node]:
                    if target in members:
                        mask |= self._bit[target]
                    elif target in self._mask:
                        mask |= self._mask[target] | self._bit[target]
            for node in component:
                self._mask[node] = mask

    def reaches(self, source: str, target: str) -> bool:
        """Whether ``target`` is reachable from ``source`` by one or more edges."""
        bit = self._bit.get(target)
        mask = self._mask.get(source)
        return bit is not None and mask is not None and bool(mask & bit)
