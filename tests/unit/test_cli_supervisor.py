"""The supervisor's restart policy."""

from __future__ import annotations

from tep.supervisor import Backoff


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_healthy_run() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, healthy_after=30.0)

    quick = [backoff.next_delay(ran_for=0.1) for _ in range(6)]
    after_long_run = backoff.next_delay(ran_for=60.0)

    assert quick == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert after_long_run == 0.5
