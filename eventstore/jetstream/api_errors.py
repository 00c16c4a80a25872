"""The JetStream API error codes this project reacts to, and how to read them: one home for each.

A refusal arrives either as ``nats.js.errors.APIError`` (a publish through nats-py) or as the
``error`` of a publish ack (a batch or a pipelined publish answered on our own inbox); both carry
the same ``err_code`` and ``description``, checked here the same way whichever path it took.
"""

from __future__ import annotations

__all__ = [
    "BATCH_DUPLICATE",
    "WRONG_LAST_SEQUENCE",
    "WRONG_LAST_SEQUENCE_CONSTANT",
    "is_wrong_last_sequence",
    "sequence_in",
]

WRONG_LAST_SEQUENCE = 10071
"""``wrong last sequence: <n>``: an expected-last-sequence header did not hold (``n`` is the
sequence the subject is actually at)."""
WRONG_LAST_SEQUENCE_CONSTANT = 10164
"""``wrong last sequence``: the same refusal where the server cannot name the sequence yet (an
atomic batch, a subject with an expectation in flight)."""
BATCH_DUPLICATE = 10201
"""An atomic batch holds a message id the stream already has; nothing of the batch was stored."""

_WRONG_LAST_SEQUENCE_CODES = frozenset({WRONG_LAST_SEQUENCE, WRONG_LAST_SEQUENCE_CONSTANT})


def is_wrong_last_sequence(err_code: int | None) -> bool:
    """Whether a refusal means an expected last sequence did not hold (a lost compare-and-set)."""
    return err_code in _WRONG_LAST_SEQUENCE_CODES


def sequence_in(description: str | None) -> int | None:
    """The sequence a ``wrong last sequence: <n>`` description names, ``None`` if it names none."""
    if not description:
        return None
    tail = description.rsplit(":", 1)[-1].strip()
    return int(tail) if tail.isdigit() else None
