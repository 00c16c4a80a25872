"""Start-up steps are asked again while JetStream settles, and only then."""

from __future__ import annotations

import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import ServiceUnavailableError

from eventstore.jetstream.settling import asking_again

pytestmark = pytest.mark.anyio


async def test_a_step_that_times_out_is_asked_again_until_it_answers() -> None:
    failures: list[Exception] = [
        NatsTimeoutError(),
        NoRespondersError(),
        ServiceUnavailableError(),
    ]
    seen: list[Exception] = []
    calls = 0

    async def step() -> str:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop(0)
        return "consumer"

    assert await asking_again(step, what="a step", on_error=seen.append) == "consumer"
    assert calls == 4
    assert [type(e) for e in seen] == [NatsTimeoutError, NoRespondersError, ServiceUnavailableError]


async def test_any_other_error_is_raised_at_once() -> None:
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("stream not found")

    with pytest.raises(ValueError, match="stream not found"):
        await asking_again(step, what="a step")
    assert calls == 1
