"""Errors of an action attempt, carrying their retry policy as data.

A handler raises :class:`RetryableError` or :class:`NonRetryableError` to say whether another
attempt may help; any other exception counts as ``handler_error`` and is retried. The HTTP
layer maps transport failures onto the same types, so one classification drives every retry.

Stable codes: ``timeout``, ``connect_error``, ``http_4xx``, ``http_5xx``, ``output_too_large``,
``invalid_request``, ``invalid_response``, ``too_many_redirects``, ``target_not_allowed``,
``missing_secret``, ``handler_error``, ``unknown_action_type``, ``interrupted``.
"""

from __future__ import annotations

from eventstore.errors import TepError

__all__ = [
    "ActionError",
    "HandlerLoadError",
    "NonRetryableError",
    "RetryableError",
]


class ActionError(TepError):
    """An attempt failed.

    Attributes:
        message: what went wrong, for humans (never holds a secret value).
        code: a stable machine-readable code.
        retryable: whether another attempt may succeed.
        status_code: the HTTP status, when there was a response.
        retry_after_s: a delay the target asked for (``Retry-After``), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after_s = retry_after_s


class RetryableError(ActionError):
    """A failure another attempt may fix (the action's retry policy decides when).

    Example:
        >>> raise RetryableError("thumbnail service busy", retry_after_s=2)  # doctest: +SKIP
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "handler_error",
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            retryable=True,
            status_code=status_code,
            retry_after_s=retry_after_s,
        )


class NonRetryableError(ActionError):
    """A failure no retry can fix: the action fails at once.

    Example:
        >>> raise NonRetryableError("image is not a PNG", code="bad_image")  # doctest: +SKIP
    """

    def __init__(
        self, message: str, *, code: str = "handler_error", status_code: int | None = None
    ) -> None:
        super().__init__(message, code=code, retryable=False, status_code=status_code)


class HandlerLoadError(TepError):
    """A ``--handlers`` module could not be imported, or registered a type twice."""
