"""The NATS and JetStream header names this project reads and writes: one home for each.

Protocol names are constants, never literals spread over modules (as ``nats.js.api.Header``).
"""

from __future__ import annotations

__all__ = [
    "BATCH_COMMIT",
    "BATCH_ID",
    "BATCH_SEQUENCE",
    "DEADLETTER_PAYLOAD_DROPPED",
    "DEADLETTER_PAYLOAD_TRUNCATED",
    "DEADLETTER_REASON",
    "DEADLETTER_REASON_CODE",
    "DEADLETTER_SEQUENCE",
    "DEADLETTER_STREAM",
    "DEADLETTER_SUBJECT",
    "EXPECTED_LAST_SUBJECT_SEQUENCE",
    "EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT",
    "KV_OPERATION",
    "MARKER_REASON",
    "MSG_ID",
    "ROLLUP",
    "SCHEDULE",
    "SCHEDULE_TARGET",
    "STATUS",
    "STATUS_DESCRIPTION",
    "STREAM_SOURCE",
    "TRACEPARENT",
    "TTL",
]

MSG_ID = "Nats-Msg-Id"
"""The dedupe key of a published message (our event id)."""
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
BATCH_ID = "Nats-Batch-Id"
BATCH_SEQUENCE = "Nats-Batch-Sequence"
BATCH_COMMIT = "Nats-Batch-Commit"
SCHEDULE = "Nats-Schedule"
SCHEDULE_TARGET = "Nats-Schedule-Target"
TTL = "Nats-TTL"
MARKER_REASON = "Nats-Marker-Reason"
STREAM_SOURCE = "Nats-Stream-Source"
"""Set by the server on a sourced message: the origin stream and sequence first."""
KV_OPERATION = "KV-Operation"
ROLLUP = "Nats-Rollup"
"""``sub``: the message replaces every earlier one on its subject (an object's metadata)."""
STATUS = "Status"
"""Set on the server's status messages (pull request ended, idle heartbeat...)."""
STATUS_DESCRIPTION = "Description"
TRACEPARENT = "traceparent"
"""The W3C trace context of an event (see :mod:`eventstore.tracing`); the executor sends it on
to the action's HTTP target under the same name."""

DEADLETTER_REASON = "Tep-Reason"
DEADLETTER_REASON_CODE = "Tep-Reason-Code"
DEADLETTER_STREAM = "Tep-Original-Stream"
DEADLETTER_SUBJECT = "Tep-Original-Subject"
DEADLETTER_SEQUENCE = "Tep-Original-Sequence"
DEADLETTER_PAYLOAD_DROPPED = "Tep-Payload-Dropped"
DEADLETTER_PAYLOAD_TRUNCATED = "Tep-Payload-Truncated"
"""On a dead letter whose payload is only the start of the original: the original's size."""
