"""Keeping messages no role could process: ``tep.deadletter.<role>.<original subject>``.

Every role that gives up on a message records it here, with the payload unchanged and headers
that say why, so nothing is lost and a poison message never stalls a consumer. One helper,
:func:`dead_letter`, serves a consumed message (which it then terminates) and a record read
from the log alike.
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import APIError

from eventstore import headers as h
from eventstore.records import RawRecord
from eventstore.subjects import dead_letter_subject

__all__ = ["dead_letter"]

_log = logging.getLogger("tep.deadletter")
_HEADER_LIMIT = 512


def _header_text(text: str) -> str:
    return " ".join(text.split())[:_HEADER_LIMIT]


async def dead_letter(
    js: JetStreamContext,
    original: Msg | RawRecord,
    *,
    role: str,
    stream: str,
    reason: str,
    reason_code: str | None = None,
) -> None:
    """Log ``original``, store a copy in the dead-letter stream, and stop its redelivery.

    A consumed message is terminated once its copy is stored (a failed ``term`` is only
    logged: the copy is kept once, whoever stores it again). Headers: ``Tep-Reason``,
    ``Tep-Reason-Code`` (when given), ``Tep-Original-Stream``, ``Tep-Original-Subject``,
    ``Tep-Original-Sequence``. The message id derives from the role and the original sequence,
    so replicas and retries record a message once. A payload too large to wrap is dropped, its
    size kept in ``Tep-Payload-Dropped``.

    Args:
        js: the JetStream context to publish with.
        original: the consumed message, or a record read from the log.
        role: who gives up on it (``orchestrator``, ``executor``, ``projector``).
        stream: the stream ``original`` comes from.
        reason: why, for people.
        reason_code: why, for programs.

    Raises:
        Exception: the dead-letter stream could not be written; a message is left unsettled
            for the caller to nak or to let come back after its ack wait.
    """
    if isinstance(original, Msg):
        await _publish(
            js,
            role=role,
            stream=stream,
            subject=original.subject,
            sequence=original.metadata.sequence.stream,
            data=original.data,
            reason=reason,
            reason_code=reason_code,
        )
        try:
            await original.term()
        except Exception as exc:
            _log.warning("could not terminate a dead-lettered message: %s", exc)
        return
    await _publish(
        js,
        role=role,
        stream=stream,
        subject=original.subject,
        sequence=original.sequence,
        data=original.data,
        reason=reason,
        reason_code=reason_code,
    )


async def _publish(
    js: JetStreamContext,
    *,
    role: str,
    stream: str,
    subject: str,
    sequence: int,
    data: bytes,
    reason: str,
    reason_code: str | None,
) -> None:
    _log.error(
        "message dead-lettered: %s",
        reason,
        extra={"role": role, "subject": subject, "sequence": sequence},
    )
    headers = {
        h.MSG_ID: f"{role}.{stream}.{sequence}",
        h.DEADLETTER_REASON: _header_text(reason),
        h.DEADLETTER_STREAM: stream,
        h.DEADLETTER_SUBJECT: subject,
        h.DEADLETTER_SEQUENCE: str(sequence),
    }
    if reason_code:
        headers[h.DEADLETTER_REASON_CODE] = reason_code
    target = dead_letter_subject(role, subject)
    try:
        await js.publish(target, data, headers=headers)
    except (MaxPayloadError, APIError) as exc:
        _log.warning("dead letter stored without its payload: %s", exc)
        headers[h.DEADLETTER_PAYLOAD_DROPPED] = str(len(data))
        await js.publish(target, b"", headers=headers)
