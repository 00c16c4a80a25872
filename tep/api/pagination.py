"""Listing executions a page at a time: filters, order, and an opaque cursor. Pure.

The view's index gives every execution matching a status and/or plan (see
:meth:`~projections.state_manager.StateManager.list_executions`); this module narrows them
by submission time and id, counts them, orders them by (submitted_at, execution_id) and cuts
one page. The cursor names the last execution of a page, so the next page starts right after
it whatever was submitted in between (new executions never shift a page under a reader).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import msgspec

from projections.view import ExecutionSummary

__all__ = ["Order", "Page", "decode_cursor", "encode_cursor", "page_of", "parse_time"]

Order = Literal["asc", "desc"]
_Key = tuple[str, str]


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a listing.

    Attributes:
        items: the executions of this page, in the order asked for.
        next_cursor: where the next page starts (``None`` on the last one).
        total: how many executions match the filters (over every page).
        counts: those by status.
    """

    items: list[ExecutionSummary]
    next_cursor: str | None
    total: int
    counts: dict[str, int]


def parse_time(value: str, name: str) -> datetime:
    """An ISO-8601 time (naive = UTC).

    Raises:
        ValueError: not one (the message names the parameter).
    """
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{name}: not an ISO-8601 time: {value!r} (e.g. 2025-01-31T12:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _key(summary: ExecutionSummary) -> _Key:
    return (summary.submitted_at or "", summary.execution_id)


def encode_cursor(key: _Key) -> str:
    """The cursor after the execution with sort key ``key``."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> _Key:
    """The sort key a cursor names.

    Raises:
        ValueError: not a cursor this API gave out.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("cursor: not a cursor of this listing") from None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise ValueError("cursor: not a cursor of this listing")
    return value[0], value[1]


def _submitted(summary: ExecutionSummary) -> datetime | None:
    if summary.submitted_at is None:
        return None
    try:
        return parse_time(summary.submitted_at, "submitted_at")
    except ValueError:
        return None


def page_of(
    summaries: Sequence[ExecutionSummary],
    *,
    limit: int,
    order: Order = "desc",
    cursor: str | None = None,
    submitted_after: datetime | None = None,
    submitted_before: datetime | None = None,
    search: str | None = None,
) -> Page:
    """One page of ``summaries`` (in any order) after ``cursor``.

    Args:
        limit: the most executions on the page (at least 1).
        order: ``desc`` newest submission first, ``asc`` oldest first.
        cursor: a previous page's ``next_cursor``.
        submitted_after, submitted_before: keep executions submitted at or after / before.
        search: keep executions whose id contains this text.

    Raises:
        ValueError: a bad cursor or limit.
    """
    if limit < 1:
        raise ValueError("limit: at least 1")
    matching = []
    for summary in summaries:
        if search and search not in summary.execution_id:
            continue
        if submitted_after is not None or submitted_before is not None:
            moment = _submitted(summary)
            if moment is None:
                continue
            if submitted_after is not None and moment < submitted_after:
                continue
            if submitted_before is not None and moment >= submitted_before:
                continue
        matching.append(summary)
    matching.sort(key=_key, reverse=order == "desc")
    counts: dict[str, int] = dict(Counter(str(summary.status) for summary in matching))
    start = 0
    if cursor is not None:
        after = decode_cursor(cursor)
        if order == "desc":
            start = next((i for i, s in enumerate(matching) if _key(s) < after), len(matching))
        else:
            start = next((i for i, s in enumerate(matching) if _key(s) > after), len(matching))
    items = matching[start : start + limit]
    more = start + limit < len(matching)
    next_cursor = encode_cursor(_key(items[-1])) if more and items else None
    return Page(items=items, next_cursor=next_cursor, total=len(matching), counts=counts)
