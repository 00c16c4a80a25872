"""An event is believed only on its own subject."""

from __future__ import annotations

import json

import pytest

from eventstore.codec import decode_event, encode_event
from eventstore.errors import EventDecodeError
from eventstore.events import ActionCompleted
from eventstore.records import RawRecord
from eventstore.subjects import subject_for


def test_an_event_decodes_on_its_own_subject() -> None:
    event = ActionCompleted(execution_id="e1", action_id="a", attempt=1, output={})

    record = RawRecord(7, subject_for(event), encode_event(event)).decode()

    assert (record.sequence, record.event) == (7, event)


@pytest.mark.parametrize(
    "subject",
    ["action.completed.e2.a", "action.completed.e1.b", "action.failed.e1.a", "plan.submitted.e1"],
)
def test_an_event_on_another_events_subject_is_not_believed(subject: str) -> None:
    event = ActionCompleted(execution_id="e1", action_id="a", attempt=1, output={})

    with pytest.raises(EventDecodeError, match="on another event's subject"):
        RawRecord(7, subject, encode_event(event)).decode()


@pytest.mark.parametrize("missing", ["event_id", "occurred_at"])
def test_an_event_without_its_id_or_time_is_not_decoded(missing: str) -> None:
    fields = {
        "type": "action.completed",
        "execution_id": "e1",
        "action_id": "a",
        "attempt": 1,
        "output": {},
        "event_id": "ev1",
        "occurred_at": "2026-01-01T00:00:00.000000Z",
    }
    del fields[missing]

    with pytest.raises(EventDecodeError, match="required"):
        decode_event(json.dumps(fields).encode())
