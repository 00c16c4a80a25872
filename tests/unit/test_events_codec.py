"""Every event type survives encode/decode; anything else is an EventDecodeError."""

from __future__ import annotations

import json

import msgspec
import pytest
from event_samples import ONE_OF_EACH

from eventstore.codec import decode_event, encode_event
from eventstore.errors import EventDecodeError
from eventstore.events import EVENT_TYPES, Event


def test_the_sample_covers_every_event_type() -> None:
    assert sorted(type(event).__struct_config__.tag for event in ONE_OF_EACH) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda e: type(e).__struct_config__.tag)
def test_every_event_type_round_trips(event: Event) -> None:
    data = encode_event(event)

    decoded = decode_event(data)

    assert decoded == event
    assert type(decoded) is type(event)
    assert json.loads(data)["type"] == type(event).__struct_config__.tag


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda e: type(e).__struct_config__.tag)
def test_encoded_events_are_plain_json(event: Event) -> None:
    document = json.loads(encode_event(event))

    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert document["execution_id"] == "exec-1"
    assert isinstance(document["occurred_at"], str)
    assert document["occurred_at"].endswith("Z")


def test_condition_in_operator_is_encoded_as_in() -> None:
    data = encode_event(ONE_OF_EACH[0])

    when = json.loads(data)["plan"]["actions"][1]["when"]

    assert when == {"path": "actions.fetch.output.tier", "in": ["gold", "premium"]}


def test_unknown_event_type_is_a_decode_error() -> None:
    with pytest.raises(EventDecodeError, match="undecodable event"):
        decode_event(b'{"type": "action.teleported", "execution_id": "e"}')


def test_missing_type_is_a_decode_error() -> None:
    with pytest.raises(EventDecodeError):
        decode_event(b'{"execution_id": "e"}')


@pytest.mark.parametrize("data", [b"", b"{", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_malformed_bytes_are_a_decode_error(data: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(data)


@pytest.mark.parametrize(
    "document",
    [
        {"type": "action.started", "execution_id": "e", "action_id": "a", "attempt": "one"},
        {"type": "action.started", "execution_id": 7, "action_id": "a", "attempt": 1},
        {"type": "action.started", "execution_id": "e", "attempt": 1},
        {"type": "action.skipped", "execution_id": "e", "action_id": "a", "reason": "bored"},
        {"type": "action.completed", "execution_id": "e", "action_id": "a", "attempt": 1,
         "output": [1, 2]},
        {"type": "execution.failed", "execution_id": "e", "error": {"message": "m"}},
    ],
)  # fmt: skip
def test_wrong_field_types_are_a_decode_error(document: dict[str, object]) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(json.dumps(document).encode())


def test_decode_error_keeps_the_cause() -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode_event(b"{")

    assert isinstance(caught.value.__cause__, msgspec.DecodeError)
