"""What ``tep schedule`` prints: the listing's table, times in the schedule's zone. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from eventstore.cron import TimeZoneError, time_zone
from tep.cli.text_format import format_table

__all__ = ["local_time", "schedule_table"]


def local_time(moment: datetime | str | None, tz: str) -> str:
    """``moment`` on the clock of zone ``tz`` (UTC if unknown), to the second; ``-`` if none."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    try:
        zone = time_zone(tz)
    except TimeZoneError:
        zone = UTC
    return moment.astimezone(zone).replace(microsecond=0).isoformat(sep=" ")


def schedule_table(documents: Sequence[dict[str, Any]]) -> list[str]:
    """The lines of ``tep schedule list``: one row per schedule, as ``--json`` prints it
    (a :class:`~projections.schedule_info.ScheduleInfo` as JSON)."""
    rows = [
        [
            d["name"],
            d["cron"],
            d["tz"],
            "paused" if d["paused"] else "active",
            local_time(d["last_fired_at"], d["tz"]),
            local_time(d["next_fire"], d["tz"]),
            d["last_execution_id"] or "-",
            d["last_execution_status"] or "-",
        ]
        for d in documents
    ]
    headers = ["NAME", "CRON", "TZ", "STATE", "LAST FIRE", "NEXT FIRE", "LAST EXECUTION", "STATUS"]
    return format_table(headers, rows)
