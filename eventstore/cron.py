"""Cron schedules and when they fire, in a time zone. Pure: no I/O, no clock.

A :class:`Cron` is parsed from its expression by :func:`eventstore.cron_parsing.parse_cron`
(the accepted forms are listed there); this module computes its ticks.

Time zones and daylight saving time. Fields are matched against the wall clock of the zone.
Where the clock jumps, two rules apply, the ones Vixie/Debian cron follows:

- a schedule that runs every hour (the hour field is ``*`` or covers all 24 hours) follows
  elapsed time: a local time the clock skips has no tick, and a local time that occurs twice
  (clocks going back) has a tick each time;
- a schedule at fixed hours follows the calendar: a local time the clock skips fires once,
  when the jump ends (``30 2 * * *`` in Europe/Berlin fires at 03:00 on the last Sunday in
  March; several skipped ticks collapse into that one), and a local time that occurs twice
  fires once, at its first occurrence.

Ticks are whole seconds, as aware UTC datetimes.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eventstore.errors import TepError

__all__ = [
    "Cron",
    "CronError",
    "TimeZoneError",
    "time_zone",
]

_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_PROBE = timedelta(hours=6)
"""Offsets are probed this far apart to find a zone's transitions (tzdata never has two
within hours of each other)."""
_HORIZON_YEARS = 30
"""How far ahead a search for the next tick goes before it concludes there is none."""


class CronError(TepError, ValueError):
    """A cron expression that cannot be parsed; the message names the field."""


class TimeZoneError(TepError, ValueError):
    """A time zone name that is not in the time zone database."""


def time_zone(name: str) -> tzinfo:
    """The zone called ``name`` (an IANA name such as ``Europe/Berlin``, or ``UTC``).

    Raises:
        TimeZoneError: no such zone in the time zone database.
    """
    if name in ("UTC", "Z", "Etc/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeZoneError(
            f'unknown time zone "{name}": expected an IANA name such as Europe/Berlin or UTC'
        ) from None


def _zone(tz: tzinfo | str) -> tzinfo:
    return time_zone(tz) if isinstance(tz, str) else tz


@dataclass(frozen=True)
class Cron:
    """A parsed schedule: when it fires, in any time zone.

    Build it with :func:`eventstore.cron_parsing.parse_cron`. ``every`` is set for ``@every``
    schedules (the period in seconds); the value tuples are sorted and hold what each field
    allows.

    Example:
        >>> from eventstore.cron_parsing import parse_cron
        >>> cron = parse_cron("30 2 * * MON-FRI")
        >>> cron.next_after(datetime(2024, 6, 3, tzinfo=UTC), "Europe/Berlin").isoformat()
        '2024-06-03T00:30:00+00:00'
    """

    expression: str
    seconds: tuple[int, ...] = (0,)
    minutes: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    days: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    weekdays: tuple[int, ...] = ()
    """0 = Sunday ... 6 = Saturday."""
    days_restricted: bool = False
    weekdays_restricted: bool = False
    every: int | None = None

    @property
    def hourly(self) -> bool:
        """Whether it runs every hour: then it follows elapsed time across clock changes."""
        return self.every is not None or len(self.hours) == 24

    # ------------------------------------------------------------------ ticks

    def next_after(self, after: datetime, tz: tzinfo | str = UTC) -> datetime | None:
        """The first tick strictly after ``after`` (an aware datetime), in UTC.

        ``None`` when the schedule never fires again within 30 years.
        """
        start = _utc_seconds(after)
        if self.every is not None:
            epoch = int(start.timestamp())
            return datetime.fromtimestamp((epoch // self.every + 1) * self.every, UTC)
        return self._next_in_zone(start, _zone(tz))

    def ticks_between(
        self, start: datetime, end: datetime, tz: tzinfo | str = UTC
    ) -> Iterator[datetime]:
        """Every tick in ``(start, end]``, oldest first, in UTC."""
        zone = _zone(tz)
        tick = self.next_after(start, zone)
        while tick is not None and tick <= end:
            yield tick
            tick = self.next_after(tick, zone)

    def latest(
        self, start: datetime, end: datetime, tz: tzinfo | str = UTC, count: int = 1
    ) -> tuple[list[datetime], bool]:
        """The newest ``count`` ticks in ``(start, end]`` (oldest first), and whether that
        range holds older ones too.

        Costs about as much as enumerating a few times ``count`` ticks, however far back
        ``start`` lies.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        zone = _zone(tz)
        span = timedelta(seconds=count * (self.every or 60))
        while True:
            window = max(start, end - span)
            found = deque(self.ticks_between(window, end, zone), maxlen=count + 1)
            if len(found) > count:
                found.popleft()
                return list(found), True
            if window == start:
                return list(found), False
            span *= 4

    # ------------------------------------------------------------- the search

    def _next_in_zone(self, start: datetime, zone: tzinfo) -> datetime | None:
        # Walk segments of constant UTC offset. Within one, wall time is UTC plus the offset,
        # so the next matching wall time gives the tick; where the offset changes, the rules
        # of the module docstring decide what the skipped or repeated wall times do.
        t, inclusive = start, False
        horizon = start + timedelta(days=366 * _HORIZON_YEARS)
        while t < horizon:
            offset = _offset(t, zone)
            wall = _naive(t + offset)
            match = self._next_wall(wall if inclusive else wall + _SECOND)
            if match is None:
                return None
            candidate = (match - offset).replace(tzinfo=UTC)
            change = _first_change(t, candidate, offset, zone)
            if change is None:
                if candidate.astimezone(zone).fold and not self.hourly:
                    t, inclusive = _second_pass_end(candidate, zone), True
                    continue
                return candidate
            jump = _offset(change, zone) - offset
            if jump > timedelta(0) and not self.hourly:
                skipped = self._next_wall(_naive(change + offset))
                if skipped is not None and skipped < _naive(change + offset + jump):
                    return change
            t, inclusive = change, True
        return None

    def _next_wall(self, t: datetime) -> datetime | None:
        """The first naive wall time at or after ``t`` (whole seconds) the fields match."""
        last_year = t.year + _HORIZON_YEARS
        while t.year <= last_year:
            if t.month not in self.months:
                month = _at_or_after(self.months, t.month)
                year = t.year if month is not None else t.year + 1
                t = datetime(year, month or self.months[0], 1)
                continue
            if not self._day_matches(t.date()):
                t = datetime(t.year, t.month, t.day) + _DAY
                continue
            if t.hour not in self.hours:
                hour = _at_or_after(self.hours, t.hour)
                day = datetime(t.year, t.month, t.day)
                t = day + _DAY if hour is None else day.replace(hour=hour)
                continue
            if t.minute not in self.minutes:
                minute = _at_or_after(self.minutes, t.minute)
                top = t.replace(minute=0, second=0)
                t = top + timedelta(hours=1) if minute is None else top.replace(minute=minute)
                continue
            if t.second not in self.seconds:
                second = _at_or_after(self.seconds, t.second)
                top = t.replace(second=0)
                t = top + timedelta(minutes=1) if second is None else top.replace(second=second)
                continue
            return t
        return None

    def _day_matches(self, day: date) -> bool:
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week


# --------------------------------------------------------------------- time helpers


def _utc_seconds(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("expected an aware datetime")
    return moment.astimezone(UTC).replace(microsecond=0)


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def _offset(instant: datetime, zone: tzinfo) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _first_change(
    start: datetime, end: datetime, offset: timedelta, zone: tzinfo
) -> datetime | None:
    """The first instant in ``(start, end]`` whose UTC offset is not ``offset``, if any."""
    if isinstance(zone, timezone):
        return None  # a fixed offset, UTC included
    low = start
    while low < end:
        high = min(low + _PROBE, end)
        if _offset(high, zone) != offset:
            while high - low > _SECOND:
                middle = low + (high - low) // 2
                middle = middle.replace(microsecond=0)
                if _offset(middle, zone) == offset:
                    low = middle
                else:
                    high = middle
            return high
        low = high
    return None


def _second_pass_end(instant: datetime, zone: tzinfo) -> datetime:
    """Where the repeated wall times ``instant`` belongs to end (clocks went back)."""
    wall = _naive(instant.astimezone(zone))
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    change = _first_change(first, instant, _offset(first, zone), zone)
    assert change is not None  # the instant is a second occurrence: the clock went back
    return change + (_offset(first, zone) - _offset(instant, zone))


def _at_or_after(values: tuple[int, ...], value: int) -> int | None:
    index = bisect.bisect_left(values, value)
    return values[index] if index < len(values) else None
