"""Plan documents in, validated :class:`~eventstore.plan.Plan` out, or every problem at once. Pure.

:func:`parse_plan` runs, in order:

1. the size limit on the raw document (``TEP_MAX_PLAN_BYTES``);
2. JSON parsing (malformed JSON is reported with line and column);
3. key normalisation: camelCase aliases of the TypeScript TEP (``dependsOn``, ``maxAttempts``,
   ``minTimeoutInMs``, ``maxTimeoutInMs``, ``factor``, ``randomize``, ``timeoutMs``, ...) and the
   camelCase spelling of any field are renamed, at their place in the document only (values under
   ``input``, ``request.json``, ``headers`` and ``query`` are user data and stay as they are);
4. the shape: every field's type, unknown and missing fields, enum values;
5. the meaning: ids, duplicates, dependencies, cycles (with their path), limits, URLs,
   templates, conditions, retry policies, timeouts and queue names.

Each problem is one line naming the action and the field, e.g.::

    action "send": depends_on references unknown action "nope"
    actions[2] ("x"): request.method: expected one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS
    cycle: a -> b -> a

Problems come in a deterministic order: document problems, then plan-level ones, then each
action in plan order, then cycles.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import msgspec

from eventstore.config import Settings
from eventstore.dag import Reachability, find_cycles
from eventstore.errors import PlanValidationError
from eventstore.plan import Action, Condition, Plan, QueueConfig, RequestSpec, RetryPolicy
from eventstore.templates import TEMPLATE, TemplateError, find_references, parse_path

__all__ = [
    "ACTION_ID_PATTERN",
    "CONDITION_OPERATORS",
    "DEFAULT_MAX_ACTIONS",
    "DEFAULT_MAX_PLAN_BYTES",
    "NAME_PATTERN",
    "PlanValidationError",
    "parse_plan",
    "plan_problems",
]

_DEFAULTS = Settings()
DEFAULT_MAX_ACTIONS = _DEFAULTS.max_actions
DEFAULT_MAX_PLAN_BYTES = _DEFAULTS.max_plan_bytes

ACTION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Action ids: they become the last token of event subjects."""
NAME_PATTERN = ACTION_ID_PATTERN
"""Action types and queue names: they become a token of ``action.execute.requested.<queue>``."""

CONDITION_OPERATORS = ("equals", "not_equals", "in", "exists", "truthy")
_ACTION_FIELDS = ("output", "status", "error", "attempts")
_BOM = b"\xef\xbb\xbf"

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


def parse_plan(
    data: bytes | str | Mapping[str, Any] | Plan,
    *,
    max_actions: int = DEFAULT_MAX_ACTIONS,
    max_plan_bytes: int = DEFAULT_MAX_PLAN_BYTES,
) -> Plan:
    """Parse and validate a plan document.

    Args:
        data: the JSON document (bytes or text), an already decoded JSON object, or a
            :class:`Plan` built in code (checked the same way, including its encoded size).
        max_actions: the most actions a plan may have (setting ``TEP_MAX_ACTIONS``).
        max_plan_bytes: the largest encoded document (setting ``TEP_MAX_PLAN_BYTES``).

    Returns:
        The plan, with aliases resolved and defaults filled in.

    Raises:
        PlanValidationError: ``problems`` lists every problem found, one line each.

    Example:
        >>> plan = parse_plan('{"id": "p", "actions": [{"id": "a", "type": "noop"}]}')
        >>> plan.actions[0].queue_name
        'noop'
    """
    raw = _raw_document(data)
    if len(raw) > max_plan_bytes:
        raise PlanValidationError(
            [
                f"plan: the document is {len(raw)} bytes, above the limit of {max_plan_bytes} "
                "bytes (setting TEP_MAX_PLAN_BYTES)"
            ]
        )
    document = _decode_json(raw)
    if not isinstance(document, dict):
        raise PlanValidationError([f"plan: expected a JSON object, got {_json_type(document)}"])
    problems: list[str] = []
    document = _normalise_plan(document, problems)
    _Shape(document, problems).check(document, Plan, ())
    plan: Plan | None = None
    if not problems:
        try:
            plan = msgspec.convert(document, Plan)
        except msgspec.ValidationError as exc:  # pragma: no cover - the shape check finds these
            problems.append(_translate_msgspec_error(str(exc), document))
    nodes, plan_fields = _salvage(document, plan)
    problems.extend(_semantic_problems(nodes, plan_fields, max_actions=max_actions))
    problems = list(dict.fromkeys(problems))
    if problems or plan is None:
        raise PlanValidationError(problems or ["plan: invalid"])
    return plan


def plan_problems(plan: Plan, *, max_actions: int = DEFAULT_MAX_ACTIONS) -> list[str]:
    """The semantic problems of a plan built in code (no size check); empty when it is valid."""
    nodes, plan_fields = _salvage(msgspec.to_builtins(plan), plan)
    return list(dict.fromkeys(_semantic_problems(nodes, plan_fields, max_actions=max_actions)))


# --- raw document -------------------------------------------------------------------------


def _raw_document(data: bytes | str | Mapping[str, Any] | Plan) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    try:
        return msgspec.json.encode(data)
    except (TypeError, msgspec.EncodeError) as exc:
        raise PlanValidationError([f"plan: not representable as JSON: {exc}"]) from exc


def _json_type(value: Any) -> str:
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


def _decode_json(raw: bytes) -> Any:
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    if not raw.strip():
        raise PlanValidationError(["plan: the document is empty (expected a JSON object)"])
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise PlanValidationError([_json_error(raw, str(exc))]) from exc


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


# --- key normalisation --------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@functools.cache
def _fields(struct: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    """Encoded name -> field (msgspec.structs.fields re-evaluates annotations on every call)."""
    return {field.encode_name: field for field in msgspec.structs.fields(struct)}


def _field_names(struct: type[msgspec.Struct]) -> set[str]:
    return set(_fields(struct))


def _rename(
    obj: dict[str, Any], struct: type[msgspec.Struct], where: str, problems: list[str]
) -> dict[str, Any]:
    """Rename camelCase aliases of ``struct``'s fields in one object (not below it)."""
    names = _field_names(struct)
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
            elif key[:1].islower() and _snake(key) in names:
                target = _snake(key)
        if target in renamed:
            problems.append(f'{where}: "{origin[target]}" and "{key}" both set {target}')
            continue
        renamed[target] = value
        origin[target] = key
    return renamed


def _action_label(index: int, action: Any) -> str:
    if isinstance(action, dict) and isinstance(action.get("id"), str):
        return f'actions[{index}] ("{action["id"]}")'
    return f"actions[{index}]"


def _normalise_plan(document: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    document = _rename(document, Plan, "plan", problems)
    actions = document.get("actions")
    if isinstance(actions, list):
        normalised: list[Any] = []
        for index, action in enumerate(actions):
            if isinstance(action, dict):
                where = _action_label(index, action)
                action = _rename(action, Action, where, problems)
                for key, struct in (
                    ("request", RequestSpec),
                    ("retry", RetryPolicy),
                    ("when", Condition),
                ):
                    if isinstance(action.get(key), dict):
                        action[key] = _rename(action[key], struct, f"{where}: {key}", problems)
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


# --- shape ----------------------------------------------------------------------------------


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


class _Shape:
    """Walks a document beside its type and reports every mismatch, not just the first."""

    def __init__(self, document: dict[str, Any], problems: list[str]) -> None:
        self.document = document
        self.problems = problems

    def where(self, path: tuple[str | int, ...]) -> tuple[str, str]:
        """(who, field path) for a location in the document."""
        if len(path) >= 2 and path[0] == "actions" and isinstance(path[1], int):
            actions = self.document["actions"]
            who, rest = _action_label(path[1], actions[path[1]]), path[2:]
        else:
            who, rest = "plan", path
        text = ""
        for segment in rest:
            text += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
        return who, text.removeprefix(".")

    def report(self, path: tuple[str | int, ...], message: str) -> None:
        who, field = self.where(path)
        self.problems.append(f"{who}: {field}: {message}" if field else f"{who}: {message}")

    def check(self, value: Any, tp: Any, path: tuple[str | int, ...]) -> None:
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
        fields = _fields(struct)
        for key in value:
            if key not in fields:
                close = difflib.get_close_matches(_snake(str(key)), list(fields), n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.report(path, f'unknown field "{key}"{hint}')
        for name, field in fields.items():
            if name in value:
                self.check(value[name], field.type, (*path, name))
            elif field.required:
                self.report(path, f'missing required field "{name}"')


def _translate_msgspec_error(message: str, document: dict[str, Any]) -> str:
    """Name the action of a msgspec error: ``... - at `$.actions[3].request.url``` becomes
    ``actions[3] ("x"): request.url: ...``."""
    text, _, at = message.partition(" - at `$")
    path: list[str | int] = []
    for name, index in re.findall(r"\.([^.\[`]+)|\[(\d+)\]", at.rstrip("`")):
        path.append(int(index) if index else name)
    shape = _Shape(document, [])
    shape.report(tuple(path), _leaf_message(text, Any))
    return shape.problems[0]


# --- meaning --------------------------------------------------------------------------------


class _Node(NamedTuple):
    """What the graph checks need of one action; ``action`` is None when its shape is broken."""

    position: int
    id: str
    depends_on: list[str]
    action: Action | None


class _PlanFields(NamedTuple):
    id: str | None
    action_count: int | None
    timeout_s: float | None
    queues: dict[str, QueueConfig] | None


def _salvage(document: Any, plan: Plan | None) -> tuple[list[_Node], _PlanFields]:
    """The parts of a document sound enough to check for meaning."""
    if plan is not None:
        nodes = [_Node(i, a.id, list(a.depends_on), a) for i, a in enumerate(plan.actions)]
        return nodes, _PlanFields(plan.id, len(plan.actions), plan.timeout_s, plan.queues)
    nodes = []
    actions_field = document.get("actions")
    raw_actions = actions_field if isinstance(actions_field, list) else []
    for index, raw in enumerate(raw_actions):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            continue
        deps = raw.get("depends_on", [])
        deps = [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []
        try:
            action: Action | None = msgspec.convert(raw, Action)
        except msgspec.ValidationError:
            action = None
        nodes.append(_Node(index, raw["id"], deps, action))
    plan_id = document.get("id")
    timeout = document.get("timeout_s")
    try:
        queues: dict[str, QueueConfig] | None = msgspec.convert(
            document.get("queues", {}), dict[str, QueueConfig]
        )
    except msgspec.ValidationError:
        queues = None
    return nodes, _PlanFields(
        plan_id if isinstance(plan_id, str) else None,
        len(raw_actions) if isinstance(actions_field, list) else None,
        timeout if isinstance(timeout, int | float) and not isinstance(timeout, bool) else None,
        queues,
    )


def _semantic_problems(
    nodes: list[_Node], plan_fields: _PlanFields, *, max_actions: int
) -> list[str]:
    problems: list[str] = []
    if plan_fields.id is not None and not plan_fields.id.strip():
        problems.append("plan: id must not be empty")
    if plan_fields.action_count == 0:
        problems.append("plan: actions: a plan needs at least one action")
    if plan_fields.action_count is not None and plan_fields.action_count > max_actions:
        problems.append(
            f"plan: actions: {plan_fields.action_count} actions, above the limit of "
            f"{max_actions} (setting TEP_MAX_ACTIONS)"
        )
    problems.extend(_timeout_problems("plan", "timeout_s", plan_fields.timeout_s))
    for name, config in (plan_fields.queues or {}).items():
        if not NAME_PATTERN.fullmatch(name):
            problems.append(f'plan: queues: queue name "{name}" must match [A-Za-z0-9_-]{{1,64}}')
        limit = config.concurrency_limit
        if limit is not None and limit < 1:
            problems.append(f"plan: queues.{name}.concurrency_limit must be at least 1")

    first_index: dict[str, int] = {}
    edges: dict[str, list[str]] = {}
    for node in nodes:
        if node.id in first_index:
            edges[node.id].extend(node.depends_on)
        else:
            first_index[node.id] = node.position
            edges[node.id] = list(node.depends_on)
    reach = Reachability(edges)

    for node in nodes:
        label = f'action "{node.id}"'
        if not ACTION_ID_PATTERN.fullmatch(node.id):
            problems.append(
                f'actions[{node.position}]: id "{node.id}" must match [A-Za-z0-9_-]{{1,64}}'
            )
        if first_index[node.id] != node.position:
            problems.append(
                f'actions[{node.position}]: duplicate action id "{node.id}" '
                f"(first used by actions[{first_index[node.id]}])"
            )
        for dependency in node.depends_on:
            if dependency == node.id:
                problems.append(f"{label}: depends_on lists the action itself")
            elif dependency not in edges:
                problems.append(f'{label}: depends_on references unknown action "{dependency}"')
        if node.action is not None:
            problems.extend(_action_problems(label, node.action, edges, reach))

    graph = {node: [d for d in deps if d != node] for node, deps in edges.items()}
    for cycle in find_cycles(graph):
        problems.append("cycle: " + " -> ".join(cycle))
    return problems


def _action_problems(
    label: str, action: Action, edges: Mapping[str, Sequence[str]], reach: Reachability
) -> Iterable[str]:
    for field, name in (("type", action.type), ("queue", action.queue)):
        if name is not None and not NAME_PATTERN.fullmatch(name):
            yield f'{label}: {field}: "{name}" must match [A-Za-z0-9_-]{{1,64}}'
    yield from _timeout_problems(label, "timeout_s", action.timeout_s)
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

    values: list[tuple[str, Any]] = [("input", action.input)]
    if action.request is None:
        if action.type == "http":
            yield f'{label}: request: an action of type "http" needs a request'
    else:
        request = action.request
        yield from _timeout_problems(label, "request.timeout_s", request.timeout_s)
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
            if ref.kind == "actions" and ref.target is not None:
                problem = upstream_problem(where, f"template {{{{{ref.text}}}}}", ref.target)
                if problem:
                    yield problem
        if where == "request.url":
            yield from _url_problems(label, value)
    if action.when is not None:
        yield from _condition_problems(label, action.when, upstream_problem)


def _timeout_problems(label: str, field: str, value: float | None) -> Iterable[str]:
    if value is not None and not (math.isfinite(value) and value > 0):
        yield f"{label}: {field} must be a positive number of seconds (got {value})"


def _retry_problems(label: str, retry: RetryPolicy) -> Iterable[str]:
    if retry.max_attempts < 1:
        yield f"{label}: retry.max_attempts must be at least 1 (got {retry.max_attempts})"
    if not (math.isfinite(retry.backoff_factor) and retry.backoff_factor >= 1):
        yield (
            f"{label}: retry.backoff_factor must be at least 1 (1 = constant delay; "
            f"got {retry.backoff_factor})"
        )
    for field in ("min_backoff_ms", "max_backoff_ms"):
        if getattr(retry, field) < 0:
            yield f"{label}: retry.{field} must not be negative (got {getattr(retry, field)})"
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


def _condition_problems(
    label: str, when: Condition, upstream_problem: Callable[[str, str, str], str | None]
) -> Iterable[str]:
    values = msgspec.to_builtins(when)
    operators = [name for name in CONDITION_OPERATORS if name in values]
    if len(operators) != 1:
        found = ", ".join(operators) if operators else "none"
        yield (
            f"{label}: when: needs exactly one operator of "
            f"{', '.join(CONDITION_OPERATORS)} (found {found})"
        )
    try:
        path = parse_path(when.path)
    except TemplateError as exc:
        yield f"{label}: when.path: {exc}"
        return
    hint = 'must start with "input." or "actions.<upstream id>."'
    root = path[0]
    if root == "input":
        if len(path) < 2:
            yield f'{label}: when.path: "{when.path}" must name a value under input.'
    elif root == "actions":
        if len(path) < 3 or not isinstance(path[1], str) or path[2] not in _ACTION_FIELDS:
            yield (
                f'{label}: when.path: "{when.path}" must look like actions.<id>.output.<path> '
                "(or .status, .error, .attempts)"
            )
        else:
            problem = upstream_problem("when.path", f'"{when.path}"', path[1])
            if problem:
                yield problem
    else:
        yield f'{label}: when.path: "{when.path}" {hint}'
