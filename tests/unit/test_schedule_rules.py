"""Schedules, pure: names, ids, state merging, and which ticks fire under each catch-up policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.cron_parsing import parse_cron
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.schedules import (
    MAX_CATCH_UP,
    ScheduleDefinition,
    ScheduleState,
    TickPlan,
    baseline,
    manual_execution_id,
    next_fire,
    parse_stamp,
    plan_ticks,
    schedule_name_problem,
    stamp,
    submission_event_id,
    tick_execution_id,
)
from eventstore.subjects import execution_id_problem

T0 = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
EVERY_SECOND = parse_cron("@every 1s")
PLAN = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://127.0.0.1:9/"))])


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def definition(**fields: object) -> ScheduleDefinition:
    values: dict[str, object] = {
        "name": "beat",
        "cron": "@every 1s",
        "plan": PLAN,
        "created_at": stamp(T0),
    }
    values.update(fields)
    return ScheduleDefinition(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ names, ids


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("nightly", None),
        ("a_b-C9", None),
        ("x" * 64, None),
        ("x" * 65, "must match"),
        ("", "must match"),
        ("has space", "must match"),
        ("dot.ted", "must match"),
        ("report-manual", 'must not end in "-manual"'),
    ],
)
def test_schedule_names(name: str, problem: str | None) -> None:
    found = schedule_name_problem(name)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_tick_and_manual_ids_are_deterministic_valid_execution_ids() -> None:
    tick = datetime(2024, 6, 1, 14, 5, 9, tzinfo=UTC)
    assert tick_execution_id("nightly", tick) == "nightly-20240601T140509Z"
    berlin = tick.astimezone(parse_stamp("2024-06-01T16:05:09+02:00").tzinfo)
    assert tick_execution_id("nightly", berlin) == "nightly-20240601T140509Z"
    assert manual_execution_id("nightly", tick) == "nightly-manual-20240601T140509Z"
    assert submission_event_id("nightly-20240601T140509Z") == "nightly-20240601T140509Z.scheduled"
    longest = "x" * 64
    assert execution_id_problem(manual_execution_id(longest, tick)) is None


@given(
    first=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    second=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    a=st.datetimes(timezones=st.just(UTC)),
    b=st.datetimes(timezones=st.just(UTC)),
)
def test_ids_of_different_schedules_or_ticks_never_collide(
    first: str, second: str, a: datetime, b: datetime
) -> None:
    if schedule_name_problem(first) or schedule_name_problem(second):
        return
    a, b = a.replace(microsecond=0), b.replace(microsecond=0)
    ids_one = {tick_execution_id(first, a), manual_execution_id(first, b)}
    ids_two = {tick_execution_id(second, a), manual_execution_id(second, b)}
    if first != second:
        assert not ids_one & ids_two
    assert tick_execution_id(first, a) != manual_execution_id(first, b)


def test_stamps_round_trip() -> None:
    moment = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert stamp(moment) == "2024-06-01T12:00:00.123456Z"
    assert parse_stamp(stamp(moment)) == moment
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_stamp("2024-06-01T12:00:00")


def test_a_definition_round_trips_through_json() -> None:
    original = definition(tz="Europe/Berlin", input={"k": 1}, catch_up="all", paused=True)
    data = msgspec.json.encode(original)
    assert msgspec.json.decode(data, type=ScheduleDefinition) == original


# --------------------------------------------------------------------------- state


def test_recording_a_tick_keeps_the_newest() -> None:
    state = ScheduleState().with_tick(s(5), "beat-5", "f5")
    assert state == ScheduleState(
        last_tick=stamp(s(5)), last_execution_id="beat-5", last_fired_at="f5"
    )
    assert state.with_tick(s(4), "beat-4", "f4") is state  # another orchestrator was ahead
    assert state.with_tick(s(5), "beat-5", "again") is state
    skipped = state.with_tick(s(9), None, "f9")
    assert skipped.last_tick == stamp(s(9)) and skipped.last_execution_id == "beat-5"


def test_a_manual_run_keeps_the_tick() -> None:
    state = ScheduleState().with_tick(s(5), "beat-5", "f5").with_manual("beat-manual-x", "fx")
    assert state.last_tick == stamp(s(5))
    assert (state.last_execution_id, state.last_fired_at) == ("beat-manual-x", "fx")


def test_baseline_is_the_latest_of_creation_resume_and_last_tick() -> None:
    made = definition(created_at=stamp(s(0)))
    assert baseline(made, None) == s(0)
    assert baseline(made, ScheduleState(last_tick=stamp(s(7)))) == s(7)
    resumed = definition(created_at=stamp(s(0)), resumed_at=stamp(s(20)))
    assert baseline(resumed, ScheduleState(last_tick=stamp(s(7)))) == s(20)


def test_next_fire() -> None:
    made = definition(cron="0 * * * *", created_at=stamp(s(0)))
    assert next_fire(made, None, s(10)) == T0 + timedelta(hours=1)
    assert next_fire(definition(paused=True), None, s(10)) is None
    ahead = ScheduleState(last_tick=stamp(T0 + timedelta(hours=1)))
    assert next_fire(made, ahead, s(10)) == T0 + timedelta(hours=2)


# ---------------------------------------------------------------------- catch-up


def plan(
    policy: str, *, after: float, now: float, missed_until: float, limit: int = 1000
) -> TickPlan:
    return plan_ticks(
        EVERY_SECOND,
        UTC,
        after=s(after),
        now=s(now),
        missed_until=s(missed_until),
        policy=policy,  # type: ignore[arg-type]
        limit=limit,
    )


def seconds(moments: list[datetime]) -> list[int]:
    return [int((m - T0).total_seconds()) for m in moments]


def test_on_time_ticks_all_fire() -> None:
    result = plan("none", after=10, now=12.5, missed_until=0)
    assert seconds(result.fire) == [11, 12]
    assert (result.caught_up, result.skipped, result.last) == (0, False, s(12))


@pytest.mark.parametrize(
    ("policy", "fired", "caught_up", "skipped"),
    [
        ("none", [16], 0, True),
        ("one", [15, 16], 1, True),
        ("all", [11, 12, 13, 14, 15, 16], 5, False),
    ],
)
def test_missed_ticks_follow_the_policy(
    policy: str, fired: list[int], caught_up: int, skipped: bool
) -> None:
    # Last tick dealt with at 10; down until 15.4 (the scheduler started leading); now 16.2.
    result = plan(policy, after=10, now=16.2, missed_until=15.4)
    assert seconds(result.fire) == fired
    assert (result.caught_up, result.skipped) == (caught_up, skipped)
    assert result.last == s(16)


def test_all_fires_the_newest_up_to_the_cap() -> None:
    result = plan("all", after=0, now=5000, missed_until=5000, limit=MAX_CATCH_UP)
    assert len(result.fire) == MAX_CATCH_UP
    assert seconds(result.fire)[0] == 4001 and seconds(result.fire)[-1] == 5000
    assert result.skipped and result.last == s(5000)


def test_a_year_of_missed_seconds_costs_no_more_than_the_cap() -> None:
    result = plan("one", after=0, now=365 * 86400, missed_until=365 * 86400)
    assert seconds(result.fire) == [365 * 86400] and result.skipped


def test_nothing_due() -> None:
    assert plan("one", after=10, now=10.9, missed_until=10.5).fire == []
    assert plan("one", after=10, now=10.9, missed_until=10.5).last is None
    assert plan("all", after=10, now=5, missed_until=0).last is None  # the clock went back


def test_a_schedule_newer_than_the_outage_misses_nothing() -> None:
    result = plan("none", after=20, now=22, missed_until=15)
    assert seconds(result.fire) == [21, 22] and not result.skipped


@settings(max_examples=200, deadline=None)
@given(
    policy=st.sampled_from(["none", "one", "all"]),
    after=st.integers(0, 50),
    outage=st.integers(0, 50),
    lateness=st.integers(0, 5),
)
def test_every_due_tick_is_dealt_with_once(
    policy: str, after: int, outage: int, lateness: int
) -> None:
    missed_until = after + outage + 0.5
    now = missed_until + lateness
    result = plan(policy, after=after, now=now, missed_until=missed_until)
    due = list(range(after + 1, int(now) + 1))
    fired = seconds(result.fire)
    assert fired == sorted(set(fired)) and set(fired) <= set(due)
    missed = [t for t in due if t <= missed_until]
    on_time = [t for t in due if t > missed_until]
    assert [t for t in fired if t > missed_until] == on_time
    expected = {"none": [], "one": missed[-1:], "all": missed}[policy]
    assert [t for t in fired if t <= missed_until] == expected
    assert result.caught_up == len(expected)
    assert result.last == (s(due[-1]) if due else None)
