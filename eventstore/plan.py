"""The plan document: a DAG of actions, as typed, immutable structs.

Parsing and semantic validation live in :mod:`eventstore.plan_validation`; this module only
declares the shape, so event types can embed a plan without importing the validator.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "DEFAULT_ACTION_TYPE",
    "SUBPLAN_TYPE",
    "WAIT_TYPES",
    "Action",
    "Condition",
    "HttpMethod",
    "Plan",
    "QueueConfig",
    "RequestSpec",
    "RetryPolicy",
    "RunIf",
]

DEFAULT_ACTION_TYPE = "http"
WAIT_TYPES = frozenset({"wait", "sleep"})
"""Action types the orchestrator runs itself: a waitpoint and a sleep."""

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
RunIf = Literal["success", "failed", "always"]
SUBPLAN_TYPE = "plan"
"""The action type whose action runs a sub-plan as a child execution."""


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How often and how patiently an action is retried.

    The delay before attempt ``n + 1`` is ``min_backoff_ms * backoff_factor ** (n - 1)``, capped at
    ``max_backoff_ms``, with up to 20 % random jitter.
    """

    max_attempts: int = 1
    backoff_factor: float = 2.0
    min_backoff_ms: int = 200
    max_backoff_ms: int = 10_000
    jitter: bool = True


class RequestSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An HTTP request. Strings may hold ``{{...}}`` templates."""

    url: str
    method: HttpMethod = "GET"
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    json: Any = None
    body: str | None = None
    timeout_s: float | None = None


class Condition(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A ``when`` condition on a path into ``input.*`` or ``actions.<id>.*``.

    Exactly one operator is set: ``equals``, ``not_equals``, ``in``, ``exists`` or ``truthy``.
    """

    path: str
    equals: Any = msgspec.UNSET
    not_equals: Any = msgspec.UNSET
    in_: list[Any] | msgspec.UnsetType = msgspec.field(default=msgspec.UNSET, name="in")
    exists: bool | msgspec.UnsetType = msgspec.UNSET
    truthy: bool | msgspec.UnsetType = msgspec.UNSET


class Action(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True
):
    """One step of a plan.

    Control flow: ``run_if`` says when the action runs once its dependencies finished
    (``success``: all completed, the default; ``failed``: one failed, an error route;
    ``always``: however they ended). ``on_error`` names error routes of this action (each runs
    only when it fails); a failure an error route runs for counts as handled.
    ``continue_on_error`` lets the execution go on although this action (or, with
    ``for_each``, one of its items) failed.

    ``for_each`` (a template or a literal array) runs the action once per element, at most
    ``concurrency`` at a time, with ``{{item}}`` and ``{{index}}`` in its request.

    Type ``plan`` runs a sub-plan: ``plan`` inline or ``plan_ref`` (a plan registry name),
    with ``input``. ``output_schema`` (JSON Schema) checks the output of a step.

    Two types are run by the orchestrator itself, never by an executor: ``wait`` (a waitpoint:
    it waits for ``tep resume`` or its token, at most ``timeout_s``; resume data must match
    ``schema``) and ``sleep`` (``duration_s`` seconds, or ``until`` an ISO time or template).
    """

    id: str
    type: str = DEFAULT_ACTION_TYPE
    depends_on: list[str] = []
    queue: str | None = None
    request: RequestSpec | None = None
    input: Any = None
    timeout_s: float | None = None
    retry: RetryPolicy | None = None
    when: Condition | None = None
    run_if: RunIf = "success"
    on_error: list[str] = []
    continue_on_error: bool = False
    for_each: str | list[Any] | None = None
    concurrency: int | None = None
    plan: Plan | None = None
    plan_ref: str | None = None
    output_schema: dict[str, Any] | None = None
    schema: dict[str, Any] | None = None
    duration_s: float | None = None
    until: str | None = None

    @property
    def waits(self) -> bool:
        """Whether the orchestrator runs this action itself (``wait`` or ``sleep``)."""
        return self.type in WAIT_TYPES

    @property
    def runs_plan(self) -> bool:
        """Whether this action runs a sub-plan (type ``plan``)."""
        return self.type == SUBPLAN_TYPE

    @property
    def queue_name(self) -> str:
        """The queue this action is routed to: ``queue`` or else its type."""
        return self.queue or self.type


class QueueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A plan's cap on one queue: ``queues: {name: {concurrency_limit: N}}``.

    At most N of this execution's actions of the queue are dispatched and unfinished at once.
    Other executions, and the queue itself (operator configuration, ``tep queue set``), are not
    affected.
    """

    concurrency_limit: int | None = None


class Plan(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A plan: input values plus a DAG of actions, with an optional overall deadline."""

    id: str
    actions: list[Action]
    input: dict[str, Any] = {}
    timeout_s: float | None = None
    queues: dict[str, QueueConfig] = {}
    description: str | None = None
    input_schema: dict[str, Any] | None = None

    def action(self, action_id: str) -> Action:
        """Return the action with this id (``KeyError`` if there is none)."""
        for action in self.actions:
            if action.id == action_id:
                return action
        raise KeyError(action_id)
