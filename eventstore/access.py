"""Who may do what on NATS: one identity per role and its subject permissions. Pure.

Each role gets the least it needs to do its job:

``client``
    publishes ``plan.submitted.*``, ``execution.cancel.requested.*``,
    ``action.resume.requested.*.*`` (resuming a waitpoint) and ``execution.retried.*``
    (re-running an ended execution); puts plans into the plan registry
    (``$KV.tep_plans.>``); reads the view, the registry and the history. Cannot write any other
    event, the view, or take work from a queue.
``executor``
    takes requests from its queue's consumer (``queue-<name>``) and publishes the outcome
    events (``action.started|attempt.failed|completed|failed``); no ``plan.*``, no
    ``execution.*``, no view.
``orchestrator``
    consumes the partition stream (every consumer on it is an orchestrator's: one per
    partition) and publishes decisions (dispatches, skips, cancels, waits and their outcomes,
    execution ends, deadlines and timers) and its partitions' leases; submits the
    executions of schedule ticks and sub-plans' children (and cancels the children of a
    cancelled parent), and records the schedules' state (``$KV.tep_schedules.state.>``), never
    their definitions; reads the plan registry, never writes it.
``projector``
    writes the view buckets and the view pointer.
``admin``
    everything: provisioning, rebuilds, queue limits, schedule definitions, manual action
    results.

Clients, executors and orchestrators also store values too large for their events in the
payload bucket (``$O.<bucket>.C.>`` chunks, ``$O.<bucket>.M.>`` metadata: put only, never
purge or delete); every role may read it, as it reads the log.

The JetStream API (``$JS.API.>``) is narrowed the same way: every role may look at stream
metadata and read (direct get, ephemeral consumers); only the owners of the durable
consumers may create, pull from and acknowledge on them; only the admin may create, update or
delete streams (a stream records whatever subjects it is given, so a role that could create
one could record the others' replies) and delete the durable consumers. The admin provisions
(``tep provision``, or ``tep up`` for its own server); the roles only check what exists.
Replies come back on the role's own inbox prefix
(``_INBOX.<role>``), so one role cannot read another's replies.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import msgspec

from eventstore.partitions import partition_stream
from eventstore.payloads import DEFAULT_PAYLOAD_BUCKET
from eventstore.plan_registry import PLAN_BUCKET
from eventstore.subjects import DEADLETTER_PREFIX

__all__ = ["ROLES", "Permissions", "Role", "inbox_prefix", "permissions"]


class Role(StrEnum):
    """An identity on NATS."""

    CLIENT = "client"
    EXECUTOR = "executor"
    ORCHESTRATOR = "orchestrator"
    PROJECTOR = "projector"
    ADMIN = "admin"


ROLES: tuple[Role, ...] = tuple(Role)

_API = "$JS.API"
_VIEW_BUCKETS_STREAM_PREFIX = "KV_tep_view_"


class Permissions(msgspec.Struct, frozen=True, kw_only=True):
    """Subjects a role may publish and subscribe to (``deny`` wins over ``allow``)."""

    publish_allow: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_allow: tuple[str, ...]
    allow_responses: bool = False


def inbox_prefix(role: Role | str) -> str:
    """The inbox prefix a role's connection uses (and alone may subscribe to)."""
    return f"_INBOX.{Role(role).value}"


def permissions(
    role: Role | str,
    *,
    stream: str = "TEP_EVENTS",
    deadletter_stream: str = "TEP_DEADLETTER",
    orchestrator_consumer: str = "orchestrator",
    lease_bucket: str = "tep_leases",
    queues: Iterable[str] = ("http",),
    payload_bucket: str = DEFAULT_PAYLOAD_BUCKET,
) -> Permissions:
    """The permissions of ``role`` on a deployment with these stream and consumer names.

    Args:
        role: the identity.
        stream: the events stream (``TEP_STREAM``).
        deadletter_stream: the dead-letter stream.
        orchestrator_consumer: the name the orchestrator's durable consumers start with
            (one per partition, on the partition stream; the one shared before partitions
            on the log).
        lease_bucket: the KV bucket of the orchestrators' partition leases.
        queues: the executor queues this executor identity may serve.
        payload_bucket: the Object Store bucket of values stored by reference.
    """
    role = Role(role)
    if role is Role.ADMIN:
        return Permissions(publish_allow=(">",), subscribe_allow=(">",), allow_responses=True)
    queues = tuple(queues)
    own = (f"{inbox_prefix(role)}.>",)
    common = _reader()
    # The orchestrator's consumers are on the partition stream; the log's former shared one
    # is nobody's (an old orchestrator must not make it again and be fed the whole log).
    owned = {f"queue-{queue}" for queue in queues} if role is Role.EXECUTOR else set()
    durables = [orchestrator_consumer, *(f"queue-{queue}" for queue in queues)]
    partitions = partition_stream(stream)
    protected = (
        # The unnamed create is a create-or-update of any consumer named in the request.
        f"{_API}.CONSUMER.CREATE.{stream}",
        f"{_API}.CONSUMER.CREATE.{deadletter_stream}",
        f"{_API}.CONSUMER.CREATE.{partitions}",
        f"{_API}.CONSUMER.DELETE.{partitions}.*",
        # Every consumer of the partition stream is an orchestrator's.
        *(
            ()
            if role is Role.ORCHESTRATOR
            else (
                f"{_API}.CONSUMER.CREATE.{partitions}.>",
                f"{_API}.CONSUMER.DURABLE.CREATE.{partitions}.>",
            )
        ),
        *(
            subject
            for name in durables
            for subject in (
                f"{_API}.CONSUMER.DELETE.{stream}.{name}",
                *(
                    (
                        f"{_API}.CONSUMER.CREATE.{stream}.{name}",
                        f"{_API}.CONSUMER.CREATE.{stream}.{name}.>",
                    )
                    if name not in owned
                    else ()
                ),
            )
        ),
    )
    if role is Role.CLIENT:
        return Permissions(
            publish_allow=(
                *common,
                "plan.submitted.*",
                "execution.cancel.requested.*",
                "action.resume.requested.*.*",
                "execution.retried.*",
                f"$KV.{PLAN_BUCKET}.>",
                *_payload_writer(payload_bucket),
                f"{_API}.CONSUMER.LIST.*",
                f"{_API}.CONSUMER.NAMES.*",
            ),
            publish_deny=protected,
            subscribe_allow=(*own, "$KV.tep_meta.>"),
        )
    if role is Role.EXECUTOR:
        durable = [s for queue in queues for s in _owned_durable(stream, f"queue-{queue}")]
        return Permissions(
            publish_allow=(
                *common,
                *durable,
                "action.started.*.*",
                "action.attempt.failed.*.*",
                "action.completed.*.*",
                "action.failed.*.*",
                "tep.executor.probe.*",
                *_payload_writer(payload_bucket),
                f"{DEADLETTER_PREFIX}.executor.>",
            ),
            publish_deny=protected,
            subscribe_allow=(*own, "tep.executor.probe.*"),
            allow_responses=True,
        )
    if role is Role.ORCHESTRATOR:
        return Permissions(
            publish_allow=(
                *common,
                *_owned_durable(partitions, "*"),
                # A silent copy of the log into it is set up again by its next leader.
                f"{_API}.STREAM.LEADER.STEPDOWN.{partitions}",
                "action.execute.requested.>",
                "action.skipped.*.*",
                "action.cancelled.*.*",
                "action.failed.*.*",
                # Waits: the pause, its timer's schedule, and its one outcome.
                "action.waiting.*.*",
                "action.completed.*.*",
                "action.started.*.*",  # a sub-plan action started its child
                "action.items.started.*.*",  # a for-each action began its items
                "plan.timer.*.*.hold",
                "execution.completed.*",
                "execution.failed.*",
                "execution.cancelled.*",
                "execution.cancel.requested.*",
                "plan.deadline.*",
                "plan.submitted.*",  # schedule ticks
                f"$KV.{lease_bucket}.>",
                "$KV.tep_schedules.state.>",
                *_payload_writer(payload_bucket),
                f"{DEADLETTER_PREFIX}.orchestrator.>",
            ),
            publish_deny=protected,
            subscribe_allow=own,
        )
    # Role.PROJECTOR
    return Permissions(
        publish_allow=(
            *common,
            "$KV.tep_meta.>",
            "$KV.*.>",
            f"{DEADLETTER_PREFIX}.projector.>",
        ),
        publish_deny=(
            *protected,
            # Only view buckets and the pointer are the projector's to write.
            f"$KV.{lease_bucket}.>",
            "$KV.tep_queues.>",
            "$KV.tep_schedules.>",
            f"$KV.{PLAN_BUCKET}.>",
        ),
        subscribe_allow=(*own, "$KV.tep_meta.>"),
    )


def _owned_durable(stream: str, consumer: str) -> tuple[str, ...]:
    """What the owner of a durable consumer may do with it: create, inspect, pull, ack."""
    return (
        f"{_API}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"{_API}.CONSUMER.CREATE.{stream}.{consumer}",
        f"{_API}.CONSUMER.CREATE.{stream}.{consumer}.>",
        f"{_API}.CONSUMER.INFO.{stream}.{consumer}",
        f"{_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    )


def _payload_writer(bucket: str) -> tuple[str, ...]:
    """Storing values by reference: an object's chunks and its metadata. (Reading them is
    direct gets and named consumers, which every role may do.) No purge, no delete."""
    return (f"$O.{bucket}.C.>", f"$O.{bucket}.M.>")


def _reader() -> tuple[str, ...]:
    """What every role may do to look at the log, the view and their metadata."""
    return (
        f"{_API}.INFO",
        f"{_API}.STREAM.INFO.*",
        f"{_API}.STREAM.NAMES",
        f"{_API}.DIRECT.GET.*",
        f"{_API}.DIRECT.GET.*.>",
        f"{_API}.STREAM.MSG.GET.*",
        # Consumers by name (the log's durables are denied per role), and unnamed ones on the
        # view's buckets, as KV watches create them.
        f"{_API}.CONSUMER.CREATE.*",
        f"{_API}.CONSUMER.CREATE.*.*",
        f"{_API}.CONSUMER.CREATE.*.*.>",
        f"{_API}.CONSUMER.DELETE.*.*",
        f"{_API}.CONSUMER.INFO.*.*",
        "$JS.FC.>",
    )
