"""The meaning of one action: names, timeouts, retries, templates, URLs and its condition. Pure.

Numeric fields are kept inside the ranges of :mod:`.bounds`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec

from eventstore.conditions import condition_problems
from eventstore.dag import Reachability
from eventstore.plan import Action, RetryPolicy
from eventstore.plan_validation.bounds import (
    ACTION_TIMEOUT_S,
    BACKOFF_FACTOR,
    BACKOFF_MS,
    MAX_ATTEMPTS,
    bound_problems,
)
from eventstore.plan_validation.foreach_checks import for_each_problems, item_reference_problem
from eventstore.plan_validation.typed_checks import output_schema_problems
from eventstore.plan_validation.wait_checks import token_problem, wait_problems
from eventstore.templates import TEMPLATE, TemplateError, find_references

__all__ = ["ACTION_ID_PATTERN", "NAME_PATTERN", "action_problems"]

ACTION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Action ids: they become the last token of event subjects."""
NAME_PATTERN = ACTION_ID_PATTERN
"""Action types and queue names: they become a token of ``action.execute.requested.<queue>``."""


def action_problems(
    label: str,
    action: Action,
    edges: Mapping[str, Sequence[str]],
    reach: Reachability,
    specs: Mapping[str, Action] | None = None,
) -> Iterable[str]:
    """The problems of one well-shaped action, each prefixed with ``label``.

    Args:
        label: how problems name the action, e.g. ``action "send"``.
        action: the action.
        edges: every action id of the plan -> its ``depends_on``.
        reach: reachability over ``edges``, to tell whether a referenced action is upstream.
        specs: every action of the plan by id (for what a reference may use of it).
    """
    specs = specs or {}
    yield from wait_problems(label, action)
    yield from output_schema_problems(label, action)
    for field, name in (("type", action.type), ("queue", action.queue)):
        if name is not None and not NAME_PATTERN.fullmatch(name):
            yield f'{label}: {field}: "{name}" must match [A-Za-z0-9_-]{{1,64}}'
    if not action.waits:
        yield from bound_problems(label, "timeout_s", action.timeout_s, ACTION_TIMEOUT_S)
    if action.retry is not None:
        yield from _retry_problems(label, action.retry)

    def upstream_problem(where: str, reference: str, target: str) -> str | None:
        if target not in edges:
            return f'{label}: {where}: {reference} references unknown action "{target}"'
        if target == action.id:
            return f"{label}: {where}: {reference} references the action itself"
        if not reach.reaches(action.id, target):
            return (
                f'{label}: {where}: {reference} references action "{target}", which is not '
                f'upstream of "{action.id}" (add it to depends_on)'
            )
        return None

    yield from for_each_problems(label, action, upstream_problem)
    values: list[tuple[str, Any]] = [("input", action.input)]
    if action.until is not None:
        values.append(("until", action.until))
    if action.request is None:
        if action.type == "http":
            yield f'{label}: request: an action of type "http" needs a request'
    else:
        request = action.request
        yield from bound_problems(label, "request.timeout_s", request.timeout_s, ACTION_TIMEOUT_S)
        values[:0] = [
            (f"request.{key}", value) for key, value in msgspec.to_builtins(request).items()
        ]
    for where, value in values:
        try:
            references = find_references(value)
        except TemplateError as exc:
            yield f"{label}: {where}: {exc}"
            continue
        for ref in references:
            if ref.kind == "actions" and ref.target is not None and ref.path[:1] == ("token",):
                if ref.target not in edges:
                    yield (
                        f"{label}: {where}: template {{{{{ref.text}}}}} references unknown "
                        f'action "{ref.target}"'
                    )
                elif problem := token_problem(label, where, action, specs.get(ref.target), reach):
                    yield problem
            elif ref.kind == "actions" and ref.target is not None:
                problem = upstream_problem(where, f"template {{{{{ref.text}}}}}", ref.target)
                if problem:
                    yield problem
            elif problem := item_reference_problem(label, where, action, ref):
                yield problem
        if where == "request.url":
            yield from _url_problems(label, value)
    if action.when is not None:
        yield from condition_problems(label, action.when, upstream_problem)


def _retry_problems(label: str, retry: RetryPolicy) -> Iterable[str]:
    yield from bound_problems(label, "retry.max_attempts", retry.max_attempts, MAX_ATTEMPTS)
    yield from bound_problems(label, "retry.backoff_factor", retry.backoff_factor, BACKOFF_FACTOR)
    yield from bound_problems(label, "retry.min_backoff_ms", retry.min_backoff_ms, BACKOFF_MS)
    yield from bound_problems(label, "retry.max_backoff_ms", retry.max_backoff_ms, BACKOFF_MS)
    if retry.min_backoff_ms > retry.max_backoff_ms:
        yield (
            f"{label}: retry.min_backoff_ms ({retry.min_backoff_ms}) is above "
            f"retry.max_backoff_ms ({retry.max_backoff_ms})"
        )


def _url_problems(label: str, url: str) -> Iterable[str]:
    if url.lstrip().startswith("{{"):
        return  # scheme and host come from a template, checked when the request is built
    concrete = TEMPLATE.sub("x", url)
    expected = "must be an absolute http:// or https:// URL"
    try:
        parts = urlsplit(concrete)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        yield f'{label}: request.url: "{url}" is not a valid URL ({exc})'
        return
    if parts.scheme.lower() not in ("http", "https"):
        yield f'{label}: request.url: "{url}" {expected}'
    elif not parts.hostname:
        yield f'{label}: request.url: "{url}" has no host'
    elif any(char.isspace() for char in concrete):
        yield f'{label}: request.url: "{url}" contains whitespace (encode it as %20)'
