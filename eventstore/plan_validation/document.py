"""The raw plan document: bytes from any input, and JSON decoding with readable errors. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from eventstore.errors import PlanValidationError
from eventstore.plan import Plan
from eventstore.plan_validation.limits import document_problems, too_deep_problem

__all__ = ["decode_json", "json_type", "raw_document"]

_BOM = b"\xef\xbb\xbf"


def raw_document(data: bytes | str | Mapping[str, Any] | Plan, *, max_depth: int) -> bytes:
    """The document as encoded JSON bytes, whatever form it came in.

    A document given as objects is checked for nesting and non-finite numbers before it is
    encoded: encoding would recurse through it, and would write NaN and infinities as ``null``.

    Raises:
        PlanValidationError: ``data`` is nested deeper than ``max_depth``, holds a NaN or an
            infinity, or is not representable as JSON.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    problems = document_problems(data, max_depth)
    if problems:
        raise PlanValidationError(problems)
    try:
        return msgspec.json.encode(data)
    except (TypeError, msgspec.EncodeError) as exc:
        raise PlanValidationError([f"plan: not representable as JSON: {exc}"]) from exc
    except RecursionError:
        raise PlanValidationError([too_deep_problem(max_depth)]) from None


def json_type(value: Any) -> str:
    """How a problem names the JSON type of a decoded value, e.g. ``an array``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def decode_json(raw: bytes, *, max_depth: int) -> Any:
    """Decode the document (a leading UTF-8 byte order mark is ignored).

    Raises:
        PlanValidationError: the document is empty or malformed (with line and column), or too
            deeply nested for the decoder (named as nesting deeper than ``max_depth``).
    """
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    if not raw.strip():
        raise PlanValidationError(["plan: the document is empty (expected a JSON object)"])
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise PlanValidationError([_json_error(raw, str(exc))]) from exc
    except RecursionError:
        raise PlanValidationError([too_deep_problem(max_depth, raw)]) from None


def _json_error(raw: bytes, message: str) -> str:
    match = re.search(r"\s*\(byte (\d+)\)$", message)
    if match:
        position = int(match.group(1))
        line = raw.count(b"\n", 0, position) + 1
        line_start = raw.rfind(b"\n", 0, position) + 1
        column = len(raw[line_start:position].decode("utf-8", "replace")) + 1
        reason = message[: match.start()].removeprefix("JSON is malformed: ")
        return f"malformed JSON at line {line}, column {column}: {reason}"
    if "truncated" in message:
        line = raw.rstrip().count(b"\n") + 1
        return (
            f"malformed JSON: the document ends early at line {line} "
            "(an object, array or string is not closed)"
        )
    return f"malformed JSON: {message}"
