"""The plan registry: validated plans kept by name, for sub-plan actions to run. Pure.

A plan is stored in the KV bucket :data:`PLAN_BUCKET` under ``plan.<name>`` (``tep plan put
NAME PLAN.json``, ``StateManager.put_plan``); every put stores a new revision of the name. A
sub-plan action with ``"plan_ref": "<name>"`` runs the plan the name holds when the action
starts: the child's ``plan.submitted`` carries that plan, so a later put changes no execution
that already began.
"""

from __future__ import annotations

import re

import msgspec

from eventstore.errors import TepError
from eventstore.plan import Plan

__all__ = [
    "PLAN_BUCKET",
    "PLAN_NAME_PATTERN",
    "PlanRegistryError",
    "RegisteredPlan",
    "RegistryEntry",
    "decode_entry",
    "encode_entry",
    "plan_key",
    "plan_name_of",
    "plan_name_problem",
]

PLAN_BUCKET = "tep_plans"
"""The KV bucket of the plan registry (keys ``plan.<name>``)."""

PLAN_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Registry names: one KV key token."""

_KEY_PREFIX = "plan."


class PlanRegistryError(TepError, ValueError):
    """A registry name or value that cannot be used (the message says why, in one line)."""


class RegistryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """What a registry key holds: the validated plan and when it was stored."""

    plan: Plan
    stored_at: str


class RegisteredPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A plan as read from the registry: its name, the plan, its revision and when it was put.

    ``revision`` is the bucket's sequence of this put: it grows with every put of any name.
    """

    name: str
    plan: Plan
    revision: int
    stored_at: str


def plan_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a registered plan, or ``None`` if it can."""
    if not PLAN_NAME_PATTERN.fullmatch(name):
        return f'plan name "{name}" must match [A-Za-z0-9_-]{{1,64}}'
    return None


def plan_key(name: str) -> str:
    """The KV key of a registered plan.

    Raises:
        PlanRegistryError: ``name`` is not a valid registry name.
    """
    problem = plan_name_problem(name)
    if problem is not None:
        raise PlanRegistryError(problem)
    return _KEY_PREFIX + name


def plan_name_of(key: str) -> str | None:
    """The registry name a KV key holds, or ``None`` for a key that is no plan's."""
    name = key.removeprefix(_KEY_PREFIX)
    if name == key or plan_name_problem(name) is not None:
        return None
    return name


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RegistryEntry)


def encode_entry(entry: RegistryEntry) -> bytes:
    """A registry value."""
    return _encoder.encode(entry)


def decode_entry(name: str, data: bytes, revision: int) -> RegisteredPlan:
    """A registry value read at ``revision`` back into a :class:`RegisteredPlan`.

    Raises:
        PlanRegistryError: the value is not a registry entry.
    """
    try:
        entry = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise PlanRegistryError(f'registered plan "{name}" is unreadable: {exc}') from None
    return RegisteredPlan(name=name, plan=entry.plan, revision=revision, stored_at=entry.stored_at)
