"""The executor's SSRF guard against real loopback servers.

The default target policy refuses loopback, so every target here is refused unless a test
opens it. Linux routes all of 127.0.0.0/8 to loopback: a server bound to 127.0.0.2 stands for
a second, internal host, and ``--allow-cidr 127.0.0.1/32`` opens one without the other.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from support.executors import http_request, running_executor, wait_for_outcome
from support.http_target import HttpTarget

from eventstore.config import TepSettings
from eventstore.events import ActionAttemptFailed, ActionCompleted, ActionFailed
from eventstore.jetstream.log import EventLog
from eventstore.plan import RetryPolicy
from executor.errors import NonRetryableError, RetryableError
from executor.http_client import AiohttpClient, HttpRequest, HttpResponse
from executor.target_policy import TargetPolicy

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
RETRIES = RetryPolicy(max_attempts=3, min_backoff_ms=10, jitter=False)


async def send(
    url: str,
    policy: TargetPolicy | None = None,
    *,
    headers: dict[str, str] | None = None,
    resolver: AbstractResolver | None = None,
) -> HttpResponse:
    client = AiohttpClient(policy=policy, resolver=resolver)
    try:
        return await client.send(
            HttpRequest(method="GET", url=url, headers=headers or {}),
            timeout_s=5,
            max_body_bytes=1 << 20,
        )
    finally:
        await client.aclose()


async def refused(
    url: str, policy: TargetPolicy | None = None, *, resolver: AbstractResolver | None = None
) -> str:
    """The message of the ``target_not_allowed`` failure of a GET of ``url``."""
    with pytest.raises(NonRetryableError) as caught:
        await send(url, policy, resolver=resolver)
    assert caught.value.code == "target_not_allowed", caught.value.message
    assert not caught.value.retryable
    return caught.value.message


def allow(*cidrs: str, hosts: tuple[str, ...] = ()) -> TargetPolicy:
    return TargetPolicy.from_strings(allow_hosts=hosts, allow_cidrs=cidrs)


@pytest.fixture
async def internal_host() -> AsyncIterator[HttpTarget]:
    """A second target on 127.0.0.2: reachable, but not opened by ``allow("127.0.0.1")``."""
    async with HttpTarget(host="127.0.0.2") as target:
        yield target


class StubResolver(AbstractResolver):
    """Answers names from a table, as a DNS server under someone else's control would."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise OSError(socket.EAI_NONAME, f"{host} not found")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        """Nothing to release."""


# ------------------------------------------------------------ the default and the allowlist


async def test_a_loopback_target_is_refused_by_default_and_never_reached(
    http_target: HttpTarget,
) -> None:
    message = await refused(http_target.url("/echo/x"))

    assert message == (
        f"GET {http_target.url('/echo/x')} not sent: 127.0.0.1 is loopback; "
        "allow it with --allow-cidr 127.0.0.0/8"
    )
    assert http_target.hits == []


async def test_an_allowed_cidr_opens_the_target(http_target: HttpTarget) -> None:
    response = await send(http_target.url("/echo/x"), allow("127.0.0.0/8"))

    assert response.status == 200
    assert len(http_target.hits) == 1


async def test_an_allowed_host_opens_that_name_and_not_its_address(
    http_target: HttpTarget,
) -> None:
    # One client: the keep-alive connection opened for the allowed name is pooled under that
    # name, so it cannot carry a request to the address written out.
    client = AiohttpClient(policy=allow(hosts=("localhost",)))
    try:
        by_name = HttpRequest(method="GET", url=f"http://localhost:{http_target.port}/echo/x")
        response = await client.send(by_name, timeout_s=5, max_body_bytes=1000)
        with pytest.raises(NonRetryableError) as caught:
            by_ip = HttpRequest(method="GET", url=http_target.url("/echo/y"))
            await client.send(by_ip, timeout_s=5, max_body_bytes=1000)
    finally:
        await client.aclose()

    assert response.status == 200
    assert caught.value.code == "target_not_allowed"
    assert [hit.path for hit in http_target.hits] == ["/echo/x"]


async def test_a_name_that_resolves_to_loopback_through_the_hosts_file_is_refused(
    http_target: HttpTarget,
) -> None:
    message = await refused(f"http://localhost:{http_target.port}/echo/x")

    assert "localhost resolves to 127.0.0.1, which is loopback" in message
    assert "--allow-host localhost" in message
    assert http_target.hits == []


async def test_a_name_a_resolver_points_at_loopback_is_refused(http_target: HttpTarget) -> None:
    resolver = StubResolver({"api.example.com": ["127.0.0.1"]})

    message = await refused(
        f"http://api.example.com:{http_target.port}/echo/x", None, resolver=resolver
    )

    assert "api.example.com resolves to 127.0.0.1, which is loopback" in message
    assert http_target.hits == []


async def test_only_the_allowed_addresses_of_a_name_are_connected_to(
    http_target: HttpTarget, internal_host: HttpTarget
) -> None:
    # Both answers reach a server only if connected to: 127.0.0.2 is listening, 127.0.0.1 not
    # on this port. Connecting to the refused answer would hit the internal host.
    resolver = StubResolver({"svc.example.com": ["127.0.0.2", "127.0.0.1"]})
    url = f"http://svc.example.com:{internal_host.port}/echo/x"

    with pytest.raises(RetryableError) as caught:
        await send(url, allow("127.0.0.1/32"), resolver=resolver)

    assert caught.value.code == "connect_error"
    assert internal_host.hits == []
    await refused(url, allow("127.0.0.3/32"), resolver=resolver)
    assert (await send(url, allow("127.0.0.2/32"), resolver=resolver)).status == 200


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "2130706433",
        "0177.0.0.1",
        "017700000001",
        "0x7f000001",
        "0x7f.1",
        "0x7f.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0.0.0.0",
        "0",
        "localhost",
        "LocalHost",
    ],
)
async def test_every_spelling_of_loopback_is_refused(http_target: HttpTarget, host: str) -> None:
    message = await refused(f"http://{host}:{http_target.port}/echo/x")

    assert "is loopback" in message or "is unspecified" in message
    assert http_target.hits == []


async def test_the_ipv4_mapped_form_is_opened_by_its_ipv4_range(http_target: HttpTarget) -> None:
    response = await send(
        f"http://[::ffff:127.0.0.1]:{http_target.port}/echo/x", allow("127.0.0.0/8")
    )

    assert response.status == 200


# ------------------------------------------------------------ redirects


async def test_a_redirect_from_an_allowed_address_to_a_refused_one_is_refused(
    http_target: HttpTarget, internal_host: HttpTarget
) -> None:
    hop = http_target.url(f"/redirect/302/x?to={internal_host.url('/echo/secret')}")

    message = await refused(hop, allow("127.0.0.1/32"))

    assert message.startswith(f"GET {hop} not sent: 127.0.0.2 is loopback")
    assert [hit.path for hit in http_target.hits] == ["/redirect/302/x"]
    assert internal_host.hits == []
    # Opened, the same redirect is followed: the refusal was the policy's.
    assert (await send(hop, allow("127.0.0.0/30"))).status == 200
    assert [hit.path for hit in internal_host.hits] == ["/echo/secret"]


async def test_a_redirect_from_an_allowed_host_to_a_loopback_spelling_is_refused(
    http_target: HttpTarget,
) -> None:
    policy = allow(hosts=("localhost",))
    for spelling in ("127.0.0.1", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]"):
        to = f"http://{spelling}:{http_target.port}/echo/inner"
        hop = f"http://localhost:{http_target.port}/redirect/307/x?to={to}"

        await refused(hop, policy)

    assert http_target.count("/echo") == 0
    assert http_target.count("/redirect") == 4


async def test_a_redirect_to_another_origin_drops_credentials_and_cookies(
    http_target: HttpTarget, internal_host: HttpTarget
) -> None:
    secret = {
        "Authorization": "Bearer t0ken",
        "Proxy-Authorization": "Basic cHJveHk=",
        "Cookie": "session=abc",
        "X-Trace": "keep-me",
    }
    policy = allow("127.0.0.0/8")
    async with HttpTarget() as other_port:
        for to in (
            http_target.url("/echo/same"),
            other_port.url("/echo/other-port"),
            internal_host.url("/echo/other-host"),
        ):
            await send(http_target.url(f"/redirect/307/x?to={to}"), policy, headers=secret)

    [kept] = http_target.hits_for("/echo/same")
    assert {name: kept.headers.get(name.lower()) for name in secret} == secret
    for dropped in [*other_port.hits, *internal_host.hits]:
        assert dropped.headers.get("x-trace") == "keep-me"
        assert not {"authorization", "proxy-authorization", "cookie"} & set(dropped.headers)
    assert len(other_port.hits) == len(internal_host.hits) == 1


# ------------------------------------------------------------ through a real executor


async def test_an_executor_refuses_a_loopback_target_without_retrying(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(http_request("e1", "peek", http_target.url("/echo/x"), retry=RETRIES))

    async with running_executor(settings, allow_cidrs=()):
        outcome = await wait_for_outcome(event_log, "e1", "peek")

    assert isinstance(outcome, ActionFailed)
    assert outcome.attempt == 1
    assert outcome.error.code == "target_not_allowed" and not outcome.error.retryable
    assert "127.0.0.1 is loopback" in outcome.error.message
    records = await event_log.read_execution("e1")
    assert not any(isinstance(record.event, ActionAttemptFailed) for record in records)
    assert http_target.hits == []


async def test_an_executor_with_the_range_allowed_completes_the_call(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(http_request("e1", "peek", http_target.url("/echo/x")))

    async with running_executor(settings, allow_cidrs=("127.0.0.0/8",)):
        outcome = await wait_for_outcome(event_log, "e1", "peek")

    assert isinstance(outcome, ActionCompleted) and outcome.status_code == 200


async def test_tep_executor_refuses_by_default_and_opens_what_its_flags_allow(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEP_EXECUTOR_ALLOW_")}
    command = [sys.executable, "-m", "tep.cli.main", "executor", "--nats-url", settings.nats_url]
    process = await anyio.open_process(
        [*command, "--allow-host", "localhost", "--shutdown-grace", "0"],
        cwd=ROOT,
        env={**env, "TEP_LOG_LEVEL": "WARNING"},
        stdout=None,
        stderr=None,
    )
    try:
        await event_log.append(http_request("e1", "by-ip", http_target.url("/echo/ip")))
        named = f"http://localhost:{http_target.port}/echo/name"
        await event_log.append(http_request("e1", "by-name", named))

        by_ip = await wait_for_outcome(event_log, "e1", "by-ip", timeout=30)
        by_name = await wait_for_outcome(event_log, "e1", "by-name", timeout=30)
    finally:
        process.terminate()
        with anyio.fail_after(30):
            await process.wait()

    assert isinstance(by_ip, ActionFailed) and by_ip.error.code == "target_not_allowed"
    assert isinstance(by_name, ActionCompleted)
    assert [hit.path for hit in http_target.hits] == ["/echo/name"]
