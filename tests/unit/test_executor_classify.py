"""Which failures are retried, and with which stable codes."""

from __future__ import annotations

from executor.classify import error_for_exception, error_for_status
from executor.errors import NonRetryableError, RetryableError


def classify(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> object:
    return error_for_status(status, headers or {}, body, method="GET", url="http://t/x")


def test_success_and_redirect_statuses_are_not_errors() -> None:
    assert classify(200) is None
    assert classify(204) is None
    assert classify(304) is None


def test_a_404_fails_at_once_with_http_4xx() -> None:
    error = classify(404, body=b'{"detail": "no such user"}')

    assert isinstance(error, NonRetryableError)
    assert error.code == "http_4xx" and error.status_code == 404
    assert "GET http://t/x returned HTTP 404" in error.message
    assert "no such user" in error.message


def test_a_503_is_retried_with_its_retry_after() -> None:
    error = classify(503, {"retry-after": "4"})

    assert isinstance(error, RetryableError)
    assert error.code == "http_5xx" and error.retry_after_s == 4.0


def test_408_and_429_are_retryable_4xx() -> None:
    for status in (408, 429):
        error = classify(status)
        assert isinstance(error, RetryableError) and error.code == "http_4xx"


def test_retry_after_is_ignored_on_other_statuses() -> None:
    error = classify(500, {"retry-after": "4"})

    assert isinstance(error, RetryableError) and error.retry_after_s is None


def test_long_bodies_are_cut_in_the_message() -> None:
    error = classify(500, body=b"e" * 10_000)

    assert isinstance(error, RetryableError)
    assert len(error.message) < 300


def test_action_errors_pass_through() -> None:
    original = NonRetryableError("bad image", code="bad_image")

    assert error_for_exception(original) is original


def test_a_timeout_is_a_retryable_timeout() -> None:
    error = error_for_exception(TimeoutError(), timeout_s=2.5)

    assert error.retryable and error.code == "timeout"
    assert "2.5 s" in error.message


def test_any_other_exception_is_a_retryable_handler_error() -> None:
    error = error_for_exception(KeyError("width"))

    assert error.retryable and error.code == "handler_error"
    assert "KeyError" in error.message and "width" in error.message
