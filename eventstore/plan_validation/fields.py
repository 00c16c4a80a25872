"""The field names of the plan structs, and how a problem names its place in a document. Pure."""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec

__all__ = ["action_label", "snake", "struct_fields"]


def snake(name: str) -> str:
    """``maxAttempts`` -> ``max_attempts``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@functools.cache
def struct_fields(struct: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    """Encoded name -> field of a struct."""
    # Cached: msgspec.structs.fields re-evaluates the annotations on every call.
    return {field.encode_name: field for field in msgspec.structs.fields(struct)}


def action_label(index: int, action: Any) -> str:
    """``actions[2] ("x")``, or ``actions[2]`` when the action has no usable id.

    ``action`` is the action as decoded (a dict) or as built in code (an ``Action``).
    """
    action_id = action.get("id") if isinstance(action, dict) else getattr(action, "id", None)
    if isinstance(action_id, str):
        return f'actions[{index}] ("{action_id}")'
    return f"actions[{index}]"
