"""The rule that decides when the partition stream's silent source is set up again."""

from __future__ import annotations

from orchestrator.source_watch import SILENT_S, Silence

S = 1_000_000_000  # nanoseconds in a second


def test_a_source_heard_from_within_a_few_heartbeats_is_left_alone() -> None:
    rule = Silence()
    assert not any(rule.kick(int(0.9 * S), float(t)) for t in range(100))


def test_a_source_silent_for_longer_is_kicked_then_given_time_before_the_next() -> None:
    rule = Silence()
    every = rule.kick_every_s
    assert rule.kick(int(SILENT_S * S), 0.0)
    assert not rule.kick(int((SILENT_S + 1) * S), 1.0)  # the new leader's time
    assert not rule.kick(int((SILENT_S + every) * S), every - 0.1)
    assert rule.kick(int((SILENT_S + every) * S), every)


def test_a_source_not_heard_from_at_all_counts_its_silence_from_the_first_look() -> None:
    rule = Silence()
    assert not rule.kick(-1, 100.0)
    assert not rule.kick(None, 100.0 + SILENT_S - 0.1)
    assert rule.kick(-1, 100.0 + SILENT_S)


def test_a_heartbeat_between_unheard_looks_starts_the_count_again() -> None:
    rule = Silence()
    assert not rule.kick(-1, 0.0)
    assert not rule.kick(int(0.5 * S), SILENT_S - 1)
    assert not rule.kick(-1, SILENT_S + 0.5)
    assert rule.kick(-1, 2 * SILENT_S + 0.5)
