"""Where each event lives in the log: subject names and filters.

Subjects start with the event type and carry the execution id as a token::

    plan.submitted.<execution>
    action.execute.requested.<queue>.<execution>.<action>
    action.<started|completed|failed|skipped|cancelled|waiting>.<execution>.<action>
    action.attempt.failed.<execution>.<action>
    action.resume.requested.<execution>.<action>
    action.timer.fired.<execution>.<action>    (written by the server when a timer is due)
    action.items.started.<execution>.<action>  (a for-each action began)
    execution.<completed|failed|cancelled|retried>.<execution>
    execution.cancel.requested.<execution>
    plan.deadline.<execution>                     (a schedule holder, not an event)
    plan.timer.<execution>.<action>.hold          (a schedule holder, not an event)
    tep.deadletter.<role>.<original subject>      (in the dead-letter stream)

Because type tokens differ in length, the execution id sits at different positions; one
execution's history is read with the list of filters from :func:`execution_filters`.
"""

from __future__ import annotations

import base64
import hashlib
import re

from eventstore.events import (
    EVENT_TYPES,
    ActionCompleted,
    ActionEvent,
    ActionExecuteRequested,
    ActionFailed,
    ActionResumeRequested,
    ActionTimerFired,
    EventBase,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRetried,
    PlanSubmitted,
)

__all__ = [
    "ACTION_CANCELLED_FILTER",
    "DEADLETTER_PREFIX",
    "EVENT_SUBJECT_ROOTS",
    "ID_PATTERN",
    "ORCHESTRATOR_FILTERS",
    "ORCHESTRATOR_SUBJECTS",
    "PLAN_SUBMITTED_PREFIX",
    "RESERVED_IDS",
    "action_filter",
    "action_ids",
    "action_subject",
    "action_version_filter",
    "dead_letter_subject",
    "deadline_subject",
    "event_type_of",
    "execution_filters",
    "execution_id_problem",
    "executor_probe_subject",
    "orchestrator_subject_type",
    "payload_chunk_subject",
    "payload_meta_subject",
    "payload_stream",
    "payload_subjects",
    "plan_subject",
    "queue_filter",
    "subject_for",
    "terminal_filter",
    "timer_subject",
]

EVENT_SUBJECT_ROOTS = ("plan.>", "action.>", "execution.>")
DEADLETTER_PREFIX = "tep.deadletter"
PLAN_SUBMITTED_PREFIX = "plan.submitted."

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
# Words that appear as the third token of longer event types. An execution with one of these
# ids would make the action-version filter match other executions' subjects.
RESERVED_IDS = frozenset({"failed", "requested"})

_ACTION_TYPES_2 = ("started", "completed", "failed", "skipped", "cancelled", "waiting")
_EXECUTION_TYPES_2 = ("completed", "failed", "cancelled")


def execution_id_problem(execution_id: str) -> str | None:
    """Why ``execution_id`` cannot be used as a subject token, or ``None`` if it can."""
    if not ID_PATTERN.match(execution_id):
        return f"execution id {execution_id!r} must match [A-Za-z0-9_-]{{1,128}}"
    if execution_id in RESERVED_IDS:
        return f"execution id {execution_id!r} is reserved"
    return None


def subject_for(event: EventBase) -> str:
    """The subject an event is published on."""
    event_type = event.__struct_config__.tag
    if isinstance(event, ActionExecuteRequested):
        return f"{event_type}.{event.queue}.{event.execution_id}.{event.action_id}"
    if isinstance(event, ActionEvent):
        return f"{event_type}.{event.execution_id}.{event.action_id}"
    return f"{event_type}.{event.execution_id}"


def execution_filters(execution_id: str) -> list[str]:
    """Non-overlapping filters that together match every event of one execution."""
    e = execution_id
    return [
        f"plan.submitted.{e}",
        f"action.execute.requested.*.{e}.*",
        f"action.attempt.failed.{e}.*",
        f"action.resume.requested.{e}.*",
        f"action.timer.fired.{e}.*",
        f"action.items.started.{e}.*",
        *(f"action.{t}.{e}.*" for t in _ACTION_TYPES_2),
        *(f"execution.{t}.{e}" for t in _EXECUTION_TYPES_2),
        f"execution.retried.{e}",
        f"execution.cancel.requested.{e}",
    ]


def action_version_filter(execution_id: str) -> str:
    """The filter whose last sequence is the execution's version for optimistic concurrency.

    It matches ``action.<started|completed|failed|skipped|cancelled|waiting>.<execution>.<action>``:
    every event that changes what may run next, so a decision based on a stale state conflicts.
    """
    return f"*.*.{execution_id}.*"


def queue_filter(queue: str) -> str:
    """The subjects executors of ``queue`` consume."""
    return f"action.execute.requested.{queue}.>"


def plan_subject(execution_id: str) -> str:
    """Where an execution's ``plan.submitted`` is (at most one: it starts the execution)."""
    return f"{PLAN_SUBMITTED_PREFIX}{execution_id}"


def action_subject(event_type: type[ActionEvent], execution_id: str, action_id: str) -> str:
    """The subject of an action event of ``event_type`` (not a request, which names a queue)."""
    return f"{event_type.__struct_config__.tag}.{execution_id}.{action_id}"


def action_filter(execution_id: str, action_id: str) -> str:
    """The filter matching the action's ``started``, ``completed``, ``failed``, ``skipped`` and
    ``cancelled`` events, and nothing else (not its request, not ``action.attempt.failed``).

    Its last message says where the action stands: the executor reads it before an attempt
    and guards its appends on it, so an action's outcome is stored once.
    """
    return f"action.*.{execution_id}.{action_id}"


ACTION_CANCELLED_FILTER = "action.cancelled.>"
"""Every ``action.cancelled`` of every execution."""


def action_ids(subject: str) -> tuple[str, str] | None:
    """``(execution, action)`` of an ``action.<type>.<execution>.<action>`` subject, else
    ``None``."""
    tokens = subject.split(".")
    if len(tokens) != 4 or tokens[0] != "action":
        return None
    return tokens[2], tokens[3]


def executor_probe_subject(executor_id: str) -> str:
    """Where the executor process ``executor_id`` answers whether it still runs an attempt
    (a core NATS request; the id, which may hold any character, is hashed into one token)."""
    token = hashlib.sha256(executor_id.encode()).hexdigest()[:32]
    return f"tep.executor.probe.{token}"


def terminal_filter(execution_id: str) -> str:
    """The filter matching the execution's end events (and no other event of it)."""
    return f"execution.*.{execution_id}"


def deadline_subject(execution_id: str) -> str:
    """Where an execution's pending deadline schedule is held."""
    return f"plan.deadline.{execution_id}"


def timer_subject(execution_id: str, action_id: str) -> str:
    """Where a waiting action's pending timer schedule is held (five tokens, so the
    execution's version filter never matches it)."""
    return f"plan.timer.{execution_id}.{action_id}.hold"


def dead_letter_subject(role: str, original_subject: str) -> str:
    """Where ``role`` keeps a message it could not process."""
    return f"{DEADLETTER_PREFIX}.{role}.{original_subject}"


# The payload bucket is a JetStream Object Store, laid out as every NATS client lays one out:
# stream OBJ_<bucket>, an object's metadata on $O.<bucket>.M.<base64url name>, its chunks on
# $O.<bucket>.C.<nuid>.


def payload_stream(bucket: str) -> str:
    """The stream behind the payload bucket."""
    return f"OBJ_{bucket}"


def payload_subjects(bucket: str) -> list[str]:
    """The subjects of the payload bucket's stream: chunks, then metadata."""
    return [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"]


def payload_meta_subject(bucket: str, name: str) -> str:
    """Where the metadata of object ``name`` is kept (the name base64url-encoded)."""
    encoded = base64.urlsafe_b64encode(name.encode()).decode()
    return f"$O.{bucket}.M.{encoded}"


def payload_chunk_subject(bucket: str, nuid: str) -> str:
    """Where the chunks of one stored copy (``nuid``) of an object are kept."""
    return f"$O.{bucket}.C.{nuid}"


# The events the orchestrator decides on (everything else it writes or ignores), by subject
# prefix -> (event type expected there, tokens of a well-formed subject, id position: always
# the first token after the prefix). A child execution's end gives its parent's sub-plan
# action its outcome.
_CONSUMED: dict[str, tuple[type[EventBase], int, int]] = {
    PLAN_SUBMITTED_PREFIX: (PlanSubmitted, 3, 2),
    "action.completed.": (ActionCompleted, 4, 2),
    "action.failed.": (ActionFailed, 4, 2),
    "action.resume.requested.": (ActionResumeRequested, 5, 3),
    "action.timer.fired.": (ActionTimerFired, 5, 3),
    "execution.cancel.requested.": (ExecutionCancelRequested, 4, 3),
    "execution.completed.": (ExecutionCompleted, 3, 2),
    "execution.failed.": (ExecutionFailed, 3, 2),
    "execution.cancelled.": (ExecutionCancelled, 3, 2),
    "execution.retried.": (ExecutionRetried, 3, 2),
}


ORCHESTRATOR_FILTERS: tuple[str, ...] = tuple(f"{prefix}>" for prefix in _CONSUMED)
"""The events the orchestrator decides on, as filters (``plan.submitted.>``...)."""
ORCHESTRATOR_SUBJECTS: tuple[str, ...] = tuple(
    prefix + ".".join("*" * (length - prefix.count(".")))
    for prefix, (_, length, _) in _CONSUMED.items()
)
"""The same, one wildcard per token (``action.completed.*.*``): the execution id is always
the first."""


def orchestrator_subject_type(subject: str) -> tuple[type[EventBase], str] | None:
    """The event type expected on a subject the orchestrator consumes, and its execution id.

    ``None`` when the subject is not one of :data:`ORCHESTRATOR_FILTERS` or is malformed.
    """
    tokens = subject.split(".")
    for prefix, (event_type, length, position) in _CONSUMED.items():
        if subject.startswith(prefix):
            return (event_type, tokens[position]) if len(tokens) == length else None
    return None


def event_type_of(subject: str) -> str:
    """The event type (tag) a subject of the log is for, read from its leading tokens alone;
    ``unknown`` for a subject that is no event's (a metric label, not a check of the body)."""
    tokens = subject.split(".", 3)
    if len(tokens) > 3 and (tag := ".".join(tokens[:3])) in EVENT_TYPES:
        return tag
    tag = ".".join(tokens[:2])
    return tag if tag in EVENT_TYPES else "unknown"
