"""The executor's HTTP layer (aiohttp) against a real local server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from support.http_target import HttpTarget

from executor.errors import NonRetryableError, RetryableError
from executor.http_client import AiohttpClient, HttpRequest, HttpResponse
from executor.target_policy import TargetPolicy
from tep.server import find_free_port

pytestmark = pytest.mark.anyio

# The targets here listen on loopback, which the default target policy refuses.
LOOPBACK = TargetPolicy.from_strings(allow_cidrs=["127.0.0.0/8"])


async def send(
    url: str,
    *,
    method: str = "GET",
    timeout_s: float = 5.0,
    cap: int = 1 << 20,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    client = AiohttpClient(policy=LOOPBACK)
    try:
        return await client.send(
            HttpRequest(method=method, url=url, headers=headers or {}, body=body),
            timeout_s=timeout_s,
            max_body_bytes=cap,
        )
    finally:
        await client.aclose()


async def test_a_request_is_sent_as_specified_and_the_response_read(
    http_target: HttpTarget,
) -> None:
    response = await send(
        http_target.url("/echo/x?q=1"),
        method="PUT",
        body=b'{"a": 1}',
        headers={"Content-Type": "application/json", "Idempotency-Key": "e:a"},
    )

    assert response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    [hit] = http_target.hits
    assert (hit.method, hit.query, hit.body) == ("PUT", {"q": "1"}, b'{"a": 1}')
    assert hit.idempotency_key == "e:a"
    assert hit.headers["user-agent"].startswith("tep-executor/")


async def test_cookies_set_by_one_response_are_not_sent_with_the_next(
    http_target: HttpTarget,
) -> None:
    client = AiohttpClient(policy=LOOPBACK)
    try:
        request = HttpRequest(method="GET", url=http_target.url("/headers/x?Set-Cookie=s=1"))
        await client.send(request, timeout_s=5, max_body_bytes=1000)
        await client.send(request, timeout_s=5, max_body_bytes=1000)
    finally:
        await client.aclose()

    assert "cookie" not in http_target.hits[1].headers


async def test_a_refused_connection_is_a_retryable_connect_error() -> None:
    with pytest.raises(RetryableError) as caught:
        await send(f"http://127.0.0.1:{find_free_port()}/x")

    assert caught.value.code == "connect_error"


async def test_a_slow_response_is_a_retryable_timeout(http_target: HttpTarget) -> None:
    with pytest.raises(RetryableError) as caught:
        await send(http_target.url("/slow/x?delay=3"), timeout_s=0.2)

    assert caught.value.code == "timeout"


@pytest.mark.parametrize("chunked", ["0", "1"])
async def test_a_body_over_the_cap_is_output_too_large(
    http_target: HttpTarget, chunked: str
) -> None:
    with pytest.raises(NonRetryableError) as caught:
        await send(http_target.url(f"/big/300000/x?chunked={chunked}"), cap=100_000)

    assert caught.value.code == "output_too_large"


async def test_a_body_at_the_cap_is_read_whole(http_target: HttpTarget) -> None:
    response = await send(http_target.url("/big/100000/x?chunked=1"), cap=100_000)

    assert len(response.body) == 100_000


async def test_an_invalid_header_value_is_an_invalid_request(http_target: HttpTarget) -> None:
    with pytest.raises(NonRetryableError) as caught:
        await send(http_target.url("/echo/x"), headers={"X-Bad": "a\r\nInjected: 1"})

    assert caught.value.code == "invalid_request"
    assert http_target.hits == []


@pytest.fixture
async def odd_server() -> AsyncIterator[str]:
    """A server that misbehaves in ways the recording target cannot: an oversized response
    header, a redirect loop, a chain of ``n`` redirects."""

    async def big_header(request: web.Request) -> web.Response:
        return web.Response(headers={"X-Big": "a" * 1_000_000})

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def hops(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        if left == 0:
            return web.json_response({"arrived": True})
        raise web.HTTPFound(f"/hops/{left - 1}")

    app = web.Application()
    app.router.add_get("/big-header", big_header)
    app.router.add_get("/loop", loop)
    app.router.add_get("/hops/{n:\\d+}", hops)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = find_free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_response_header_over_the_limit_is_a_non_retryable_invalid_response(
    odd_server: str,
) -> None:
    with pytest.raises(NonRetryableError) as caught:
        await send(f"{odd_server}/big-header")

    assert caught.value.code == "invalid_response"
    assert f"GET {odd_server}/big-header" in caught.value.message
    assert "not valid HTTP" in caught.value.message


async def test_a_redirect_loop_fails_with_too_many_redirects_naming_the_url(
    odd_server: str,
) -> None:
    with pytest.raises(NonRetryableError) as caught:
        await send(f"{odd_server}/loop")

    assert caught.value.code == "too_many_redirects"
    assert caught.value.message.startswith(f"GET {odd_server}/loop was redirected more than 5")


async def test_up_to_the_redirect_limit_redirects_are_followed(odd_server: str) -> None:
    response = await send(f"{odd_server}/hops/5")

    assert response.status == 200 and b"arrived" in response.body
    with pytest.raises(NonRetryableError) as caught:
        await send(f"{odd_server}/hops/6")
    assert caught.value.code == "too_many_redirects"
