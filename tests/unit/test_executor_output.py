"""Response and handler results -> action output; kept headers."""

from __future__ import annotations

import base64

import pytest

from executor.errors import NonRetryableError
from executor.output import encoded_size, output_from_body, output_from_value, select_headers


def test_a_json_object_body_is_the_output() -> None:
    assert output_from_body(b'{"a": 1, "b": [true]}', "application/json") == {"a": 1, "b": [True]}


def test_non_object_json_is_wrapped_as_value() -> None:
    assert output_from_body(b"[1, 2]", "application/json; charset=utf-8") == {"value": [1, 2]}
    assert output_from_body(b'"hi"', "application/problem+json") == {"value": "hi"}


def test_a_text_body_becomes_text() -> None:
    assert output_from_body(b"<p>hi</p>", "text/html") == {"text": "<p>hi</p>"}


def test_json_labelled_text_that_does_not_parse_is_kept_as_text() -> None:
    assert output_from_body(b"not json", "application/json") == {"text": "not json"}


def test_a_body_without_content_type_is_parsed_when_it_is_json() -> None:
    assert output_from_body(b'{"x": 1}', None) == {"x": 1}
    assert output_from_body(b"plain", None) == {"text": "plain"}


def test_an_empty_body_is_an_empty_output() -> None:
    assert output_from_body(b"", "application/json") == {}


def test_a_binary_body_is_kept_as_base64() -> None:
    raw = bytes([0xFF, 0x00, 0xFE])

    assert output_from_body(raw, "application/octet-stream") == {
        "base64": base64.b64encode(raw).decode()
    }


def test_handler_values_follow_the_same_rules() -> None:
    assert output_from_value({"k": "v"}) == {"k": "v"}
    assert output_from_value(3) == {"value": 3}
    assert output_from_value(None) == {}


def test_an_output_that_is_not_json_is_a_handler_error() -> None:
    with pytest.raises(NonRetryableError) as caught:
        encoded_size({"x": object()})

    assert caught.value.code == "handler_error"


def test_only_selected_headers_are_kept_lower_cased_and_truncated() -> None:
    kept = select_headers(
        {
            "Content-Type": "application/json",
            "ETag": '"v1"',
            "Set-Cookie": "s=1",
            "X-Request-Id": "r" * 5000,
        }
    )

    assert kept == {"content-type": "application/json", "etag": '"v1"', "x-request-id": "r" * 1024}
