"""Action keys: the action token of an event's subject, naming one run of an action or one item
of a for-each action. Pure.

A plan's action ids match ``[A-Za-z0-9_-]{1,64}``; a key adds what an id cannot contain::

    fetch          run 1 of action fetch (every action's first run: the key is its id)
    fetch~2        run 2 (after a ``tep retry`` reset it)
    fetch@17       item 17 of for-each action fetch, run 1
    fetch~2@17     item 17, run 2

Every event about an action carries its key as ``action_id``, so each run and each item has
subjects of its own: the executors' per-subject guards and the log's dedupe treat them as
distinct actions without knowing about runs or items.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["ActionKey", "action_key", "parse_action_key"]

_KEY = re.compile(r"^([A-Za-z0-9_-]{1,64})(?:~([2-9]|[1-9][0-9]{1,5}))?(?:@(0|[1-9][0-9]{0,5}))?\Z")


class ActionKey(NamedTuple):
    """A parsed key: the plan's action id, its run (from 1) and an item index (or ``None``)."""

    action_id: str
    run: int = 1
    item: int | None = None


def action_key(action_id: str, run: int = 1, item: int | None = None) -> str:
    """The key of ``run`` of ``action_id``, or of one of its items."""
    key = action_id if run <= 1 else f"{action_id}~{run}"
    return key if item is None else f"{key}@{item}"


def parse_action_key(key: str) -> ActionKey | None:
    """``fetch~2@17`` -> ``ActionKey("fetch", 2, 17)``; ``None`` if ``key`` is no action key."""
    match = _KEY.match(key)
    if match is None:
        return None
    action_id, run, item = match.groups()
    return ActionKey(action_id, int(run) if run else 1, int(item) if item is not None else None)
