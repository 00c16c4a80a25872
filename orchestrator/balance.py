"""How orchestrator processes share the partitions: a fair share each, computed alike by all.
Pure.

Every process sees the same members (the live ones, by id) and the same lease table, and
applies the same rule: with ``n`` members and ``P`` partitions each member's share is
``P // n``, and the first ``P % n`` members in id order take one more. A process holding more
than its share gives the rest up (its highest-numbered ones); one holding less takes free
partitions (lowest-numbered first) until it has its share; it gives up no more than the others
have room for beyond the free ones. Shares add up to ``P``, so once
views agree every partition has exactly one holder. While views disagree (a member just joined
or died), a partition left free for longer than the lease time is taken by anyone, share or not:
no partition waits on a rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

__all__ = ["Moves", "moves", "shares"]


@dataclass(frozen=True)
class Moves:
    """What one process should do now: partitions to take and to give up."""

    take: tuple[int, ...] = ()
    release: tuple[int, ...] = ()


def shares(members: Iterable[str], count: int) -> dict[str, int]:
    """Each member's fair share of ``count`` partitions."""
    ordered = sorted(set(members))
    if not ordered:
        return {}
    base, extra = divmod(count, len(ordered))
    return {member: base + (1 if i < extra else 0) for i, member in enumerate(ordered)}


def moves(
    me: str,
    members: Iterable[str],
    count: int,
    holders: Mapping[int, str | None],
    *,
    long_free: Set[int] = frozenset(),
) -> Moves:
    """What ``me`` should take and release.

    Args:
        me: this process's id (counted as a member whether listed or not).
        members: the live members' ids.
        count: the number of partitions.
        holders: each partition's live holder (``None`` or absent: free, or its lease
            expired).
        long_free: partitions free for longer than the lease time.
    """
    fair = shares({*members, me}, count)
    share = fair[me]
    mine = sorted(p for p in range(count) if holders.get(p) == me)
    free = [p for p in range(count) if holders.get(p) is None]
    if len(mine) > share:
        # Only as many as the others have room for: one given up that nobody takes would
        # only come back after the lease time.
        held = Counter(holder for holder in holders.values() if holder is not None)
        room = sum(max(0, n - held[m]) for m, n in fair.items() if m != me) - len(free)
        return Moves(release=tuple(mine[share:][: max(0, room)]))
    wanted = free[: share - len(mine)]
    orphans = [p for p in free if p in long_free and p not in wanted]
    return Moves(take=tuple(wanted + orphans))
