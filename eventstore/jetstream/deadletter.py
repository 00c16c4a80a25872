"""Keeping messages no role could process: ``tep.deadletter.<role>.<original subject>``.

Every role that gives up on a message records it here, with the payload unchanged and headers
that say why, so nothing is lost and a poison message never stalls a consumer.
"""

from __future__ import annotations

import logging

from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import APIError

from eventstore import headers as h
from eventstore.subjects import dead_letter_subject

__all__ = ["publish_dead_letter"]

_log = logging.getLogger("tep.deadletter")
_HEADER_LIMIT = 512


def _header_text(text: str) -> str:
    return " ".join(text.split())[:_HEADER_LIMIT]


async def publish_dead_letter(
    js: JetStreamContext,
    *,
    role: str,
    stream: str,
    subject: str,
    sequence: int,
    data: bytes,
    reason: str,
    reason_code: str | None = None,
) -> None:
    """Log the message and store a copy in the dead-letter stream.

    Headers: ``Tep-Reason``, ``Tep-Reason-Code`` (when given), ``Tep-Original-Stream``,
    ``Tep-Original-Subject``, ``Tep-Original-Sequence``. The message id derives from the role and
    the original sequence, so replicas and retries record a message once. A payload too large to
    wrap is dropped, its size kept in ``Tep-Payload-Dropped``.

    Raises:
        Exception: the dead-letter stream could not be written (the caller should not ack).
    """
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
