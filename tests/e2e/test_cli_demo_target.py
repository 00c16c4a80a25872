"""`tep demo-target`: the examples' local HTTP service behaves as the examples rely on."""

from __future__ import annotations

import httpx
from tep_cli import DemoTarget


def test_users_have_a_tier_by_parity_and_unknown_users_are_404(demo_target: DemoTarget) -> None:
    premium = httpx.get(f"{demo_target.url}/users/42").json()
    standard = httpx.get(f"{demo_target.url}/users/7").json()
    missing = httpx.get(f"{demo_target.url}/users/5000")

    assert premium["tier"] == "premium" and premium["email"] == "alan.42@example.test"
    assert standard["tier"] == "standard"
    assert missing.status_code == 404


def test_flaky_fails_n_times_per_idempotency_key_then_succeeds(demo_target: DemoTarget) -> None:
    url = f"{demo_target.url}/flaky/pay?fail=2"
    first_run = [
        httpx.get(url, headers={"Idempotency-Key": "e1:pay"}).status_code for _ in range(3)
    ]
    other_run = httpx.get(url, headers={"Idempotency-Key": "e2:pay"})

    assert first_run == [503, 503, 200]
    assert other_run.status_code == 503  # a new execution sees fresh failures


def test_slow_echo_score_notify_and_status(demo_target: DemoTarget) -> None:
    slow = httpx.get(f"{demo_target.url}/slow?ms=50").json()
    echo = httpx.post(
        f"{demo_target.url}/echo?x=1", json={"a": [1]}, headers={"Idempotency-Key": "k"}
    ).json()
    score = httpx.post(f"{demo_target.url}/score", json={"tier": "premium", "orders": [1, 2]})
    notify = httpx.post(f"{demo_target.url}/notify", json={"to": "a@example.test"})
    refused = httpx.post(f"{demo_target.url}/notify", json={})
    teapot = httpx.get(f"{demo_target.url}/status/418")

    assert slow == {"slept_ms": 50}
    assert echo["json"] == {"a": [1]} and echo["query"] == {"x": "1"}
    assert echo["idempotency_key"] == "k"
    assert score.json()["score"] == 76
    assert notify.status_code == 202 and notify.json()["delivered"] is True
    assert refused.status_code == 422
    assert teapot.status_code == 418
    stats = httpx.get(f"{demo_target.url}/stats").json()
    assert stats["/slow"] == 1 and stats["/notify"] == 2
