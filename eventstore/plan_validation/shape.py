"""The shape of a plan document: every field's type, unknown and missing fields, enum values.

msgspec stops at the first mismatch; :class:`Shape` walks the document beside its type and reports
every one, naming the action and the field. Pure.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

import msgspec

from eventstore.plan_validation.fields import action_label, snake, struct_fields

__all__ = ["Shape", "translate_msgspec_error"]


def _without_none(tp: Any) -> Any:
    """``X | None`` (or ``X | UnsetType``) -> ``X``; anything else unchanged."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a not in (type(None), msgspec.UnsetType)]
        if len(args) == 1:
            return args[0]
    return tp


def _leaf_message(message: str, tp: Any) -> str:
    literal = _without_none(tp)
    if typing.get_origin(literal) is typing.Literal:
        return "expected one of " + ", ".join(str(v) for v in typing.get_args(literal))
    text, _, at = message.partition(" - at `$")
    text = text.replace("`", "")
    text = text[:1].lower() + text[1:]
    if at:
        text += f" (at {at.rstrip('`')})"
    return text


class Shape:
    """Walks a document beside its type and reports every mismatch, not just the first.

    Args:
        document: the whole (normalised) plan document, to name actions by their id.
        problems: where problems are appended.
    """

    def __init__(self, document: dict[str, Any], problems: list[str]) -> None:
        self.document = document
        self.problems = problems

    def where(self, path: tuple[str | int, ...]) -> tuple[str, str]:
        """(who, field path) for a location in the document."""
        if len(path) >= 2 and path[0] == "actions" and isinstance(path[1], int):
            actions = self.document["actions"]
            who, rest = action_label(path[1], actions[path[1]]), path[2:]
        else:
            who, rest = "plan", path
        text = ""
        for segment in rest:
            text += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
        return who, text.removeprefix(".")

    def report(self, path: tuple[str | int, ...], message: str) -> None:
        """Add the problem ``message`` at ``path``."""
        who, field = self.where(path)
        self.problems.append(f"{who}: {field}: {message}" if field else f"{who}: {message}")

    def check(self, value: Any, tp: Any, path: tuple[str | int, ...]) -> None:
        """Report every mismatch between ``value`` (found at ``path``) and the type ``tp``."""
        try:
            msgspec.convert(value, tp)
            return
        except msgspec.ValidationError as exc:
            error = str(exc)
        inner = _without_none(tp)
        origin = typing.get_origin(inner)
        if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
            if isinstance(value, dict):
                self.check_struct(value, inner, path)
                return
        elif origin is list and isinstance(value, list):
            (item_type,) = typing.get_args(inner)
            for index, item in enumerate(value):
                self.check(item, item_type, (*path, index))
            return
        elif origin is dict and isinstance(value, dict):
            _, item_type = typing.get_args(inner)
            for key, item in value.items():
                self.check(item, item_type, (*path, key))
            return
        self.report(path, _leaf_message(error, tp))

    def check_struct(
        self, value: dict[str, Any], struct: type[msgspec.Struct], path: tuple[str | int, ...]
    ) -> None:
        """Report unknown fields (with a close match), missing ones and each field's type."""
        fields = struct_fields(struct)
        for key in value:
            if key not in fields:
                close = difflib.get_close_matches(snake(str(key)), list(fields), n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.report(path, f'unknown field "{key}"{hint}')
        for name, field in fields.items():
            if name in value:
                self.check(value[name], field.type, (*path, name))
            elif field.required:
                self.report(path, f'missing required field "{name}"')


def translate_msgspec_error(message: str, document: dict[str, Any]) -> str:
    """Name the action of a msgspec error.

    ``... - at `$.actions[3].request.url``` becomes ``actions[3] ("x"): request.url: ...``.
    """
    text, _, at = message.partition(" - at `$")
    path: list[str | int] = []
    for name, index in re.findall(r"\.([^.\[`]+)|\[(\d+)\]", at.rstrip("`")):
        path.append(int(index) if index else name)
    shape = Shape(document, [])
    shape.report(tuple(path), _leaf_message(text, Any))
    return shape.problems[0]
