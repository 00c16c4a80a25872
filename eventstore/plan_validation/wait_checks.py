"""The fields of ``wait`` and ``sleep`` actions, and who may use a waitpoint's token. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from eventstore.dag import Reachability
from eventstore.json_schema import schema_problem
from eventstore.plan import WAIT_TYPES, Action
from eventstore.plan_validation.bounds import PLAN_TIMEOUT_S, bound_problems
from eventstore.templates import TEMPLATE

__all__ = ["parse_until", "token_problem", "wait_problems"]


def parse_until(text: str) -> datetime | None:
    """An ISO-8601 time with a zone (``Z`` or an offset), or ``None`` if ``text`` is not one."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def wait_problems(label: str, action: Action) -> Iterable[str]:
    """What is wrong with the wait-only fields of ``action`` (any type)."""
    if not action.waits:
        for field in ("schema", "duration_s", "until"):
            if getattr(action, field) is not None:
                yield f'{label}: {field}: only actions of type "wait" or "sleep" take {field}'
        return
    if action.request is not None:
        yield f'{label}: request: a "{action.type}" action is run by the orchestrator, not sent'
    if action.retry is not None:
        yield f'{label}: retry: a "{action.type}" action is never retried'
    if action.type == "wait":
        yield from bound_problems(label, "timeout_s", action.timeout_s, PLAN_TIMEOUT_S)
        for field in ("duration_s", "until"):
            if getattr(action, field) is not None:
                yield f'{label}: {field}: a "wait" action ends on resume or timeout_s, not {field}'
        if action.schema is not None and (problem := schema_problem(action.schema)):
            yield f"{label}: {problem}"
        return
    # sleep
    if action.schema is not None:
        yield f'{label}: schema: a "sleep" action takes no resume data'
    if action.timeout_s is not None:
        yield f'{label}: timeout_s: a "sleep" action sleeps duration_s or until a time'
    if (action.duration_s is None) == (action.until is None):
        yield f'{label}: a "sleep" action needs exactly one of duration_s or until'
    yield from bound_problems(label, "duration_s", action.duration_s, PLAN_TIMEOUT_S)
    until = action.until
    if until is not None and not TEMPLATE.search(until) and parse_until(until) is None:
        yield (
            f'{label}: until: "{until}" is not an ISO-8601 time with a zone '
            '(e.g. "2030-01-31T09:00:00Z") or a template'
        )


def token_problem(
    label: str, where: str, action: Action, target: Action | None, reach: Reachability
) -> str | None:
    """Why ``action`` may not use ``{{actions.<target>.token}}``, or ``None``."""
    reference = f"template {{{{actions.{target.id if target else '?'}.token}}}}"
    if target is None:
        return None  # an unknown action is reported by the upstream check
    if target.type not in WAIT_TYPES or target.type != "wait":
        return f'{label}: {where}: {reference}: only actions of type "wait" have a token'
    if target.id == action.id:
        return f"{label}: {where}: {reference} references the action itself"
    if reach.reaches(target.id, action.id):
        return (
            f'{label}: {where}: {reference}: "{action.id}" runs before the waitpoint '
            f'"{target.id}" waits, so its token does not exist yet'
        )
    return None
