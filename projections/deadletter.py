"""Recording events the projector cannot take on ``tep.deadletter.projector.<subject>``."""

from __future__ import annotations

import logging

from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import APIError

from eventstore.subjects import DEADLETTER_PREFIX
from projections.updater import Poison

__all__ = ["dead_letter_subject", "publish_dead_letter"]

_log = logging.getLogger("tep.projector")
_HEADER_LIMIT = 512


def dead_letter_subject(original_subject: str) -> str:
    """Where a poison event of ``original_subject`` is kept."""
    return f"{DEADLETTER_PREFIX}.projector.{original_subject}"


def _header_text(text: str) -> str:
    return " ".join(text.split())[:_HEADER_LIMIT]


async def publish_dead_letter(js: JetStreamContext, stream: str, poison: Poison) -> None:
    """Log the poison record and keep a copy (payload unchanged) in the dead-letter stream.

    Headers: ``Tep-Reason`` (``<code>: <detail>``), ``Tep-Reason-Code`` (``undecodable``,
    ``unknown_type`` or ``unknown_execution``), ``Tep-Original-Stream``, ``Tep-Original-Subject``,
    ``Tep-Original-Sequence``. The message id is derived from the original sequence, so replicas
    and retries record it once.
    """
    record = poison.record
    _log.error(
        "poison event skipped: %s",
        poison.detail,
        extra={"reason": poison.reason, "sequence": record.sequence, "subject": record.subject},
    )
    headers = {
        "Nats-Msg-Id": f"projector.{stream}.{record.sequence}",
        "Tep-Reason": _header_text(f"{poison.reason}: {poison.detail}"),
        "Tep-Reason-Code": poison.reason,
        "Tep-Original-Stream": stream,
        "Tep-Original-Subject": record.subject,
        "Tep-Original-Sequence": str(record.sequence),
    }
    subject = dead_letter_subject(record.subject)
    try:
        await js.publish(subject, record.data, headers=headers)
    except (MaxPayloadError, APIError) as exc:
        # The original filled a message on its own; keep the facts without the payload.
        _log.warning("dead letter stored without its payload: %s", exc)
        headers["Tep-Payload-Dropped"] = str(len(record.data))
        await js.publish(subject, b"", headers=headers)
