"""Request spec -> the request on the wire."""

from __future__ import annotations

import pytest

from eventstore.plan import RequestSpec
from executor.errors import NonRetryableError
from executor.request import build_http_request


def build(spec: RequestSpec) -> object:
    return build_http_request(spec, execution_id="e1", action_id="fetch")


def test_every_request_carries_the_actions_idempotency_key() -> None:
    request = build_http_request(
        RequestSpec(url="http://t/x", headers={"idempotency-key": "mine", "Accept": "a/b"}),
        execution_id="e1",
        action_id="fetch",
    )

    assert request.headers == {"Accept": "a/b", "Idempotency-Key": "e1:fetch"}


def test_query_parameters_are_merged_into_the_url() -> None:
    request = build_http_request(
        RequestSpec(url="http://t/x?a=1#frag", query={"b": "2 3"}), execution_id="e", action_id="a"
    )

    assert request.url == "http://t/x?a=1&b=2+3"


def test_json_is_encoded_with_its_content_type() -> None:
    request = build_http_request(
        RequestSpec(url="http://t/x", method="POST", json={"to": "a@b"}),
        execution_id="e",
        action_id="a",
    )

    assert request.method == "POST"
    assert request.body == b'{"to":"a@b"}'
    assert request.headers["Content-Type"] == "application/json"


def test_an_explicit_content_type_wins_and_text_bodies_are_utf8() -> None:
    request = build_http_request(
        RequestSpec(
            url="http://t/x", method="PUT", body="é", headers={"content-type": "text/plain"}
        ),
        execution_id="e",
        action_id="a",
    )

    assert request.body == "é".encode()
    assert "Content-Type" not in request.headers


@pytest.mark.parametrize("url", ["ftp://t/x", "/relative", "http://", "not a url"])
def test_a_url_that_is_not_absolute_http_is_an_invalid_request(url: str) -> None:
    with pytest.raises(NonRetryableError) as caught:
        build_http_request(RequestSpec(url=url), execution_id="e", action_id="a")

    assert caught.value.code == "invalid_request"
