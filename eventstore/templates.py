"""``{{...}}`` templates in plan values: finding references and substituting them. Pure.

Supported references::

    {{input.user_id}}                       plan input (dots and [n] indexes)
    {{actions.fetch-user.output.email}}     an upstream action's output
    {{actions.fetch-user.status}}           an upstream action's status
    {{actions.approve.token}}               a waitpoint's token (once it waits; it need not be
                                            upstream, e.g. for the link asking for approval)
    {{secrets.API_TOKEN}}                   resolved by the executor at call time only
    {{env.REGION}}                          the executor's allow-listed environment (call time)
    {{item}} {{item.sku}} {{index}}         a for-each action's element and its index
    {{execution.id}} {{plan.id}}            the execution's and the plan's ids
    {{now}}                                 the moment the orchestrator decided (ISO-8601 UTC)

A string that is exactly one template takes the referenced value with its JSON type; templates
inside a longer string are rendered as text. A value stored by reference (a large output or
input, see :mod:`eventstore.payloads`) is looked into where a path goes further into it; taken
whole it stays a reference (the executor resolves it at call time), and text gets it in full.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from eventstore.errors import TepError
from eventstore.payload_reading import PayloadUnavailableError, expand, expand_all
from eventstore.state import ActionState

__all__ = [
    "ACTION_FIELDS",
    "CALL_TIME_KINDS",
    "MISSING",
    "REFERENCE_ROOTS",
    "TEMPLATE",
    "Reference",
    "ReferenceKind",
    "TemplateError",
    "action_view",
    "as_text",
    "find_references",
    "parse_path",
    "parse_reference",
    "render",
    "resolve_path",
]

TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
"""One ``{{...}}``; group 1 is the reference inside."""
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
ACTION_FIELDS = ("output", "status", "error", "attempts", "token")
"""What ``actions.<id>.`` leads to, in templates and conditions alike."""


class TemplateError(TepError, ValueError):
    """A template is malformed or refers to something that does not exist."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


ReferenceKind = Literal[
    "input", "actions", "secrets", "env", "item", "index", "execution", "plan", "now"
]
REFERENCE_ROOTS: tuple[str, ...] = (
    "input",
    "actions",
    "secrets",
    "env",
    "item",
    "index",
    "execution",
    "plan",
    "now",
)
"""Every namespace a template may start with; anything else is rejected."""
_IDS = {"execution": ("id", "run"), "plan": ("id",)}
CALL_TIME_KINDS = frozenset({"secrets", "env"})
"""Kinds the executor resolves when it calls the target; they stay templates in the log."""


class Reference(msgspec.Struct, frozen=True):
    """A parsed reference: ``actions.a.output.x`` has kind ``actions``, target ``a``."""

    kind: ReferenceKind
    target: str | None
    path: tuple[str | int, ...]
    text: str


def parse_path(text: str) -> tuple[str | int, ...]:
    """``a.b[0].c`` -> ``("a", "b", 0, "c")``.

    Raises:
        TemplateError: empty segments or stray brackets.
    """
    segments: list[str | int] = []
    for part in text.split("."):
        if not part:
            raise TemplateError(f"empty segment in path {text!r}")
        consumed = 0
        for match in _SEGMENT.finditer(part):
            if match.start() != consumed:
                raise TemplateError(f"malformed path {text!r}")
            name, index = match.groups()
            segments.append(int(index) if index is not None else name)
            consumed = match.end()
        if consumed != len(part):
            raise TemplateError(f"malformed path {text!r}")
    return tuple(segments)


@functools.lru_cache(maxsize=4096)
def parse_reference(text: str) -> Reference:
    """Parse the inside of one ``{{...}}``.

    Raises:
        TemplateError: unknown root, or a malformed path.
    """
    body = text.strip()
    if not body:
        raise TemplateError("empty template {{}}")
    path = parse_path(body)
    root = path[0]
    if root == "input":
        return Reference("input", None, path[1:], body)
    if root == "secrets":
        if len(path) != 2 or not isinstance(path[1], str):
            raise TemplateError(f"{{{{{body}}}}}: a secret is referenced as secrets.NAME")
        return Reference("secrets", path[1], (), body)
    if root == "actions":
        if len(path) < 3 or not isinstance(path[1], str) or path[2] not in ACTION_FIELDS:
            raise TemplateError(
                f"{{{{{body}}}}}: use actions.<id>.output.<path> (or .status, .error, .attempts, "
                ".token)"
            )
        return Reference("actions", path[1], path[2:], body)
    if root == "env":
        if len(path) != 2 or not isinstance(path[1], str):
            raise TemplateError(f"{{{{{body}}}}}: an environment value is referenced as env.NAME")
        return Reference("env", path[1], (), body)
    if root == "item":
        return Reference("item", None, path[1:], body)
    if root in ("index", "now"):
        if len(path) != 1:
            raise TemplateError(f"{{{{{body}}}}}: {root} has no fields")
        return Reference("index" if root == "index" else "now", None, (), body)
    if root in _IDS:
        fields = _IDS[str(root)]
        if len(path) != 2 or path[1] not in fields:
            allowed = " or ".join(f"{root}.{f}" for f in fields)
            raise TemplateError(f"{{{{{body}}}}}: use {allowed}")
        return Reference("execution" if root == "execution" else "plan", None, path[1:], body)
    roots = ", ".join(f"{r}" for r in REFERENCE_ROOTS)
    raise TemplateError(f"{{{{{body}}}}}: unknown namespace {root!r}; templates start with {roots}")


def find_references(value: Any) -> list[Reference]:
    """Every reference in a JSON value (strings, lists, dict keys and values), in order.

    Raises:
        TemplateError: a malformed template, or an unclosed ``{{``.
    """
    found: list[Reference] = []

    def visit(node: Any) -> None:
        if isinstance(node, str):
            for match in TEMPLATE.finditer(node):
                found.append(parse_reference(match.group(1)))
            stripped = TEMPLATE.sub("", node)
            if "{{" in stripped:
                raise TemplateError(f"unclosed template in {node!r}")
        elif isinstance(node, Mapping):
            for key, item in node.items():
                visit(key)
                visit(item)
        elif isinstance(node, list | tuple):
            for item in node:
                visit(item)

    visit(value)
    return found


def action_view(action: ActionState) -> dict[str, Any]:
    """One action as templates and conditions see it under ``actions.<id>``.

    ``output`` and ``error`` are present only when the action has one, so ``exists`` on them is
    meaningful.
    """
    view: dict[str, Any] = {"status": action.status, "attempts": action.attempts}
    if action.output is not None:
        view["output"] = action.output
    if action.error is not None:
        view["error"] = msgspec.to_builtins(action.error)
    if action.wait is not None and action.wait.token is not None:
        view["token"] = action.wait.token
    return view


def resolve_path(root: Any, path: tuple[str | int, ...]) -> Any:
    """Follow ``path`` into nested dicts and lists; :data:`MISSING` where it leads nowhere.

    A value stored by reference on the way is looked into (:mod:`eventstore.payload_reading`);
    the value reached is returned as it is, so a reference to a whole stored value passes on
    as a reference.

    Raises:
        PayloadNeeded: the path leads into a stored value that is not at hand.
        TemplateError: it leads into one that cannot be read.
    """
    node = root
    for segment in path:
        node = _looked_into(node)
        if (
            isinstance(segment, int)
            and isinstance(node, list)
            and -len(node) <= segment < len(node)
        ):
            node = node[segment]
        elif isinstance(segment, str) and isinstance(node, Mapping) and segment in node:
            node = node[segment]
        else:
            return MISSING
    return node


_SECRET_TEMPLATE = re.compile(r"\{\{\s*(?:secrets|env)\.")


def _looked_into(node: Any) -> Any:
    try:
        return expand(node)
    except PayloadUnavailableError as exc:
        raise TemplateError(str(exc)) from None


def as_text(value: Any) -> str:
    """A substituted value inside text: a string as it is, anything else as JSON, with values
    stored by reference written out in full.

    Raises:
        PayloadNeeded: a stored value is not at hand.
        TemplateError: one cannot be read, or it holds a ``{{secrets.*}}``/``{{env.*}}``
            template (a later stage would resolve it).
    """
    if isinstance(value, str):
        return value
    try:
        full = expand_all(value)
    except PayloadUnavailableError as exc:
        raise TemplateError(str(exc)) from None
    if full is not value and _holds_secret_template(full):
        raise TemplateError(
            "a value stored by reference holds a {{secrets.*}} or {{env.*}} template; refusing "
            "to substitute it"
        )
    return msgspec.json.encode(full).decode()


def _holds_secret_template(value: Any) -> bool:
    if isinstance(value, str):
        return _SECRET_TEMPLATE.search(value) is not None
    if isinstance(value, Mapping):
        return any(_holds_secret_template(k) or _holds_secret_template(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_secret_template(item) for item in value)
    return False


def _lookup(ref: Reference, context: Mapping[str, Any]) -> Any:
    kind = ref.kind
    if kind == "actions":
        actions = context.get("actions", {})
        if ref.target not in actions:
            return MISSING
        found = resolve_path(actions[ref.target], ref.path)
    elif kind in CALL_TIME_KINDS:
        return context.get(kind, {}).get(ref.target, MISSING)
    elif kind in ("index", "now"):
        return context.get(kind, MISSING)
    elif kind in context:
        found = resolve_path(context[kind], ref.path)
    else:
        return MISSING
    # Data substituted now must not smuggle in a secret reference that a later stage (the
    # executor) would resolve: an upstream response could otherwise exfiltrate a secret.
    if found is not MISSING and _holds_secret_template(found):
        raise TemplateError(
            f"{{{{{ref.text}}}}} holds a {{{{secrets.*}}}} or {{{{env.*}}}} template; refusing "
            "to substitute it"
        )
    return found


def render(value: Any, context: Mapping[str, Any], *, kinds: frozenset[str]) -> Any:
    """Substitute references of the given ``kinds`` in a JSON value; leave others untouched.

    ``context`` holds ``input`` (dict), ``actions`` (id -> {output, status, ...}),
    ``secrets`` and ``env`` (name -> value), and where they apply ``item``, ``index``,
    ``execution`` ({id, run}), ``plan`` ({id}) and ``now``.

    Raises:
        TemplateError: a reference of a rendered kind resolves to nothing.
    """

    def substitute(node: Any) -> Any:
        if isinstance(node, str):
            if "{{" not in node:
                return node
            whole = TEMPLATE.fullmatch(node)
            if whole and "}}" not in whole.group(1):  # one template, not "{{a}}-{{b}}"
                ref = parse_reference(whole.group(1))
                if ref.kind not in kinds:
                    return node
                resolved = _lookup(ref, context)
                if resolved is MISSING:
                    raise TemplateError(f"{{{{{ref.text}}}}} resolves to nothing")
                return resolved

            def replace(match: re.Match[str]) -> str:
                ref = parse_reference(match.group(1))
                if ref.kind not in kinds:
                    return match.group(0)
                resolved = _lookup(ref, context)
                if resolved is MISSING:
                    raise TemplateError(f"{{{{{ref.text}}}}} resolves to nothing")
                return as_text(resolved)

            return TEMPLATE.sub(replace, node)
        if isinstance(node, Mapping):
            return {substitute(k): substitute(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [substitute(item) for item in node]
        return node

    return substitute(value)
