"""A message of the partition stream, seen as the log has it: its subject and sequence.

The orchestrator decides on the log's sequences (versions, guards, "the first on its subject");
a message delivered from the partition stream carries them in its ``Nats-Stream-Source`` header
(:mod:`eventstore.partitions`), which the server sets and refuses from publishers.
"""

from __future__ import annotations

import dataclasses

from nats.aio.msg import Msg

from eventstore.headers import STREAM_SOURCE
from eventstore.partitions import origin_subject, source_sequence

__all__ = ["as_logged"]


def as_logged(msg: Msg, log_stream: str) -> Msg:
    """``msg`` with its log subject, and metadata naming the log's stream and sequence.

    Acknowledgements are unchanged (they go to the partition stream's consumer). A message
    without the header (none can be: the partition stream takes nothing but its source) is
    returned as it is, and its subject then names no execution.
    """
    sequence = source_sequence((msg.headers or {}).get(STREAM_SOURCE))
    if sequence is None:
        return msg
    meta = msg.metadata
    msg.subject = origin_subject(msg.subject)
    msg._metadata = dataclasses.replace(
        meta,
        sequence=Msg.Metadata.SequencePair(consumer=meta.sequence.consumer, stream=sequence),
        stream=log_stream,
    )
    return msg
