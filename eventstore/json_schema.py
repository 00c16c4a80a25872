"""JSON Schemas in plans: whether a schema is usable, and each way a value does not match. Pure.

The one place every schema of a plan is checked: a waitpoint's ``schema`` (resume data), an
action's ``output_schema`` (its output) and the plan's ``input_schema`` (its input). Schemas
are JSON Schema draft 2020-12; ``format`` is an annotation (not checked) and a ``$ref`` is
followed only inside the schema itself (nothing is fetched).

A mismatch is one line naming the value by path from a root, e.g.::

    output.items[2].price: 'x' is not of type 'number'
    input: 'user_id' is a required property
    data["first name"]: 3 is not of type 'string'

Mismatches are listed in path order, at most ``limit`` of them, then ``and K more``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing.exceptions import Unresolvable

__all__ = [
    "MAX_LISTED_MISMATCHES",
    "MAX_MISMATCH_CHARS",
    "schema_problem",
    "schema_problems",
    "value_path",
]

MAX_LISTED_MISMATCHES = 5
"""Mismatches listed by default before ``and K more``."""
MAX_MISMATCH_CHARS = 200
"""The longest message of one mismatch (a message quotes the value, which may be large)."""

_PLAIN_KEY = re.compile(r"[^.\[\]\s\"']+")
_encoder = msgspec.json.Encoder(order="sorted")


def schema_problem(schema: Any, field: str = "schema") -> str | None:
    """Why ``schema`` is not a usable JSON Schema, or ``None``.

    Args:
        schema: the schema as written in the plan.
        field: how the problem names it, e.g. ``output_schema``.

    Example:
        >>> schema_problem({"type": "object"}) is None
        True
        >>> schema_problem(["string"], "output_schema")
        'output_schema must be a JSON object (a JSON Schema)'
    """
    if not isinstance(schema, dict):
        return f"{field} must be a JSON object (a JSON Schema)"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        return f"{field} is not a valid JSON Schema at {where}: {_bounded(exc.message)}"
    return None


def value_path(root: str, path: Iterable[str | int]) -> str:
    """``root`` followed by ``path`` as templates spell it: ``output.items[2].price``.

    A key that templates could not spell (a dot, a bracket, a space, a quote, or empty) is
    written as a JSON string in brackets: ``output["first name"]``.
    """
    parts = [root]
    for segment in path:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _PLAIN_KEY.fullmatch(segment):
            parts.append(f".{segment}")
        else:
            parts.append(f"[{msgspec.json.encode(segment).decode()}]")
    return "".join(parts)


def schema_problems(
    schema: dict[str, Any],
    data: Any,
    *,
    root: str = "data",
    limit: int = MAX_LISTED_MISMATCHES,
) -> list[str]:
    """Each way ``data`` does not match ``schema``, as ``<path>: <message>``; empty if it does.

    Args:
        schema: a usable schema (see :func:`schema_problem`).
        data: the JSON value to check.
        root: how paths start (``data``, ``input``, ``output``).
        limit: the most mismatches listed; beyond them one more line says ``and K more``.

    Example:
        >>> schema_problems({"type": "object", "properties": {"n": {"type": "number"}}},
        ...                 {"n": "x"}, root="output")
        ["output.n: 'x' is not of type 'number'"]
    """
    try:
        errors = sorted(_validator(_encoder.encode(schema)).iter_errors(data), key=_order)
    except Unresolvable as exc:
        return [f"{root}: the schema cannot be applied: {_bounded(str(exc))}"]
    problems = [
        f"{value_path(root, error.absolute_path)}: {_bounded(error.message)}"
        for error in errors[:limit]
    ]
    if len(errors) > limit:
        problems.append(f"and {len(errors) - limit} more")
    return problems


@lru_cache(maxsize=128)
def _validator(encoded: bytes) -> Draft202012Validator:
    """One compiled validator per schema, shared by every value checked against it."""
    return Draft202012Validator(msgspec.json.decode(encoded))


def _order(error: ValidationError) -> list[tuple[int, int, str]]:
    # Integer and string segments never meet at one position of one value, but a sort key
    # that cannot raise costs nothing.
    return [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in error.absolute_path]


def _bounded(message: str) -> str:
    if len(message) <= MAX_MISMATCH_CHARS:
        return message
    return message[: MAX_MISMATCH_CHARS - 3] + "..."
