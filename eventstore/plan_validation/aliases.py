"""Key normalisation: camelCase aliases renamed to the plan's field names, in place only. Pure.

Accepted are the camelCase spelling of any field and the names of the TypeScript TEP
(``minTimeoutInMs``, ``maxTimeoutInMs``, ``factor``, ``randomize``, ``timeoutMs``, ...). Only the
keys of the plan, its actions, their ``request``, ``retry`` and ``when`` and the queue configs are
renamed (in inline sub-plans alike); values under ``input``, ``request.json``, ``headers`` and
``query`` are user data and stay as they are.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore.plan import Action, Condition, Plan, QueueConfig, RequestSpec, RetryPolicy
from eventstore.plan_validation.fields import action_label, snake, struct_fields
from eventstore.plan_validation.route_checks import without_replaced_fields

__all__ = ["normalise_plan"]

# Aliases that are not just the camelCase spelling of a field (those are accepted generically).
_EXTRA_ALIASES: dict[type[msgspec.Struct], dict[str, str]] = {
    RetryPolicy: {
        "minTimeoutInMs": "min_backoff_ms",
        "maxTimeoutInMs": "max_backoff_ms",
        "factor": "backoff_factor",
        "randomize": "jitter",
    },
}
_MILLISECOND_ALIASES = ("timeoutMs", "timeoutInMs")


def normalise_plan(document: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The document with aliases renamed; a key set twice (alias and name) is a problem."""
    document = _rename(document, Plan, "plan", problems)
    actions = document.get("actions")
    if isinstance(actions, list):
        normalised: list[Any] = []
        for index, action in enumerate(actions):
            if isinstance(action, dict):
                where = action_label(index, action)
                action = without_replaced_fields(action, where, problems)
                action = _rename(action, Action, where, problems)
                for key, struct in (
                    ("request", RequestSpec),
                    ("retry", RetryPolicy),
                    ("when", Condition),
                ):
                    if isinstance(action.get(key), dict):
                        action[key] = _rename(action[key], struct, f"{where}: {key}", problems)
                if isinstance(action.get("plan"), dict):  # an inline sub-plan
                    action["plan"] = normalise_plan(action["plan"], problems)
            normalised.append(action)
        document["actions"] = normalised
    queues = document.get("queues")
    if isinstance(queues, dict):
        document["queues"] = {
            name: _rename(config, QueueConfig, f"plan: queues.{name}", problems)
            if isinstance(config, dict)
            else config
            for name, config in queues.items()
        }
    return document


def _rename(
    obj: dict[str, Any], struct: type[msgspec.Struct], where: str, problems: list[str]
) -> dict[str, Any]:
    """Rename camelCase aliases of ``struct``'s fields in one object (not below it)."""
    names = set(struct_fields(struct))
    extra = _EXTRA_ALIASES.get(struct, {})
    renamed: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in obj.items():
        target = key
        if key not in names:
            if key in extra:
                target = extra[key]
            elif key in _MILLISECOND_ALIASES and "timeout_s" in names:
                target = "timeout_s"
                if isinstance(value, bool) or not isinstance(value, int | float):
                    problems.append(f"{where}: {key}: expected a number of milliseconds")
                    continue
                value = value / 1000
            elif key[:1].islower() and snake(key) in names:
                target = snake(key)
        if target in renamed:
            problems.append(f'{where}: "{origin[target]}" and "{key}" both set {target}')
            continue
        renamed[target] = value
        origin[target] = key
    return renamed
