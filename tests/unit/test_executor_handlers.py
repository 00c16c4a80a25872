"""The handler registry and the built-in http handler above an injected HTTP client."""

from __future__ import annotations

import pytest

import executor
from eventstore.events import ActionExecuteRequested
from eventstore.plan import RequestSpec
from executor.errors import HandlerLoadError, NonRetryableError, RetryableError
from executor.handlers import (
    AttemptInfo,
    HandlerRegistry,
    HandlerResult,
    load_handler_modules,
    set_current_attempt,
)
from executor.http_client import HttpRequest, HttpResponse, MockHttpClient
from executor.http_handler import HttpHandler

pytestmark = pytest.mark.anyio


def request(url: str = "http://t/users/1") -> ActionExecuteRequested:
    return ActionExecuteRequested(
        execution_id="e1",
        action_id="fetch",
        action_type="http",
        queue="http",
        request=RequestSpec(url=url),
    )


def in_attempt() -> None:
    set_current_attempt(
        AttemptInfo(
            execution_id="e1",
            action_id="fetch",
            action_type="http",
            attempt=1,
            max_attempts=1,
            timeout_s=5.0,
            idempotency_key="e1:fetch",
        )
    )


async def echo_type(event: ActionExecuteRequested) -> dict[str, str]:
    return {"type": event.action_type}


def test_the_decorator_registers_and_returns_the_function() -> None:
    registry = HandlerRegistry()

    decorated = registry.handler("resize-image")(echo_type)

    assert decorated is echo_type
    assert registry.get("resize-image") is echo_type
    assert registry.types() == ["resize-image"]


def test_a_second_handler_for_a_type_is_refused_but_re_registering_is_fine() -> None:
    registry = HandlerRegistry()
    registry.register("t", echo_type)
    registry.register("t", echo_type)

    async def other(event: ActionExecuteRequested) -> None:
        return None

    with pytest.raises(HandlerLoadError, match="already has a handler"):
        registry.register("t", other)


def test_http_is_built_in_and_type_names_are_checked() -> None:
    registry = HandlerRegistry()

    with pytest.raises(HandlerLoadError, match="built in"):
        registry.register("http", echo_type)
    with pytest.raises(HandlerLoadError, match="must match"):
        registry.register("no spaces", echo_type)


def test_a_module_that_cannot_be_imported_is_named() -> None:
    with pytest.raises(HandlerLoadError, match="no_such_handlers_module"):
        load_handler_modules(["no_such_handlers_module"])


def test_the_public_api_is_pinned() -> None:
    assert sorted(executor.__all__) == [
        "ActionError",
        "AttemptInfo",
        "HandlerLoadError",
        "HandlerRegistry",
        "HandlerResult",
        "NonRetryableError",
        "RetryableError",
        "current_attempt",
        "default_registry",
        "handler",
    ]


async def test_http_handler_maps_a_json_response_onto_the_output() -> None:
    in_attempt()
    client = MockHttpClient(
        lambda r: HttpResponse(
            status=200,
            headers={"content-type": "application/json", "etag": "v1", "server": "x"},
            body=b'{"email": "a@b"}',
        )
    )

    result = await HttpHandler(client, max_body_bytes=1000)(request())

    assert result == HandlerResult(
        output={"email": "a@b"},
        status_code=200,
        headers={"content-type": "application/json", "etag": "v1"},
    )
    assert client.requests == [
        HttpRequest(method="GET", url="http://t/users/1", headers={"Idempotency-Key": "e1:fetch"})
    ]


async def test_http_handler_raises_the_classified_error_for_a_failed_status() -> None:
    in_attempt()
    client = MockHttpClient(lambda r: HttpResponse(status=502, headers={}, body=b"bad gateway"))

    with pytest.raises(RetryableError) as caught:
        await HttpHandler(client, max_body_bytes=1000)(request())

    assert caught.value.code == "http_5xx" and caught.value.status_code == 502


async def test_http_handler_refuses_an_action_without_a_request() -> None:
    in_attempt()
    client = MockHttpClient(lambda r: HttpResponse(status=200, headers={}, body=b""))
    bare = ActionExecuteRequested(execution_id="e", action_id="a", action_type="http", queue="http")

    with pytest.raises(NonRetryableError) as caught:
        await HttpHandler(client, max_body_bytes=1000)(bare)

    assert caught.value.code == "invalid_request" and client.requests == []
