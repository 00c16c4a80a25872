"""How large a plan may be: its limits, and the checks of nesting, numbers and event size. Pure.

The nesting and number checks walk a document with an explicit stack, never by recursion, so a
hostile document cannot exhaust the interpreter's stack while it is being checked. Everything
after them (normalisation, the shape, the roles' folds and encoders) recurses, and may then do so
safely.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from eventstore.codec import encode_event
from eventstore.events import PlanSubmitted
from eventstore.plan import Plan
from eventstore.plan_validation.fields import action_label, struct_fields
from eventstore.plan_validation.subplan_checks import DEFAULT_MAX_SUBPLAN_DEPTH
from eventstore.subjects import plan_subject

__all__ = [
    "DEFAULT_PLAN_LIMITS",
    "HEADER_ROOM",
    "LONGEST_EXECUTION_ID",
    "PlanLimits",
    "document_problems",
    "event_size_problem",
    "too_deep_problem",
]


class PlanLimits(msgspec.Struct, frozen=True, kw_only=True):
    """How large a plan may be; services fill it from their settings (``TepSettings.plan_limits``).

    Attributes:
        max_actions: the most actions a plan may have (setting ``TEP_MAX_ACTIONS``).
        max_plan_bytes: the largest encoded document (setting ``TEP_MAX_PLAN_BYTES``).
        max_json_depth: the deepest nesting of arrays and objects, the document itself being
            level 1 (setting ``TEP_MAX_JSON_DEPTH``).
        max_event_bytes: the largest message; the ``plan.submitted`` event carrying the plan must
            fit it (setting ``TEP_MAX_MSG_BYTES``).
        max_subplan_depth: the deepest inline sub-plans may nest (setting
            ``TEP_MAX_SUBPLAN_DEPTH``).
    """

    max_actions: int = 2500
    max_plan_bytes: int = 900 * 1024
    max_json_depth: int = 64
    max_event_bytes: int = 1024 * 1024
    max_subplan_depth: int = DEFAULT_MAX_SUBPLAN_DEPTH


DEFAULT_PLAN_LIMITS = PlanLimits()
"""The limits of the default settings (the settings take their defaults from here)."""

LONGEST_EXECUTION_ID = "x" * 128
"""The longest execution id a subject token may be: the size check assumes it."""

HEADER_ROOM = 1024
"""Bytes of a message kept for its headers and protocol framing by the size check."""

_SHOWN_SEGMENTS = 6
"""How many path segments a nesting problem shows before ``...``."""

_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[{]|[\]}]', re.DOTALL)
"""A string (skipped whole, escapes included) or one bracket of a JSON text."""


def _too_deep(max_depth: int) -> str:
    return f"nests arrays and objects over {max_depth} levels deep (setting TEP_MAX_JSON_DEPTH)"


def too_deep_problem(max_depth: int, raw: bytes = b"") -> str:
    """The problem of a document too deep to encode or decode.

    Given the JSON text ``raw``, the problem names the line and column of its first bracket
    deeper than ``max_depth``.
    """
    depth = 0
    for token in _TOKENS.finditer(raw):
        char = token.group()[:1]
        if char in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                position = token.start()
                line = raw.count(b"\n", 0, position) + 1
                line_start = raw.rfind(b"\n", 0, position) + 1
                column = len(raw[line_start:position].decode("utf-8", "replace")) + 1
                return f"plan: at line {line}, column {column}: {_too_deep(max_depth)}"
        elif char in (b"]", b"}"):
            depth -= 1
    return f"plan: {_too_deep(max_depth)}"


_Trail = tuple["_Trail | None", str | int]
"""The way back to the root: (the parent's trail, the key of this value in its parent)."""

_CONTAINERS = (Mapping, list, tuple, set, frozenset, msgspec.Struct)
"""What JSON encodes as an array or an object."""

_SCALARS = frozenset({str, int, bool, type(None)})
"""The types a walk passes over (checked by identity first: it is the common case)."""


def _items(value: Any) -> Iterator[tuple[str | int, Any]]:
    """The items of a container, as JSON sees them."""
    if type(value) is list:
        return enumerate(value)
    if type(value) is dict or isinstance(value, Mapping):
        return iter(value.items())
    if isinstance(value, msgspec.Struct):
        fields = struct_fields(type(value))
        return ((name, getattr(value, field.name)) for name, field in fields.items())
    return enumerate(value)


def _path(trail: _Trail | None) -> list[str | int]:
    segments: list[str | int] = []
    while trail is not None:
        trail, key = trail
        segments.append(key)
    return segments[::-1]


def document_problems(document: Any, max_depth: int) -> list[str]:
    """Nesting deeper than ``max_depth`` (the first place, alone) or every non-finite number.

    Args:
        document: the decoded document, or a plan built in code (dicts, lists and structs).
        max_depth: the deepest nesting allowed, the document itself being level 1.
    """
    if not isinstance(document, _CONTAINERS):
        return []
    problems: list[str] = []
    # Depth-first with one iterator per open container: document order, no recursion.
    stack: list[tuple[Iterator[tuple[str | int, Any]], _Trail | None]] = [(_items(document), None)]
    while stack:
        items, trail = stack[-1]
        for key, item in items:
            kind = type(item)
            if kind in _SCALARS:
                continue
            if isinstance(item, float):
                if not math.isfinite(item):
                    where = _place(document, _path((trail, key)))
                    problems.append(
                        f"{where}: {item} is not a finite number (JSON has no NaN or Infinity)"
                    )
            elif kind is dict or kind is list or isinstance(item, _CONTAINERS):
                if len(stack) >= max_depth:
                    return [f"{_place(document, _path((trail, key)))}: {_too_deep(max_depth)}"]
                stack.append((_items(item), (trail, key)))
                break
        else:
            stack.pop()
    return problems


def _place(document: Any, path: list[str | int]) -> str:
    """``plan: input.x``, ``actions[2] ("x"): input[0][0]...`` (long paths shortened)."""
    who, rest = "plan", path
    if len(path) >= 2 and path[0] == "actions" and isinstance(path[1], int):
        if isinstance(document, Mapping):
            actions = document.get("actions")
        else:
            actions = getattr(document, "actions", None)
        action = actions[path[1]] if isinstance(actions, list) else None
        who, rest = action_label(path[1], action), path[2:]
    text = ""
    for segment in rest[:_SHOWN_SEGMENTS]:
        text += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
    if len(rest) > _SHOWN_SEGMENTS:
        text += "..."
    text = text.removeprefix(".")
    return f"{who}: {text}" if text else who


def event_size_problem(plan: Plan, max_event_bytes: int) -> str | None:
    """Why the ``plan.submitted`` event of ``plan`` would not fit one message, or None.

    The event is measured as it is published: the payload with the longest execution id, its
    subject, and :data:`HEADER_ROOM` for headers and framing.
    """
    event = PlanSubmitted(execution_id=LONGEST_EXECUTION_ID, plan=plan)
    size = len(encode_event(event)) + len(plan_subject(LONGEST_EXECUTION_ID)) + HEADER_ROOM
    if size <= max_event_bytes:
        return None
    return (
        f"plan: its plan.submitted event is {size} bytes encoded (defaults filled in, "
        f"{HEADER_ROOM} bytes kept for headers), above the limit of {max_event_bytes} bytes "
        "for one message (setting TEP_MAX_MSG_BYTES)"
    )
