"""Which failures are worth another attempt: HTTP statuses and stray exceptions. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from eventstore.error_codes import ErrorCode
from executor.errors import ActionError, NonRetryableError, RetryableError
from executor.retry import RETRY_AFTER_STATUSES, is_retryable_status, parse_retry_after

__all__ = ["BODY_SNIPPET_CHARS", "error_for_exception", "error_for_status"]

BODY_SNIPPET_CHARS = 200


def _snippet(body: bytes) -> str:
    text = body[: BODY_SNIPPET_CHARS * 4].decode("utf-8", "replace").strip()
    text = " ".join(text.split())
    if len(text) > BODY_SNIPPET_CHARS:
        text = text[:BODY_SNIPPET_CHARS] + "..."
    return text


def error_for_status(
    status: int, headers: Mapping[str, str], body: bytes, *, method: str, url: str
) -> ActionError | None:
    """The error an HTTP response stands for, or ``None`` when it is a success (< 400).

    408, 429 and 5xx are retryable (``Retry-After`` is read on 429 and 503); other 4xx are not.
    The message names the request and starts the body, so a failed action explains itself.

    Example:
        >>> error_for_status(404, {}, b"", method="GET", url="http://h/x").code
        'http_4xx'
    """
    if status < 400:
        return None
    snippet = _snippet(body)
    message = f"{method} {url} returned HTTP {status}" + (f": {snippet}" if snippet else "")
    code = ErrorCode.HTTP_4XX if status < 500 else ErrorCode.HTTP_5XX
    if not is_retryable_status(status):
        return NonRetryableError(message, code=code, status_code=status)
    retry_after = (
        parse_retry_after(headers.get("retry-after")) if status in RETRY_AFTER_STATUSES else None
    )
    return RetryableError(message, code=code, status_code=status, retry_after_s=retry_after)


def error_for_exception(exc: BaseException, *, timeout_s: float | None = None) -> ActionError:
    """Any exception from a handler as an :class:`ActionError`.

    Action errors pass through; a timeout becomes ``timeout``; anything else ``handler_error``,
    retryable (the handler did not say otherwise).
    """
    if isinstance(exc, ActionError):
        return exc
    if isinstance(exc, TimeoutError):
        after = f" after {timeout_s:g} s" if timeout_s is not None else ""
        return RetryableError(f"attempt timed out{after}", code=ErrorCode.TIMEOUT)
    detail = str(exc)
    return RetryableError(
        f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__,
        code=ErrorCode.HANDLER_ERROR,
    )
