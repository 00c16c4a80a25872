"""Cron expressions: parsing, errors naming the field, next ticks, DST rules, properties."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.cron import Cron, CronError, TimeZoneError, time_zone
from eventstore.cron_parsing import parse_cron

BERLIN = time_zone("Europe/Berlin")
NEW_YORK = time_zone("America/New_York")
ZONES = [UTC, BERLIN, NEW_YORK, time_zone("Australia/Lord_Howe"), time_zone("Asia/Kolkata")]


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def ticks(expression: str, start: datetime, end: datetime, tz: tzinfo = UTC) -> list[datetime]:
    return list(parse_cron(expression).ticks_between(start, end, tz))


def local(moments: Sequence[datetime | None], zone: tzinfo = BERLIN) -> list[str]:
    return [m.astimezone(zone).strftime("%m-%d %H:%M:%S%z") for m in moments if m is not None]


# ---------------------------------------------------------------------------- parsing


def test_fields_lists_ranges_steps_and_names() -> None:
    cron = parse_cron("*/15 9-17/4 1,15 JAN-mar mon-FRI")
    assert cron.seconds == (0,)
    assert cron.minutes == (0, 15, 30, 45)
    assert cron.hours == (9, 13, 17)
    assert cron.days == (1, 15)
    assert cron.months == (1, 2, 3)
    assert cron.weekdays == (1, 2, 3, 4, 5)
    assert cron.days_restricted and cron.weekdays_restricted


def test_six_fields_put_seconds_first() -> None:
    cron = parse_cron("*/20 30 * * * *")
    assert cron.seconds == (0, 20, 40)
    assert cron.minutes == (30,)
    assert len(cron.hours) == 24


def test_sunday_is_0_and_7_and_a_start_with_step_runs_to_the_end() -> None:
    assert parse_cron("0 0 * * 7").weekdays == (0,)
    assert parse_cron("0 0 * * 5-7").weekdays == (0, 5, 6)
    assert parse_cron("10/20 * * * *").minutes == (10, 30, 50)
    assert parse_cron("0 0 ? * *").days == tuple(range(1, 32))


@pytest.mark.parametrize(
    ("macro", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_macros_are_their_five_fields(macro: str, fields: str) -> None:
    expanded = parse_cron(fields)
    parsed = parse_cron(macro)
    assert (parsed.minutes, parsed.hours, parsed.days, parsed.months, parsed.weekdays) == (
        expanded.minutes,
        expanded.hours,
        expanded.days,
        expanded.months,
        expanded.weekdays,
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("1s", 1), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("90s", 90)]
)
def test_every_takes_whole_second_durations(text: str, seconds: int) -> None:
    assert parse_cron(f"@every {text}").every == seconds


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("* * *", "expected 5 fields"),
        ("* * * * * * *", "got 7"),
        ("61 * * * *", 'minute field "61": 61 is out of range 0-59'),
        ("* 24 * * *", 'hour field "24"'),
        ("* * 0 * *", 'day-of-month field "0"'),
        ("* * * 13 *", 'month field "13"'),
        ("* * * FOO *", 'month field "FOO": "FOO" is not a number 1-12 or a name JAN-DEC'),
        ("* * * * 8", 'day-of-week field "8"'),
        ("* * * * MONDAY", 'day-of-week field "MONDAY"'),
        ("60 * * * * *", 'second field "60"'),
        ("30-10 * * * *", "range 30-10 runs backwards"),
        ("*/0 * * * *", 'step "0"'),
        ("*/x * * * *", 'step "x"'),
        ("1,,2 * * * *", "empty list item"),
        ("0 0 31 4,6 *", "day 31 never occurs in APR, JUN"),
        ("0 0 30 2 *", "day 30 never occurs in FEB"),
        ("@often", "unknown macro"),
        ("@every", "@every needs a duration"),
        ("@every 5x", '@every duration "5x"'),
        ("@every 0s", "at least 1s"),
        ("@every 1.5s", '@every duration "1.5s"'),
    ],
)
def test_a_bad_expression_is_one_line_naming_the_field(expression: str, names: str) -> None:
    with pytest.raises(CronError) as error:
        parse_cron(expression)
    message = str(error.value)
    assert names in message
    assert "\n" not in message
    assert message.startswith("cron expression ")


def test_unknown_zones_are_refused_in_one_line() -> None:
    with pytest.raises(TimeZoneError, match='unknown time zone "Europe/Berln"'):
        time_zone("Europe/Berln")
    with pytest.raises(TimeZoneError):
        time_zone("../etc/passwd")
    assert time_zone("UTC") is UTC


# ------------------------------------------------------------------------------ ticks


def test_next_after_is_strictly_after() -> None:
    cron = parse_cron("*/15 * * * *")
    assert cron.next_after(at(2024, 1, 1, 10, 0)) == at(2024, 1, 1, 10, 15)
    assert cron.next_after(at(2024, 1, 1, 10, 14, 59) + timedelta(microseconds=5)) == at(
        2024, 1, 1, 10, 15
    )
    assert cron.next_after(at(2024, 1, 1, 23, 50)) == at(2024, 1, 2, 0, 0)


def test_month_and_year_boundaries_and_leap_days() -> None:
    assert parse_cron("@yearly").next_after(at(2024, 6, 1)) == at(2025, 1, 1)
    assert parse_cron("0 12 29 2 *").next_after(at(2024, 3, 1)) == at(2028, 2, 29, 12)
    assert parse_cron("0 0 31 * *").next_after(at(2024, 4, 1)) == at(2024, 5, 31)


def test_six_field_seconds_tick_every_second() -> None:
    start = at(2024, 1, 1, 0, 0, 58)
    assert ticks("* * * * * *", start, start + timedelta(seconds=3)) == [
        at(2024, 1, 1, 0, 0, 59),
        at(2024, 1, 1, 0, 1, 0),
        at(2024, 1, 1, 0, 1, 1),
    ]


def test_every_is_aligned_to_the_epoch_and_ignores_the_zone() -> None:
    cron = parse_cron("@every 1h")
    assert cron.next_after(at(2024, 1, 1, 10, 20), BERLIN) == at(2024, 1, 1, 11)
    five = parse_cron("@every 5m")
    assert five.next_after(at(2024, 1, 1, 10, 5)) == at(2024, 1, 1, 10, 10)


def test_both_day_fields_restricted_means_either() -> None:
    # Friday the 13th? No: the 13th, and every Friday.
    days = {t.day for t in ticks("0 0 13 * FRI", at(2024, 9, 1), at(2024, 9, 30))}
    assert days == {6, 13, 20, 27}


def test_a_day_field_starting_with_a_star_means_both() -> None:
    days = {t.day for t in ticks("0 0 */2 * FRI", at(2024, 9, 1), at(2024, 9, 30))}
    assert days == {13, 27}  # odd days that are Fridays


def test_fields_are_read_in_the_zone() -> None:
    cron = parse_cron("0 9 * * MON-FRI")
    assert cron.next_after(at(2024, 6, 1), BERLIN) == at(2024, 6, 3, 7)  # CEST: UTC+2
    assert cron.next_after(at(2024, 12, 1), BERLIN) == at(2024, 12, 2, 8)  # CET: UTC+1
    assert cron.next_after(at(2024, 6, 1), "America/New_York") == at(2024, 6, 3, 13)


# -------------------------------------------------------------------------------- DST
# Europe/Berlin: 2024-03-31 02:00 CET -> 03:00 CEST; 2024-10-27 03:00 CEST -> 02:00 CET.


def test_a_skipped_time_of_a_fixed_hour_schedule_fires_when_the_jump_ends() -> None:
    fired = ticks("30 2 * * *", at(2024, 3, 29, 12), at(2024, 4, 1, 12), BERLIN)
    assert local(fired) == ["03-30 02:30:00+0100", "03-31 03:00:00+0200", "04-01 02:30:00+0200"]


def test_skipped_ticks_collapse_into_one() -> None:
    fired = ticks("*/20 2 * * *", at(2024, 3, 30, 12), at(2024, 3, 31, 12), BERLIN)
    assert local(fired) == ["03-31 03:00:00+0200"]


def test_an_hourly_schedule_has_no_tick_in_a_skipped_hour() -> None:
    fired = ticks("30 * * * *", at(2024, 3, 30, 23), at(2024, 3, 31, 3), BERLIN)
    assert local(fired) == [
        "03-31 00:30:00+0100",
        "03-31 01:30:00+0100",
        "03-31 03:30:00+0200",
        "03-31 04:30:00+0200",
    ]


def test_a_repeated_time_of_a_fixed_hour_schedule_fires_once_at_its_first_occurrence() -> None:
    fired = ticks("30 2 * * *", at(2024, 10, 25, 12), at(2024, 10, 28, 12), BERLIN)
    assert local(fired) == ["10-26 02:30:00+0200", "10-27 02:30:00+0200", "10-28 02:30:00+0100"]
    every_20 = ticks("*/20 2 * * *", at(2024, 10, 26, 12), at(2024, 10, 27, 12), BERLIN)
    assert local(every_20) == ["10-27 02:00:00+0200", "10-27 02:20:00+0200", "10-27 02:40:00+0200"]


def test_an_hourly_schedule_ticks_in_both_passes_of_a_repeated_hour() -> None:
    fired = ticks("30 * * * *", at(2024, 10, 26, 23), at(2024, 10, 27, 3), BERLIN)
    assert local(fired) == [
        "10-27 01:30:00+0200",
        "10-27 02:30:00+0200",
        "10-27 02:30:00+0100",
        "10-27 03:30:00+0100",
    ]


def test_starting_inside_the_second_pass() -> None:
    second_pass = at(2024, 10, 27, 1, 10)  # 02:10 CET, the second time round
    assert second_pass.astimezone(BERLIN).fold == 1
    daily = parse_cron("30 2 * * *").next_after(second_pass, BERLIN)
    assert local([daily]) == ["10-28 02:30:00+0100"]  # 02:30 fired in the first pass already
    hourly = parse_cron("30 * * * *").next_after(second_pass, BERLIN)
    assert local([hourly]) == ["10-27 02:30:00+0100"]


def test_half_hour_dst_of_lord_howe() -> None:
    zone = time_zone("Australia/Lord_Howe")  # 2024-10-06 02:00 -> 02:30 (+10:30 -> +11)
    fired = ticks("15 2 * * *", at(2024, 10, 3, 12), at(2024, 10, 6, 18), zone)
    assert local(fired, zone) == [
        "10-04 02:15:00+1030",
        "10-05 02:15:00+1030",
        "10-06 02:30:00+1100",
        "10-07 02:15:00+1100",
    ]


# ------------------------------------------------------------------------- latest


def test_latest_is_the_tail_of_the_ticks_however_far_back() -> None:
    cron = parse_cron("* * * * * *")
    end = at(2024, 1, 1, 12)
    newest, older = cron.latest(end - timedelta(days=400), end, UTC, 3)
    assert newest == [end - timedelta(seconds=2), end - timedelta(seconds=1), end]
    assert older
    few, more = cron.latest(end - timedelta(seconds=2), end, UTC, 5)
    assert few == [end - timedelta(seconds=1), end] and not more
    assert cron.latest(end, end, UTC, 1) == ([], False)


def test_latest_of_a_sparse_schedule() -> None:
    newest, older = parse_cron("@yearly").latest(at(2001, 6, 1), at(2024, 6, 1), UTC, 2)
    assert newest == [at(2023, 1, 1), at(2024, 1, 1)] and older


# ------------------------------------------------------------------------- properties


def _field(values: list[int]) -> str:
    return ",".join(str(v) for v in sorted(set(values)))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    def pick(low: int, high: int) -> str:
        choice = draw(st.sampled_from(["*", "list", "step"]))
        if choice == "*":
            return "*"
        if choice == "step":
            return f"*/{draw(st.integers(1, max(1, (high - low) // 2)))}"
        return _field(draw(st.lists(st.integers(low, high), min_size=1, max_size=4)))

    return " ".join([pick(0, 59), pick(0, 23), pick(1, 28), pick(1, 12), pick(0, 6)])


def _reference(cron: Cron, start: datetime, end: datetime, zone: tzinfo) -> list[datetime]:
    """The module's rules, by brute force over every minute in UTC."""
    found: set[datetime] = set()
    minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute <= end:
        wall = minute.astimezone(zone)
        before = (minute - timedelta(minutes=1)).astimezone(zone)
        jump = (wall.utcoffset() or timedelta()) - (before.utcoffset() or timedelta())
        if cron._next_wall(wall.replace(tzinfo=None)) == wall.replace(tzinfo=None) and (
            not wall.fold or cron.hourly
        ):
            found.add(minute)
        if jump > timedelta(0) and not cron.hourly:
            skipped_from = before.replace(tzinfo=None) + timedelta(minutes=1)
            first = cron._next_wall(skipped_from)
            if first is not None and first < skipped_from + jump:
                found.add(minute)
        minute += timedelta(minutes=1)
    return sorted(t for t in found if start < t <= end)


@settings(max_examples=60, deadline=None)
@given(
    expression=expressions(),
    zone=st.sampled_from(ZONES),
    start=st.sampled_from([at(2024, 3, 30, 20), at(2024, 10, 26, 20), at(2024, 11, 2, 20)]),
)
def test_ticks_match_a_brute_force_reading_of_the_rules(
    expression: str, zone: tzinfo, start: datetime
) -> None:
    cron = parse_cron(expression)
    end = start + timedelta(hours=36)
    assert list(cron.ticks_between(start, end, zone)) == _reference(cron, start, end, zone)


@settings(max_examples=100, deadline=None)
@given(
    expression=expressions(),
    zone=st.sampled_from(ZONES),
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1)),
)
def test_next_after_is_a_later_whole_second(expression: str, zone: tzinfo, start: datetime) -> None:
    moment = start.replace(tzinfo=UTC)
    tick = parse_cron(expression).next_after(moment, zone)
    assert tick is not None
    assert tick > moment
    assert tick.microsecond == 0
    assert tick.tzinfo is UTC


@settings(max_examples=40, deadline=None)
@given(
    expression=expressions(),
    count=st.integers(1, 5),
    hours=st.integers(1, 200),
)
def test_latest_agrees_with_ticks_between(expression: str, count: int, hours: int) -> None:
    cron = parse_cron(expression)
    end = at(2024, 10, 27, 6)
    start = end - timedelta(hours=hours)
    every = list(cron.ticks_between(start, end, BERLIN))
    newest, older = cron.latest(start, end, BERLIN, count)
    assert newest == every[-count:]
    assert older == (len(every) > count)
