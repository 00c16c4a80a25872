"""Waits as readers see them: the ``waiting`` index of the view, the terminal displays, the
token a resume by token starts from, and when a wait's timer is due. Pure."""

from __future__ import annotations

import pytest
from support.wait_histories import STAGES, UNTIL, Stage, token_of, wait_history

from eventstore import headers
from eventstore.codec import encode_event
from eventstore.events import ActionResumeRequested, ActionWaiting, Event
from eventstore.fold import fold
from eventstore.records import RawRecord, RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import subject_for
from orchestrator.timers import wait_timer_message
from projections.view import (
    decode_summary,
    encode_summary,
    index_filter,
    index_key,
    summaries_of,
    summary_of,
    waits_for_person,
)
from projections.view_batch import CachedState, fold_range, next_range, state_writes
from projections.waitpoints import token_ids
from tep.cli.event_lines import describe_event, snapshot, transitions
from tep.cli.execution_views import state_table, wait_note

WAITING_KEY = index_key("waiting", "approval", "e")


def recorded(events: list[Event]) -> list[RecordedEvent]:
    return [RecordedEvent(n, subject_for(e), e) for n, e in enumerate(events, start=1)]


def state_at(stage: Stage, execution_id: str = "e") -> ExecutionState:
    state = fold(recorded(wait_history(execution_id, stage)))
    assert state is not None
    return state


def writes_between(events: list[Event], split: int) -> tuple[dict[str, bool], dict[str, bool]]:
    """The index writes of a view that took ``events[:split]`` in one batch and the rest in
    another: per key, ``True`` for a put and ``False`` for a delete."""
    raws = [RawRecord(n, subject_for(e), encode_event(e)) for n, e in enumerate(events, start=1)]
    batches: list[dict[str, bool]] = []
    cached: dict[str, CachedState | None] = {}
    for part in (raws[:split], raws[split:]):
        _, batch = next_range(part, 0, {})
        folded = fold_range(batch, cached)
        writes, _ = state_writes(folded.touched, 1 << 20)
        batches.append({w.key: not w.delete for w in writes if w.key.startswith("idx.")})
        for execution_id, entry in folded.touched.items():
            assert entry.state is not None
            cached[execution_id] = CachedState(entry.state, 1, 0)
    return batches[0], batches[1]


# ------------------------------------------------------------------------- the index


@pytest.mark.parametrize(
    ("stage", "waiting"),
    [
        ("waiting", True),
        ("refused", True),
        ("resumed", False),
        ("completed", False),
        ("timed_out", False),
    ],
)
def test_an_execution_waits_for_a_person_while_a_waitpoint_waits_unresumed(
    stage: Stage, waiting: bool
) -> None:
    assert waits_for_person(state_at(stage)) is waiting


def test_only_a_sleep_waiting_is_not_waiting_for_a_person() -> None:
    state = state_at("completed")
    nap = state.actions["nap"]
    nap.status = "waiting"
    assert waits_for_person(state) is False


def test_the_waiting_entry_is_written_when_a_waitpoint_starts_waiting() -> None:
    events = wait_history("e", "completed")
    first, _ = writes_between(events, 2)  # plan.submitted and approve's action.waiting
    assert first[WAITING_KEY] is True
    assert first[index_key("running", "approval", "e")] is True


def test_the_waiting_entry_is_removed_once_the_waitpoint_is_resumed() -> None:
    events = wait_history("e", "resumed")
    before, after = writes_between(events, len(events) - 1)
    assert before[WAITING_KEY] is True
    assert after == {WAITING_KEY: False}


def test_a_refused_resume_leaves_the_waiting_entry_alone() -> None:
    events = wait_history("e", "refused")
    _, after = writes_between(events, len(events) - 1)
    assert after == {}


def test_the_waiting_entry_goes_when_the_execution_ends_by_timeout() -> None:
    events = wait_history("e", "timed_out")
    _, after = writes_between(events, 3)
    assert after[WAITING_KEY] is False
    assert after[index_key("failed", "approval", "e")] is True


def test_one_batch_from_start_to_end_never_writes_the_waiting_entry() -> None:
    # What a rebuild does with an execution that no longer waits: nothing to leave behind.
    events = wait_history("e", "completed")
    everything, _ = writes_between(events, len(events))
    assert WAITING_KEY not in everything


def test_listings_show_each_execution_once_and_waiting_ones_on_request() -> None:
    waiting = state_at("waiting", "w")
    done = state_at("completed", "d")
    entries = {
        index_key("running", "approval", "w"): encode_summary(summary_of(waiting)),
        index_key("waiting", "approval", "w"): encode_summary(summary_of(waiting)),
        index_key("completed", "approval", "d"): encode_summary(summary_of(done)),
    }
    # What the server matches with the waiting pattern:
    waiting_entries = {k: v for k, v in entries.items() if k.startswith("idx.waiting.")}
    every = summaries_of(entries, index_filter())
    of_plan = summaries_of(entries, index_filter(plan_id="approval"))
    only_waiting = summaries_of(waiting_entries, index_filter("waiting"))

    assert sorted(s.execution_id for s in every) == ["d", "w"]
    assert sorted(s.execution_id for s in of_plan) == ["d", "w"]
    assert [(s.execution_id, s.status) for s in only_waiting] == [("w", "running")]
    assert decode_summary(entries[index_key("waiting", "approval", "w")]).status == "running"


# ------------------------------------------------------------------------- the displays


def test_a_waiting_waitpoint_says_until_when_and_how_to_resume_it() -> None:
    state = state_at("waiting")
    note = wait_note("e", state.actions["approve"])
    assert note == f"waitpoint until {UNTIL} (resume: tep resume e approve --data JSON)"
    assert wait_note("e", state.actions["nap"]) == f"sleeping until {UNTIL}"
    table = "\n".join(state_table(state))
    assert "~ approve  waiting" in table and f"waitpoint until {UNTIL}" in table
    assert f"sleeping until {UNTIL}" in table


def test_the_last_refused_resume_is_shown_with_its_reason() -> None:
    note = wait_note("e", state_at("refused").actions["approve"])
    assert note.endswith(
        "; last resume refused: the data does not match the waitpoint's schema: "
        "data.approved: 'yes' is not of type 'boolean'"
    )


def test_an_accepted_resume_shows_who_and_that_the_outcome_is_pending() -> None:
    assert wait_note("e", state_at("resumed").actions["approve"]) == (
        "resumed by ana; outcome pending"
    )
    assert wait_note("e", state_at("completed").actions["approve"]) == ""


def test_watch_lines_say_whether_each_resume_was_accepted_or_refused() -> None:
    records = recorded(wait_history("e", "resumed"))
    lines: list[str] = []
    state: ExecutionState | None = None
    status = "pending"
    for record in records:
        before = snapshot(state)
        state = fold(records[: record.sequence])
        assert state is not None
        lines += transitions(before, state, record, status)
        status = state.status
    assert any(
        line.endswith(
            f"approve waiting (waitpoint until {UNTIL} (resume: tep resume e approve --data JSON))"
        )
        for line in lines
    ), lines
    assert any("approve resume refused: the data does not match" in line for line in lines)
    assert any(line.endswith("approve resume accepted by ana") for line in lines)


def test_the_timeline_describes_waits_without_the_token() -> None:
    events = wait_history("e", "completed")
    details = [describe_event(e) for e in events]
    assert f"waitpoint until {UNTIL}" in details
    assert "resume with data by ana" in details
    assert f"wake due {UNTIL}" in details
    assert not any(token_of("e") in d for d in details)
    reject = ActionResumeRequested(execution_id="e", action_id="approve", reject="no", token="t")
    assert describe_event(reject) == "reject: no (with the token)"


# ------------------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    ("token", "ids"),
    [
        ("exe_1.approve.abc-_DEF", ("exe_1", "approve")),
        ("exe_1.approve", None),
        ("exe_1.approve.abc.def", None),
        ("exe_1..abc", None),
        ("bad id.approve.abc", None),
        ("", None),
    ],
)
def test_a_token_names_its_execution_and_action(token: str, ids: tuple[str, str] | None) -> None:
    assert token_ids(token) == ids


def test_every_stage_folds() -> None:
    for stage in STAGES:
        assert state_at(stage).inconsistent == []


# ------------------------------------------------------------------------- timers


@pytest.mark.parametrize(
    ("until", "stamp"),
    [
        ("2030-01-01T00:00:00.000000Z", "@at 2030-01-01T00:00:00.000Z"),
        ("2030-01-01T00:00:00.000001Z", "@at 2030-01-01T00:00:00.001Z"),
        ("2030-01-01T00:00:59.999500Z", "@at 2030-01-01T00:01:00.000Z"),
    ],
)
def test_a_wait_timer_is_never_due_before_its_until(until: str, stamp: str) -> None:
    waiting = ActionWaiting(execution_id="e", action_id="nap", reason="sleep", until=until)
    message = wait_timer_message(waiting)
    assert message is not None
    assert message[2][headers.SCHEDULE] == stamp
