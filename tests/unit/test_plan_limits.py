"""Plan limits: nesting depth, the size of the plan.submitted event, the range of every number."""

from __future__ import annotations

import inspect
import json
import math
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventstore.codec import decode_event, encode_event
from eventstore.config import TepSettings
from eventstore.errors import EventDecodeError, PlanValidationError, SettingsError
from eventstore.events import PlanSubmitted
from eventstore.plan import Action, Plan, RequestSpec, RetryPolicy
from eventstore.plan_validation import DEFAULT_PLAN_LIMITS, PlanLimits, parse_plan, plan_problems
from eventstore.plan_validation.limits import (
    HEADER_ROOM,
    LONGEST_EXECUTION_ID,
    document_problems,
)
from eventstore.subjects import plan_subject
from orchestrator.intake import admit_plan
from tep.cli.main import main as tep_main

UNLIMITED_SIZE = PlanLimits(max_actions=100_000, max_plan_bytes=10**8, max_event_bytes=10**8)


def problems_of(document: Any, limits: PlanLimits = DEFAULT_PLAN_LIMITS) -> list[str]:
    with pytest.raises(PlanValidationError) as caught:
        parse_plan(document, limits=limits)
    return caught.value.problems


def nested(depth: int, leaf: Any = 0) -> Any:
    """``depth`` arrays around ``leaf``, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_text(depth: int) -> str:
    return "[" * depth + "]" * depth


def plan_with(**fields: Any) -> dict[str, Any]:
    return {"id": "p", "actions": [{"id": "a", "type": "noop", **fields}]}


def http_actions(count: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": "p",
        "actions": [
            {"id": f"a{n:04d}", "request": {"url": "http://x/"}, **fields} for n in range(count)
        ],
    }


@contextmanager
def stack_room(frames: int) -> Iterator[None]:
    """Allow only ``frames`` more Python frames than are in use now."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


# --- nesting depth ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [100, 600, 950])
def test_deep_input_is_refused_naming_the_place_and_the_setting(depth: int) -> None:
    text = '{"id": "p", "input": {"x": ' + nested_text(depth) + '}, "actions": [{"id": "a"}]}'

    # Room for the decoder's recursion whatever the runner's own stack depth (a test worker's
    # is deeper): a document past the stack is named by line and column instead (below).
    with stack_room(depth + 200):
        problems = problems_of(text)

    assert problems == [
        "plan: input.x[0][0][0][0]...: nests arrays and objects over 64 levels deep "
        "(setting TEP_MAX_JSON_DEPTH)"
    ]


@pytest.mark.parametrize("depth", [1000, 5000, 200_000])
def test_too_deep_for_the_decoder_is_the_same_one_line_problem(depth: int) -> None:
    text = '{"id": "p",\n "input": ' + nested_text(depth) + ', "actions": []}'

    assert problems_of(text) == [
        "plan: at line 2, column 74: nests arrays and objects over 64 levels deep "
        "(setting TEP_MAX_JSON_DEPTH)"
    ]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"input": nested(80)}, 'actions[0] ("a"): input[0][0][0][0][0]...'),
        ({"request": {"url": "http://x/", "json": {"k": nested(80)}}},
         'actions[0] ("a"): request.json.k[0][0][0]...'),
        ({"when": {"path": "input.x", "equals": nested(80)}},
         'actions[0] ("a"): when.equals[0][0][0][0]...'),
        ({"when": {"path": "input.x", "in": [nested(80)]}},
         'actions[0] ("a"): when.in[0][0][0][0]...'),
    ],
)  # fmt: skip
def test_any_value_is_limited_and_named_by_its_action(fields: dict[str, Any], where: str) -> None:
    (problem,) = problems_of(plan_with(**fields))

    assert problem.startswith(f"{where}: nests arrays and objects over 64 levels deep")


def test_the_depth_limit_counts_the_document_as_level_one() -> None:
    # The document, "actions", the action: three levels before "input".
    at_limit = plan_with(input=nested(61))
    over_limit = plan_with(input=nested(62))

    assert parse_plan(at_limit).actions[0].input == nested(61)
    assert problems_of(over_limit) == [
        'actions[0] ("a"): input[0][0][0][0][0]...: nests arrays and objects over 64 levels '
        "deep (setting TEP_MAX_JSON_DEPTH)"
    ]
    assert parse_plan(over_limit, limits=PlanLimits(max_json_depth=65)).actions[0].input


@pytest.mark.parametrize("depth", [100, 5000])
def test_deep_objects_and_plans_built_in_code_are_refused_before_encoding(depth: int) -> None:
    document = plan_with(input=nested(depth))
    plan = Plan(id="p", actions=[Action(id="a", type="noop", input=nested(depth))])

    for given in (document, plan):
        (problem,) = problems_of(given)
        assert "TEP_MAX_JSON_DEPTH" in problem
    assert "TEP_MAX_JSON_DEPTH" in plan_problems(plan)[0]


def test_the_depth_walk_does_not_recurse() -> None:
    deep = {"input": nested(5000, leaf={"k": [1.5, "s", None, True]})}

    with stack_room(30):
        assert document_problems(deep, 10**6) == []
        assert "over 4000 levels" in document_problems(deep, 4000)[0]


def test_the_orchestrator_refuses_a_deep_plan_instead_of_failing_on_it() -> None:
    plan = '{"id": "p", "input": {"x": ' + nested_text(700) + '}, "actions": [{"id": "a"}]}'
    data = f'{{"type": "plan.submitted", "execution_id": "e1", "plan": {plan}}}'.encode()

    result = admit_plan(
        "plan.submitted.e1", data, limits=PlanLimits(max_actions=100, max_plan_bytes=100_000)
    )

    assert not isinstance(result, PlanSubmitted)
    assert "TEP_MAX_JSON_DEPTH" in result.error.message


def test_tep_validate_prints_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [name for name in os.environ if name.startswith("TEP_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "deep.json"
    path.write_text('{"id": "p", "input": ' + nested_text(100_000) + ', "actions": []}')

    assert tep_main(["validate", str(path)]) == 2

    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"tep: {path}: plan: at line 1, column 85: nests arrays and objects over 64 levels deep "
        "(setting TEP_MAX_JSON_DEPTH)"
    ]


def test_the_depth_setting_reaches_the_limits() -> None:
    assert TepSettings.from_env({"TEP_MAX_JSON_DEPTH": "10"}).plan_limits.max_json_depth == 10
    for bad in ("0", "257"):
        with pytest.raises(SettingsError, match="TEP_MAX_JSON_DEPTH"):
            TepSettings.from_env({"TEP_MAX_JSON_DEPTH": bad})


# --- events decode or fail with EventDecodeError ----------------------------------------------


@pytest.mark.parametrize("depth", [900, 5000, 200_000])
def test_deeply_nested_event_is_a_decode_error(depth: int) -> None:
    data = (
        b'{"type": "action.completed", "execution_id": "e", "action_id": "a", "attempt": 1, '
        b'"output": ' + nested_text(depth).encode() + b"}"
    )

    with stack_room(200), pytest.raises(EventDecodeError, match="undecodable event"):
        decode_event(data)


def test_garbage_bytes_only_ever_raise_event_decode_error() -> None:
    rng = random.Random(7)
    sample = encode_event(
        PlanSubmitted(execution_id="e", plan=parse_plan(plan_with(input={"x": [1, 2.5]})))
    )
    value_at = sample.index(b'"input":') + len(b'"input":')
    alphabet = b'{}[]",:0123456789.eE-+\\u truefalsnl\x00\xff\xc3\xa9\xed\xa0\x80'
    with stack_room(200):
        for _ in range(2000):
            decode_garbage(rng, sample, value_at, alphabet)


def decode_garbage(rng: random.Random, sample: bytes, value_at: int, alphabet: bytes) -> None:
    data = bytearray(sample)
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.3:  # deep nesting where any JSON value is allowed
            at = rng.randrange(value_at, value_at + 12)
            chunk = rng.choice([b"[", b'{"k":']) * rng.choice([300, 3000])
        else:
            at = rng.randrange(len(data))
            chunk = bytes([rng.choice(alphabet)]) * rng.choice([1, 2, 50])
        data[at:at] = chunk
    with suppress(EventDecodeError):
        decode_event(bytes(data))


# --- the plan.submitted event must fit one message --------------------------------------------


def event_bytes(plan: Plan) -> int:
    """What the size check counts: payload, subject and the room kept for headers."""
    payload = encode_event(PlanSubmitted(execution_id=LONGEST_EXECUTION_ID, plan=plan))
    return len(payload) + len(plan_subject(LONGEST_EXECUTION_ID)) + HEADER_ROOM


def test_a_plan_whose_event_exceeds_the_message_limit_is_refused() -> None:
    document = http_actions(9000)
    size = event_bytes(parse_plan(document, limits=UNLIMITED_SIZE))

    problems = problems_of(document, PlanLimits(max_actions=10_000))

    assert problems == [
        f"plan: its plan.submitted event is {size} bytes encoded (defaults filled in, "
        f"{HEADER_ROOM} bytes kept for headers), above the limit of 1048576 bytes for one "
        "message (setting TEP_MAX_MSG_BYTES)"
    ]
    assert len(json.dumps(document)) < DEFAULT_PLAN_LIMITS.max_plan_bytes


def test_the_event_limit_is_exact() -> None:
    document = http_actions(3)
    size = event_bytes(parse_plan(document))

    assert parse_plan(document, limits=PlanLimits(max_event_bytes=size))
    assert "TEP_MAX_MSG_BYTES" in problems_of(document, PlanLimits(max_event_bytes=size - 1))[0]
    built = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://x/"))])
    assert "TEP_MAX_MSG_BYTES" in problems_of(built, PlanLimits(max_event_bytes=1000))[0]


def test_the_default_action_limit_fits_the_default_message_limit() -> None:
    small = event_bytes(parse_plan(http_actions(1001), limits=UNLIMITED_SIZE))
    per_action = (small - event_bytes(parse_plan(http_actions(1)))) / 1000
    most = DEFAULT_PLAN_LIMITS.max_actions
    retry = {"retry": {"max_attempts": 3}}

    assert per_action < 300
    assert most * per_action < 0.75 * DEFAULT_PLAN_LIMITS.max_event_bytes
    assert len(parse_plan(http_actions(most, **retry)).actions) == most
    (problem,) = problems_of(http_actions(most + 1))
    assert "TEP_MAX_ACTIONS" in problem


def test_settings_take_their_defaults_from_the_plan_limits() -> None:
    settings = TepSettings.from_env({})

    smaller = TepSettings.from_env({"TEP_MAX_MSG_BYTES": "500000", "TEP_MAX_PLAN_BYTES": "400000"})

    assert settings.plan_limits == DEFAULT_PLAN_LIMITS
    assert smaller.plan_limits.max_event_bytes == 500_000


# --- every number has a range -----------------------------------------------------------------


def with_retry(**retry: Any) -> dict[str, Any]:
    return plan_with(retry=retry)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (plan_with(timeout_s=86_401),
         'action "a": timeout_s must be at most 86400 seconds (1 day) (got 86401.0)'),
        (plan_with(request={"url": "http://x/", "timeout_s": 1e300}),
         'action "a": request.timeout_s must be at most 86400 seconds (1 day) (got 1e+300)'),
        ({**plan_with(), "timeout_s": 366 * 86_400 + 1},
         "plan: timeout_s must be at most 31622400 seconds (366 days) (got 31622401.0)"),
        (with_retry(max_attempts=101),
         'action "a": retry.max_attempts must be at most 100 (got 101)'),
        (with_retry(backoff_factor=10.5),
         'action "a": retry.backoff_factor must be at most 10 (got 10.5)'),
        (with_retry(max_backoff_ms=86_400_001),
         'action "a": retry.max_backoff_ms must be at most 86400000 ms (1 day) (got 86400001)'),
        ({**plan_with(), "queues": {"noop": {"concurrency_limit": 10_001}}},
         "plan: queues.noop.concurrency_limit must be at most 10000 (got 10001)"),
        (plan_with(timeoutMs=86_400_001),
         'action "a": timeout_s must be at most 86400 seconds (1 day) (got 86400.001)'),
    ],
)  # fmt: skip
def test_numbers_above_their_range_are_refused(document: dict[str, Any], problem: str) -> None:
    assert problems_of(document) == [problem]


def test_a_backoff_beyond_a_day_is_refused() -> None:
    document = with_retry(max_attempts=3, min_backoff_ms=10**15, max_backoff_ms=10**16)

    assert problems_of(document) == [
        'action "a": retry.min_backoff_ms must be at most 86400000 ms (1 day) '
        "(got 1000000000000000)",
        'action "a": retry.max_backoff_ms must be at most 86400000 ms (1 day) '
        "(got 10000000000000000)",
    ]


def test_the_edges_of_every_range_are_accepted() -> None:
    document = {
        "id": "p",
        "timeout_s": 366 * 86_400,
        "queues": {"noop": {"concurrency_limit": 10_000}},
        "actions": [
            {
                "id": "a",
                "timeout_s": 86_400,
                "request": {"url": "http://x/", "timeout_s": 0.001},
                "retry": {
                    "max_attempts": 100,
                    "backoff_factor": 10,
                    "min_backoff_ms": 0,
                    "max_backoff_ms": 86_400_000,
                },
            },
            {"id": "b", "type": "noop", "retry": {"max_attempts": 1, "backoff_factor": 1}},
        ],
    }

    assert parse_plan(document).actions[0].retry == RetryPolicy(
        max_attempts=100, backoff_factor=10, min_backoff_ms=0, max_backoff_ms=86_400_000
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_anywhere(value: float) -> None:
    document = {**plan_with(input={"x": [1, value]}), "timeout_s": value}

    assert problems_of(document) == [
        f'actions[0] ("a"): input.x[1]: {value} is not a finite number (JSON has no NaN or '
        "Infinity)",
        f"plan: timeout_s: {value} is not a finite number (JSON has no NaN or Infinity)",
    ]


def test_non_finite_numbers_of_plans_built_in_code_are_refused() -> None:
    plan = Plan(
        id="p",
        timeout_s=math.nan,
        actions=[Action(id="a", type="noop", retry=RetryPolicy(backoff_factor=math.inf))],
    )

    expected = [
        'actions[0] ("a"): retry.backoff_factor: inf is not a finite number (JSON has no NaN or '
        "Infinity)",
        "plan: timeout_s: nan is not a finite number (JSON has no NaN or Infinity)",
    ]
    assert problems_of(plan) == expected
    assert plan_problems(plan) == expected


def test_json_numbers_out_of_float_range_are_malformed() -> None:
    (problem,) = problems_of('{"id": "p", "timeout_s": 1e999, "actions": [{"id": "a"}]}')

    assert problem.startswith("malformed JSON")
    assert msgspec.json.decode(b"1.5e308") == 1.5e308


def test_a_foreign_plan_too_deep_to_decode_is_rejected_not_retried() -> None:
    deep = "[" * 5_000 + "]" * 5_000
    data = (
        '{"type": "plan.submitted", "execution_id": "e1", "plan": {"id": "p", "input": {"x": '
        + deep
        + '}, "actions": []}}'
    ).encode()

    result = admit_plan("plan.submitted.e1", data, limits=PlanLimits())

    assert not isinstance(result, PlanSubmitted)
    assert result.error.code == "invalid_plan"
    assert "deep" in result.error.message
