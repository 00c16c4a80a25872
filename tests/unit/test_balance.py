"""The fair-share rule orchestrator processes share partitions by, and how a table of leases
converges under it when several processes apply it round after round (simulated: every round
each member plans from the same snapshot, releases apply, then takes by compare-and-set on the
revision the plan saw, contenders in a seeded random order)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pytest

from orchestrator.balance import Moves, moves, shares

# ---------------------------------------------------------------- shares


@pytest.mark.parametrize("count", [1, 5, 16, 17, 256])
@pytest.mark.parametrize("n", range(1, 21))
def test_shares_add_up_to_the_partitions(n: int, count: int) -> None:
    members = [f"m{i:02d}" for i in range(n)]
    fair = shares(members, count)
    assert sum(fair.values()) == count
    assert set(fair) == set(members)
    assert max(fair.values()) - min(fair.values()) <= 1
    # The first members in id order take the remainder.
    ordered = [fair[m] for m in sorted(members)]
    assert ordered == sorted(ordered, reverse=True)


def test_three_members_over_sixteen_hold_five_or_six() -> None:
    fair = shares(["c", "a", "b"], 16)
    assert fair == {"a": 6, "b": 5, "c": 5}


def test_shares_ignore_order_and_duplicates() -> None:
    assert shares(["b", "a", "b", "c"], 16) == shares(["a", "b", "c"], 16)


def test_more_members_than_partitions() -> None:
    fair = shares([f"m{i:02d}" for i in range(20)], 16)
    assert Counter(fair.values()) == {1: 16, 0: 4}


def test_no_members_no_shares() -> None:
    assert shares([], 16) == {}


# ---------------------------------------------------------------- moves, one step


def test_a_lone_member_takes_every_free_partition() -> None:
    assert moves("a", [], 4, {}) == Moves(take=(0, 1, 2, 3))
    assert moves("a", ["a"], 4, {0: None, 1: None, 2: None, 3: None}) == Moves(take=(0, 1, 2, 3))


def test_takes_the_lowest_free_partitions_up_to_its_share() -> None:
    holders = {0: "b", 1: None, 2: None, 3: "b", 4: None, 5: None}
    assert moves("a", ["a", "b"], 6, holders) == Moves(take=(1, 2, 4))


def test_a_member_at_its_share_does_nothing() -> None:
    holders = {0: "a", 1: "a", 2: "b", 3: "b"}
    assert moves("a", ["a", "b"], 4, holders) == Moves()
    assert moves("b", ["a", "b"], 4, holders) == Moves()


def test_gives_up_its_highest_partitions_as_far_as_others_have_room() -> None:
    holders: dict[int, str | None] = {p: "a" for p in range(8)}
    # b joined: its share is 4 and it has none.
    assert moves("a", ["a", "b"], 8, holders) == Moves(release=(4, 5, 6, 7))
    # c holds two of them already over its share: room is only b's.
    holders.update({6: "c", 7: "c"})
    assert moves("a", ["a", "b", "c"], 8, holders).release == (3, 4, 5)


def test_gives_up_nothing_while_free_partitions_cover_the_others_room() -> None:
    holders: dict[int, str | None] = {p: "a" for p in range(6)}
    holders.update({6: None, 7: None})
    # b's share is 4; two are free for it already, so a gives up only two.
    assert moves("a", ["a", "b"], 8, holders) == Moves(release=(4, 5))
    holders.update({4: None, 5: None})
    assert moves("a", ["a", "b"], 8, holders) == Moves()


def test_over_share_without_room_keeps_what_it_has() -> None:
    # b is not seen as a member yet: a's view gives nobody room.
    holders: dict[int, str | None] = {p: "a" for p in range(8)}
    assert moves("a", ["a"], 8, holders) == Moves()


def test_long_free_orphans_are_taken_beyond_the_share() -> None:
    holders: dict[int, str | None] = {0: "a", 1: "a", 2: "b", 3: "b", 4: None, 5: None}
    # Both at their share (3 members seen: a dead one still counted); 4 and 5 wait...
    assert moves("a", ["a", "b", "dead"], 6, holders) == Moves()
    # ...until free for longer than the lease time.
    assert moves("a", ["a", "b", "dead"], 6, holders, long_free={5}) == Moves(take=(5,))
    assert moves("a", ["a", "b", "dead"], 6, holders, long_free={4, 5}) == Moves(take=(4, 5))


def test_orphans_come_after_the_share_and_are_not_taken_twice() -> None:
    holders: dict[int, str | None] = {0: None, 1: None, 2: None, 3: "b"}
    assert moves("a", ["a", "b"], 4, holders, long_free={0, 2}) == Moves(take=(0, 1, 2))


def test_holders_that_are_not_members_count_as_held() -> None:
    # "ghost" holds 2 and 3 (its lease still live, its membership gone).
    holders: dict[int, str | None] = {0: "a", 1: "a", 2: "ghost", 3: "ghost"}
    assert moves("a", ["a"], 4, holders) == Moves()


# ---------------------------------------------------------------- simulation


@dataclass
class Table:
    """A lease bucket: one holder and revision per partition."""

    count: int
    holders: dict[int, str | None] = field(default_factory=dict)
    revisions: dict[int, int] = field(default_factory=dict)
    free_rounds: Counter[int] = field(default_factory=Counter)

    def held_by(self) -> Counter[str]:
        return Counter(h for h in self.holders.values() if h is not None)

    def drop(self, member: str) -> None:
        """``member`` died: its leases expired."""
        for partition, holder in list(self.holders.items()):
            if holder == member:
                self._write(partition, None)

    def _write(self, partition: int, holder: str | None) -> None:
        self.holders[partition] = holder
        self.revisions[partition] = self.revisions.get(partition, 0) + 1


@dataclass
class Simulation:
    """Members applying :func:`moves` to one table, round by round."""

    table: Table
    members: set[str]
    seed: int = 0
    long_free_rounds: int = 3
    unseen: dict[str, set[str]] = field(default_factory=dict)
    """Per member, members it does not see yet (its view of the membership lags)."""
    stale: set[str] = field(default_factory=set)
    """Dead members everyone still sees (their member keys not expired yet)."""
    ghosts: dict[str, int] = field(default_factory=dict)
    """Dead holders whose leases are still live, and the round their leases expire."""
    rounds: int = 0

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def view(self, member: str) -> list[str]:
        return sorted((self.members | self.stale) - self.unseen.get(member, set()))

    def step(self) -> None:
        """One round: everyone plans from one snapshot, releases apply, takes race by CAS."""
        table = self.table
        for ghost, expiry in list(self.ghosts.items()):
            if self.rounds >= expiry:
                table.drop(ghost)
                del self.ghosts[ghost]
        snapshot = {p: table.holders.get(p) for p in range(table.count)}
        planned = {p: table.revisions.get(p, 0) for p in range(table.count)}
        for p in range(table.count):
            if snapshot[p] is None:
                table.free_rounds[p] += 1
            else:
                table.free_rounds.pop(p, None)
        long_free = {p for p, n in table.free_rounds.items() if n > self.long_free_rounds}
        plans = {
            m: moves(m, self.view(m), table.count, snapshot, long_free=long_free)
            for m in sorted(self.members)
        }
        for member, plan in plans.items():
            for partition in plan.release:
                assert snapshot[partition] == member, "released what it does not hold"
                table._write(partition, None)
        takes = [(m, p) for m, plan in plans.items() for p in plan.take]
        self.random.shuffle(takes)
        for member, partition in takes:
            assert snapshot[partition] is None, "took what someone holds"
            if table.revisions.get(partition, 0) == planned[partition]:
                table._write(partition, member)
        self.rounds += 1
        self.check_invariants()

    def check_invariants(self) -> None:
        for holder in self.table.holders.values():
            live = holder is None or holder in self.members or holder in self.ghosts
            assert live, f"{holder} is not live"

    def settled(self) -> bool:
        """Every partition held by a live member, each member at its share."""
        table = self.table
        if self.ghosts or any(table.holders.get(p) is None for p in range(table.count)):
            return False
        return dict(table.held_by()) == {
            m: n for m, n in shares(self.members, table.count).items() if n
        }

    def run(self, limit: int) -> int:
        """Rounds until settled (fails past ``limit``); settled stays settled."""
        start = self.rounds
        while not self.settled():
            assert self.rounds - start < limit, (
                f"not settled after {limit} rounds: {self.table.held_by()} "
                f"free {[p for p in range(self.table.count) if self.table.holders.get(p) is None]}"
            )
            self.step()
        taken = self.rounds - start
        before = dict(self.table.holders)
        for _ in range(5):
            self.step()
        assert self.table.holders == before, "a settled table moved"
        return taken


def simulation(
    members: Iterable[str],
    count: int = 16,
    *,
    holders: Mapping[int, str | None] | None = None,
    seed: int = 0,
) -> Simulation:
    table = Table(count)
    for partition, holder in (holders or {}).items():
        table._write(partition, holder)
    return Simulation(table, set(members), seed=seed)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 16, 20])
def test_from_an_empty_table_every_partition_gets_one_holder(n: int, seed: int) -> None:
    sim = simulation([f"m{i}" for i in range(n)], seed=seed)
    sim.run(limit=40)
    fair = shares(sim.members, 16)
    assert sim.table.held_by() == Counter({m: s for m, s in fair.items() if s})


@pytest.mark.parametrize("seed", range(10))
def test_three_members_settle_at_five_or_six_each(seed: int) -> None:
    sim = simulation(["a", "b", "c"], seed=seed)
    sim.run(limit=40)
    assert sorted(sim.table.held_by().values()) == [5, 5, 6]


@pytest.mark.parametrize("seed", range(10))
def test_when_a_member_leaves_the_others_take_its_partitions(seed: int) -> None:
    sim = simulation(["a", "b", "c"], seed=seed)
    sim.run(limit=40)
    lost = {p for p, h in sim.table.holders.items() if h == "b"}
    kept = {p: h for p, h in sim.table.holders.items() if h != "b"}
    sim.members.discard("b")
    sim.table.drop("b")
    rounds = sim.run(limit=40)
    assert sim.table.held_by() == Counter({"a": 8, "c": 8})
    # Quick: nobody waits for the lease time when the share rule already covers them.
    assert rounds <= sim.long_free_rounds, rounds
    # Only what b held moved (the survivors were at 6 and 5; 8 each now).
    for partition, holder in kept.items():
        assert sim.table.holders[partition] == holder, partition
    assert all(sim.table.holders[p] in ("a", "c") for p in lost)


@pytest.mark.parametrize("seed", range(10))
def test_when_a_member_joins_the_others_release_only_what_it_takes(seed: int) -> None:
    sim = simulation(["a", "b", "c"], seed=seed)
    sim.run(limit=40)
    sim.members.add("d")
    released_at_most = shares(sim.members, 16)["d"]
    ever_free = 0
    for _ in range(40):
        if sim.settled():
            break
        sim.step()
        free = [p for p in range(16) if sim.table.holders.get(p) is None]
        # Never more free partitions than the newcomer has room for.
        assert len(free) <= released_at_most - sim.table.held_by()["d"], free
        ever_free = max(ever_free, len(free))
        # Nobody climbs above its share while everyone sees the same members.
        fair = shares(sim.members, 16)
        for member, held in sim.table.held_by().items():
            assert held <= max(fair[member], {"a": 6, "b": 5, "c": 5}.get(member, 0)), member
    assert sim.settled()
    assert sim.table.held_by() == Counter({"a": 4, "b": 4, "c": 4, "d": 4})
    assert ever_free <= 4


@pytest.mark.parametrize("seed", range(10))
def test_a_newcomer_seen_late_still_gets_its_share(seed: int) -> None:
    sim = simulation(["a", "b", "c"], seed=seed)
    sim.run(limit=40)
    sim.members.add("d")
    sim.unseen = {"a": {"d"}, "b": {"d"}}  # only c sees d at first
    for _ in range(6):
        sim.step()
        # What c gives up, d takes in the next round: nothing waits longer.
        assert max(sim.table.free_rounds.values(), default=0) <= 1, sim.table.free_rounds
    sim.unseen = {}
    sim.run(limit=20)


@pytest.mark.parametrize("seed", range(10))
def test_partitions_of_a_dead_member_still_counted_are_taken_after_the_lease_time(
    seed: int,
) -> None:
    sim = simulation(["a", "b", "c"], seed=seed)
    sim.run(limit=40)
    sim.members.discard("b")
    sim.table.drop("b")
    # b's leases expired but a and c still count its membership: no share covers b's
    # partitions, so they stay free until they have been free for the lease time.
    sim.stale = {"b"}
    rounds = 0
    while any(sim.table.holders.get(p) is None for p in range(16)):
        rounds += 1
        assert rounds < 20, sim.table.holders
        sim.step()
    assert rounds > sim.long_free_rounds, "taken before the lease time"
    # Once b's membership expires too, the rule settles at 8 each.
    sim.stale = set()
    sim.run(limit=40)
    assert sim.table.held_by() == Counter({"a": 8, "c": 8})


@pytest.mark.parametrize("seed", range(20))
def test_any_start_converges(seed: int) -> None:
    rng = random.Random(seed)
    members = {f"m{i}" for i in range(rng.randint(1, 6))}
    count = rng.choice([1, 3, 16, 31])
    choices: list[str | None] = [*sorted(members), None]
    start = {p: rng.choice(choices) for p in range(count)}
    simulation(members, count, holders=start, seed=seed).run(limit=4 * count + 20)


# ---------------------------------------------------------------- property

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def tables(draw: st.DrawFn) -> tuple[set[str], int, dict[int, str | None], dict[str, int], int]:
    members = draw(st.sets(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=8))
    ghosts = draw(st.dictionaries(st.sampled_from(["x", "y", "z"]), st.integers(0, 5)))
    count = draw(st.integers(1, 64))
    holder = st.one_of(st.none(), st.sampled_from(sorted(members | set(ghosts))))
    start = draw(st.dictionaries(st.integers(0, count - 1), holder, max_size=count))
    seed = draw(st.integers(0, 2**16))
    return members, count, start, ghosts, seed


@settings(max_examples=300, deadline=None)
@given(tables())
def test_property_random_members_and_tables_converge(
    case: tuple[set[str], int, dict[int, str | None], dict[str, int], int],
) -> None:
    """Members, a table (some leases held by dead processes until they expire), any seed:
    every partition ends with exactly one live holder, each member at its share."""
    members, count, start, ghosts, seed = case
    sim = simulation(members, count, holders=start, seed=seed)
    sim.ghosts = dict(ghosts)
    sim.run(limit=2 * count + 20)
    table = sim.table
    assert all(table.holders.get(p) in members for p in range(count))
    fair = shares(members, count)
    assert all(table.held_by()[m] == fair[m] for m in members)
