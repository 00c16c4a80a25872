"""Listing executions a page at a time: filters, order, cursors that survive new arrivals."""

from __future__ import annotations

from datetime import UTC

import pytest

from projections.view import ExecutionSummary
from tep.api.pagination import decode_cursor, encode_cursor, page_of, parse_time


def summary(n: int, status: str = "completed") -> ExecutionSummary:
    return ExecutionSummary(
        execution_id=f"exe_{n:03d}",
        plan_id="p",
        status=status,  # type: ignore[arg-type]
        submitted_at=f"2025-01-01T00:00:{n:02d}Z",
    )


ALL = [summary(n, "failed" if n % 3 == 0 else "completed") for n in range(1, 11)]


def test_pages_newest_first_follow_one_another_without_gaps() -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = page_of(ALL, limit=3, cursor=cursor)
        seen += [s.execution_id for s in page.items]
        assert page.total == 10 and page.counts == {"completed": 7, "failed": 3}
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"exe_{n:03d}" for n in range(10, 0, -1)]


def test_a_cursor_still_holds_when_newer_executions_arrive() -> None:
    first = page_of(ALL, limit=4)
    later = page_of([*ALL, summary(50), summary(51)], limit=4, cursor=first.next_cursor)
    assert [s.execution_id for s in later.items] == ["exe_006", "exe_005", "exe_004", "exe_003"]


def test_oldest_first_time_range_and_search() -> None:
    after = parse_time("2025-01-01T00:00:05Z", "submitted_after")
    before = parse_time("2025-01-01T00:00:08", "submitted_before")  # naive = UTC
    page = page_of(ALL, limit=10, order="asc", submitted_after=after, submitted_before=before)
    assert [s.execution_id for s in page.items] == ["exe_005", "exe_006", "exe_007"]
    assert before.tzinfo is UTC
    assert [s.execution_id for s in page_of(ALL, limit=5, search="_01").items] == ["exe_010"]


def test_bad_cursors_times_and_limits() -> None:
    assert decode_cursor(encode_cursor(("2025", "exe_1"))) == ("2025", "exe_1")
    for cursor in ("nonsense", encode_cursor(("a", "b"))[:-3] + "!!", "W10"):
        with pytest.raises(ValueError, match="cursor"):
            page_of(ALL, limit=1, cursor=cursor)
    with pytest.raises(ValueError, match="submitted_after"):
        parse_time("yesterday", "submitted_after")
    with pytest.raises(ValueError, match="limit"):
        page_of(ALL, limit=0)
    assert page_of([], limit=5).next_cursor is None
    assert page_of(ALL, limit=10).next_cursor is None
