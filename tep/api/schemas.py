"""One definition of each shape: the msgspec structs of the contract in the OpenAPI document.

The executions' states, plans, events, summaries and schedules are msgspec structs
(:mod:`eventstore.state`, :mod:`eventstore.plan`, ...), and so are the API's answers around
them (:mod:`tep.api.envelopes`). Their JSON Schemas come from
``msgspec.json.schema_components`` into ``components/schemas``; a pydantic request body
holding a plan points at its component with :data:`PlanJson` (a marker pydantic carries
through and :func:`merge_components` turns into a ``$ref``); responses are encoded by msgspec
(:class:`MsgspecResponse`), exactly the JSON the schema describes.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import msgspec
from fastapi import Path
from pydantic import WithJsonSchema
from starlette.responses import Response

from eventstore.events import Event
from eventstore.plan import Plan
from eventstore.state import ActionState, ExecutionState
from projections.cancellation import Cancellation
from projections.schedule_info import ScheduleInfo
from projections.view import ExecutionSummary, ViewStats
from tep.api.envelopes import (
    EventPage,
    ExecutionPage,
    Health,
    RetryResult,
    ScheduleList,
    StatsDocument,
    StreamEnd,
    Submitted,
    TriggerResult,
)

__all__ = [
    "COMPONENT_PREFIX",
    "STRUCTS",
    "MsgspecResponse",
    "PlanJson",
    "documented_path",
    "json_content",
    "link",
    "merge_components",
    "ref_schema",
    "responds",
    "sse_event_schema",
]

COMPONENT_PREFIX = "#/components/schemas/"
_MARKER = "x-tep-component"

STRUCTS: dict[str, Any] = {
    "ExecutionState": ExecutionState,
    "ActionState": ActionState,
    "ExecutionSummary": ExecutionSummary,
    "ViewStats": ViewStats,
    "Plan": Plan,
    "Event": Event,
    "ScheduleInfo": ScheduleInfo,
    "Cancellation": Cancellation,
    "Submitted": Submitted,
    "ExecutionPage": ExecutionPage,
    "EventPage": EventPage,
    "RetryResult": RetryResult,
    "StatsDocument": StatsDocument,
    "ScheduleList": ScheduleList,
    "TriggerResult": TriggerResult,
    "StreamEnd": StreamEnd,
    "Health": Health,
}
"""The msgspec types the API speaks, by component name (``Event`` is the tagged union)."""

_encoder = msgspec.json.Encoder()


def ref_schema(name: str) -> dict[str, str]:
    """A ``$ref`` to the component ``name``."""
    if name not in STRUCTS:
        raise KeyError(f"no msgspec component {name!r}")
    return {"$ref": COMPONENT_PREFIX + name}


def _component(name: str) -> WithJsonSchema:
    """Pydantic metadata: document this field as a ``$ref`` to the msgspec component."""
    if name not in STRUCTS:
        raise KeyError(f"no msgspec component {name!r}")
    return WithJsonSchema({_MARKER: name})


PlanJson = Annotated[dict[str, Any], _component("Plan")]
"""A pydantic field holding a plan document, documented as the ``Plan`` component (the
request's plan is validated by ``parse_plan``, which lists every problem)."""


def documented_path(description: str, *, pattern: str, max_length: int) -> Any:
    """A path parameter whose ``pattern`` the document states but FastAPI does not check: the
    layer below checks it and answers with its own problem (an unknown execution or schedule
    stays the same problem whatever its name)."""
    return Path(
        description=description, max_length=max_length, json_schema_extra={"pattern": pattern}
    )


def json_content(name: str, *, media_type: str = "application/json") -> dict[str, Any]:
    """An OpenAPI ``content`` entry of one msgspec component."""
    return {media_type: {"schema": ref_schema(name)}}


def responds(
    name: str,
    status: int = 200,
    description: str = "",
    links: dict[str, Any] | None = None,
) -> dict[int | str, Any]:
    """The ``responses=`` of a route answering the msgspec component ``name``; ``links``:
    its OpenAPI links (what a client may call next with values from the answer)."""
    response: dict[str, Any] = {"description": description or name, "content": json_content(name)}
    if links:
        response["links"] = links
    return {status: response}


def link(operation_id: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to the operation ``operation_id`` (a route's function name), each
    parameter a runtime expression such as ``$response.body#/execution_id``."""
    return {"operationId": operation_id, "parameters": parameters}


def sse_event_schema(events: dict[str, str]) -> dict[str, Any]:
    """The schema of one Server-Sent Event of a stream (OpenAPI 3.1 describes a
    ``text/event-stream`` by its events): each event name with the msgspec component its
    ``data`` holds as JSON."""
    return {
        "oneOf": [
            {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"const": event},
                    "id": {"type": "string", "description": "the state's stream sequence"},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": ref_schema(component),
                    },
                },
            }
            for event, component in events.items()
        ]
    }


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        if _MARKER in node:
            rest = {k: v for k, v in node.items() if k not in (_MARKER, "title")}
            return {"$ref": COMPONENT_PREFIX + node[_MARKER], **_clean(rest)}
        if "$ref" in node and "type" in node:
            # FastAPI's default schema of a non-JSON response class, merged into ours.
            node = {k: v for k, v in node.items() if k != "type"}
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else _clean(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean(item) for item in node]
    return node


def _components() -> dict[str, Any]:
    types = list(STRUCTS.values())
    top, components = msgspec.json.schema_components(
        types, ref_template=COMPONENT_PREFIX + "{name}"
    )
    for name, schema in zip(STRUCTS, top, strict=True):
        if schema != {"$ref": COMPONENT_PREFIX + name}:
            components[name] = schema  # a union: named here
    return components


def merge_components(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the markers turned into ``$ref`` and every msgspec
    component added.

    Raises:
        ValueError: a pydantic model and a msgspec struct share a component name.
    """
    document = _clean(document)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    structs = _components()
    clash = sorted(set(schemas) & set(structs))
    if clash:
        raise ValueError(f"component names used twice: {', '.join(clash)}")
    schemas.update(_clean(structs))
    return document


class MsgspecResponse(Response):
    """A JSON response of msgspec values (structs, or builtins holding them)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)
