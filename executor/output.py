"""What an attempt's result becomes in ``action.completed``. Pure.

* a JSON object body is the output; other JSON values are wrapped as ``{"value": ...}``;
* any other UTF-8 body becomes ``{"text": ...}``, a body that is not UTF-8
  ``{"base64": ...}``; an empty body ``{}``;
* a handler's return value follows the same rules (``None`` -> ``{}``);
* a few response headers are kept beside the output (:data:`KEPT_HEADERS`).
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping
from typing import Any

import msgspec

from eventstore.error_codes import ErrorCode
from eventstore.payloads import REF_KEY, find_refs
from executor.errors import NonRetryableError

__all__ = [
    "KEPT_HEADERS",
    "MAX_HEADER_CHARS",
    "checked_size",
    "encoded_size",
    "output_from_body",
    "output_from_value",
    "select_headers",
]

KEPT_HEADERS = ("content-type", "etag", "location", "x-request-id", "last-modified")
MAX_HEADER_CHARS = 1024

_encoder = msgspec.json.Encoder()
_REF_TEXT = f'"{REF_KEY}"'.encode()


def _is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def output_from_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Map a response body onto an output object.

    A body is read as JSON when its content type says so, or when there is no content type;
    a body that does not parse is kept as text.

    Example:
        >>> output_from_body(b'[1, 2]', "application/json")
        {'value': [1, 2]}
        >>> output_from_body(b"hello", "text/plain")
        {'text': 'hello'}
    """
    if not body:
        return {}
    if _is_json_type(content_type) or not content_type:
        try:
            decoded = msgspec.json.decode(body)
        except msgspec.DecodeError:
            pass
        else:
            return decoded if isinstance(decoded, dict) else {"value": decoded}
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}


def output_from_value(value: Any) -> dict[str, Any]:
    """Map a handler's return value onto an output object (``None`` -> ``{}``).

    Example:
        >>> output_from_value([1, 2])
        {'value': [1, 2]}
    """
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return {"value": value}


def select_headers(
    headers: Mapping[str, str], names: Collection[str] = KEPT_HEADERS
) -> dict[str, str]:
    """The response headers kept on ``action.completed`` (lower-case names, values truncated)."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in names and key not in kept:
            kept[key] = value[:MAX_HEADER_CHARS]
    return kept


def _encoded(output: Mapping[str, Any]) -> bytes:
    try:
        return _encoder.encode(output)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise NonRetryableError(f"output is not JSON: {exc}", code=ErrorCode.HANDLER_ERROR) from exc


def encoded_size(output: Mapping[str, Any]) -> int:
    """Bytes the output takes inside an event.

    Raises:
        NonRetryableError: ``handler_error`` when the output is not JSON-serialisable.
    """
    return len(_encoded(output))


def checked_size(output: Mapping[str, Any]) -> int:
    """:func:`encoded_size`, refusing an output that holds a payload reference.

    Only the engine writes references (``{"$ref": {"digest": ...}}``, see
    :mod:`eventstore.payloads`): one in a response or a handler's value would make readers
    fetch whatever payload it names.

    Raises:
        NonRetryableError: ``handler_error`` when the output is not JSON-serialisable,
            ``invalid_response`` when it holds a reference.
    """
    data = _encoded(output)
    if _REF_TEXT in data and find_refs(output):
        raise NonRetryableError(
            f'the output holds a payload reference ({{"{REF_KEY}": {{"digest": ...}}}}), which '
            "only the engine writes",
            code=ErrorCode.INVALID_RESPONSE,
        )
    return len(data)
