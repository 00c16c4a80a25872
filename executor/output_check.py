"""Typed steps: an action's output against its ``output_schema``. Pure.

The schema is matched against the output exactly as ``action.completed`` stores it and
templates read it (``{{actions.<id>.output...}}``), after secrets are scrubbed: for ``http``
the response body (a JSON object as it is, any other JSON value as ``{"value": ...}``, text as
``{"text": ...}``; status and headers are beside it, not in it); for a Python handler its
return value under the same rules (see :mod:`executor.output`).

A mismatch fails the action at once with ``output_invalid``: a target that answers in the
wrong shape answers the same way when asked again, so no attempt is retried for it. The
message names each mismatch by path::

    the output does not match the action's output_schema: output.items[2].price: 'x' is not
    of type 'number'; output: 'id' is a required property
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore.error_codes import ErrorCode
from eventstore.json_schema import schema_problems
from executor.errors import NonRetryableError

__all__ = ["MAX_LISTED_OUTPUT_MISMATCHES", "check_output", "output_mismatch"]

MAX_LISTED_OUTPUT_MISMATCHES = 10
"""Mismatches named in the error before ``and K more``."""


def output_mismatch(
    schema: dict[str, Any] | msgspec.UnsetType | None, output: Any
) -> NonRetryableError | None:
    """The ``output_invalid`` error for an output that does not match ``schema``, or ``None``
    (also when there is no schema).

    Example:
        >>> schema = {"properties": {"total": {"type": "number"}}}
        >>> output_mismatch(schema, {"total": "x"}).message  # doctest: +NORMALIZE_WHITESPACE
        "the output does not match the action's output_schema: output.total: 'x' is not of
        type 'number'"
        >>> output_mismatch(schema, {"total": 3}) is None
        True
    """
    if not isinstance(schema, dict):
        return None
    problems = schema_problems(schema, output, root="output", limit=MAX_LISTED_OUTPUT_MISMATCHES)
    if not problems:
        return None
    return NonRetryableError(
        "the output does not match the action's output_schema: " + "; ".join(problems),
        code=ErrorCode.OUTPUT_INVALID,
    )


def check_output(schema: dict[str, Any] | msgspec.UnsetType | None, output: Any) -> None:
    """Raise the ``output_invalid`` error if ``output`` does not match ``schema``.

    Raises:
        NonRetryableError: code ``output_invalid``, naming each mismatch by path.
    """
    error = output_mismatch(schema, output)
    if error is not None:
        raise error
