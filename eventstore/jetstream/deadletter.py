"""Keeping messages no role could process: ``tep.deadletter.<role>.<original subject>``.

Every role that gives up on a message records it here, with headers that say why, so nothing is
lost and a poison message never stalls a consumer. One helper, :func:`dead_letter`, serves a
consumed message (which it then terminates) and a record read from the log alike.

Storing a dead letter never fails on size: the copy, headers included, is cut to what one
message may hold on the connection (a message just under the server's ``max_payload`` plus our
headers would be over it, and the server answers that by closing the connection). A cut copy
keeps the start of the payload and says so in ``Tep-Payload-Truncated`` (the original size);
the original stays in the log at ``Tep-Original-Sequence``. Nor on the subject's length: an
original subject so long that ours would pass the server's control-line limit (which also
closes the connection) is filed under ``tep.deadletter.<role>.subject-too-long``; the header
``Tep-Original-Subject`` keeps it whole.
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

__all__ = ["dead_letter", "dead_letter_message", "wire_header_size"]

_log = logging.getLogger("tep.deadletter")
_HEADER_LIMIT = 512
# Room for what the size computed here does not see (the server's own accounting).
_SAFETY_BYTES = 256
# Far below the server's control-line limit (4 KiB by default), which a subject counts against.
_MAX_SUBJECT = 1024
_LONG_SUBJECT = "subject-too-long"
_HEADER_LINE = len(b"NATS/1.0\r\n") + len(b"\r\n")


def _header_text(text: str) -> str:
    return " ".join(text.split())[:_HEADER_LIMIT]


def wire_header_size(headers: dict[str, str]) -> int:
    """The bytes ``headers`` take in a message on the wire (``NATS/1.0`` block included)."""
    return _HEADER_LINE + sum(
        len(key.encode()) + len(value.encode()) + 4 for key, value in headers.items()
    )


def dead_letter_message(
    data: bytes, headers: dict[str, str], max_bytes: int
) -> tuple[bytes, dict[str, str]]:
    """The payload and headers of a dead letter that fit ``max_bytes`` (payload + headers).

    A payload too large is cut, and ``Tep-Payload-Truncated`` holds its original size. If not
    even the headers fit, the payload is dropped (``Tep-Payload-Dropped``).
    """
    budget = max_bytes - _SAFETY_BYTES
    if wire_header_size(headers) + len(data) <= budget:
        return data, headers
    cut = dict(headers)
    cut[h.DEADLETTER_PAYLOAD_TRUNCATED] = str(len(data))
    room = budget - wire_header_size(cut)
    if room > 0:
        return data[:room], cut
    dropped = dict(headers)
    dropped[h.DEADLETTER_PAYLOAD_DROPPED] = str(len(data))
    return b"", dropped


async def dead_letter(
    js: JetStreamContext,
    original: Msg | RawRecord,
    *,
    role: str,
    stream: str,
    reason: str,
    reason_code: str | None = None,
    max_bytes: int | None = None,
) -> None:
    """Log ``original``, store a copy in the dead-letter stream, and stop its redelivery.

    A consumed message is terminated once its copy is stored (a failed ``term`` is only
    logged: the copy is kept once, whoever stores it again). Headers: ``Tep-Reason``,
    ``Tep-Reason-Code`` (when given), ``Tep-Original-Stream``, ``Tep-Original-Subject``,
    ``Tep-Original-Sequence``. The message id derives from the role and the original sequence,
    so replicas and retries record a message once. A payload too large for one message with
    these headers is cut (``Tep-Payload-Truncated``: the original size); one the dead-letter
    stream still refuses is dropped (``Tep-Payload-Dropped``).

    Args:
        js: the JetStream context to publish with.
        original: the consumed message, or a record read from the log.
        role: who gives up on it (``orchestrator``, ``executor``, ``projector``).
        stream: the stream ``original`` comes from.
        reason: why, for people.
        reason_code: why, for programs.
        max_bytes: the most a message may hold (payload + headers); default the
            connection's ``max_payload``.

    Raises:
        Exception: the dead-letter stream could not be written; a message is left unsettled
            for the caller to nak or to let come back after its ack wait.
    """
    sequence = original.metadata.sequence.stream if isinstance(original, Msg) else original.sequence
    await _publish(
        js,
        role=role,
        stream=stream,
        subject=original.subject,
        sequence=sequence,
        data=original.data,
        reason=reason,
        reason_code=reason_code,
        max_bytes=max_bytes,
    )
    if isinstance(original, Msg):
        try:
            await original.term()
        except Exception as exc:
            _log.warning("could not terminate a dead-lettered message: %s", exc)


def _connection_limit(js: JetStreamContext) -> int:
    # The context keeps its connection privately; the limit is what the server announced.
    limit = getattr(getattr(js, "_nc", None), "max_payload", None)
    return int(limit) if limit else 1024 * 1024


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
    max_bytes: int | None,
) -> None:
    _log.error(
        "message dead-lettered: %s",
        reason,
        extra={"role": role, "subject": subject, "sequence": sequence, "size": len(data)},
    )
    headers = {
        h.MSG_ID: f"{role}.{stream}.{sequence}",
        h.DEADLETTER_REASON: _header_text(reason),
        h.DEADLETTER_STREAM: stream,
        h.DEADLETTER_SUBJECT: subject,
        h.DEADLETTER_SEQUENCE: str(sequence),
    }
    if reason_code:
        headers[h.DEADLETTER_REASON_CODE] = _header_text(reason_code)
    limit = min(max_bytes or _connection_limit(js), _connection_limit(js))
    payload, headers = dead_letter_message(data, headers, limit)
    target = dead_letter_subject(role, subject)
    if len(target.encode()) > _MAX_SUBJECT:
        target = dead_letter_subject(role, _LONG_SUBJECT)
    try:
        await js.publish(target, payload, headers=headers)
    except (MaxPayloadError, APIError) as exc:
        # The dead-letter stream's own size limit is below the connection's.
        _log.warning("dead letter stored without its payload: %s", exc)
        headers.pop(h.DEADLETTER_PAYLOAD_TRUNCATED, None)
        headers[h.DEADLETTER_PAYLOAD_DROPPED] = str(len(data))
        await js.publish(target, b"", headers=headers)
