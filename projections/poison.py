"""Records the view cannot take, and why: undecodable, of an unknown type, or of no execution.

Pure. The projector dead-letters them; a rebuild skips them again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec

from eventstore.errors import EventDecodeError
from eventstore.events import EVENT_TYPES
from eventstore.records import RawRecord

__all__ = ["Poison", "PoisonHandler", "PoisonReason", "classify_undecodable"]

PoisonReason = Literal["undecodable", "unknown_type", "unknown_execution"]


class Poison(msgspec.Struct, frozen=True):
    """A record the view cannot take, and why."""

    record: RawRecord
    reason: PoisonReason
    detail: str


PoisonHandler = Callable[[Poison], Awaitable[None]]


class _TypeOnly(msgspec.Struct):
    type: str


_type_decoder = msgspec.json.Decoder(_TypeOnly)


def classify_undecodable(record: RawRecord, exc: EventDecodeError) -> Poison:
    """Why ``record`` did not decode: a type this version does not know, or a broken payload."""
    try:
        tag = _type_decoder.decode(record.data).type
    except (ValueError, RecursionError):  # msgspec's errors; skipping a deep field recurses too
        return Poison(record, "undecodable", str(exc))
    if tag not in EVENT_TYPES:
        return Poison(record, "unknown_type", f"unknown event type {tag!r}")
    return Poison(record, "undecodable", str(exc))
