"""Fuzzing with hypothesis: hostile plan documents, and hostile payloads published raw onto every
subject the roles consume.

Plan documents (random JSON of any shape, plan-shaped documents with wrong-typed and
out-of-range fields, deep nesting, raw bytes) go into ``parse_plan`` and into ``tep validate``
through ``main()``: a plan or :class:`PlanValidationError`, exit code 0 or 2, never a traceback.

Payloads (random bytes, event-shaped JSON with wrong types, deep, huge) are published with
nats-py on ``plan.submitted.<e>``, ``action.completed.<e>.<a>``, ``action.failed.<e>.<a>``,
``execution.cancel.requested.<e>`` and ``action.execute.requested.http.<e>.<a>`` against a
running system. Afterwards no role crashed or is stuck (every health endpoint answers 200, no
consumer holds or redelivers anything, the view reached the end of the log, a normal plan still
completes) and every undecodable message is in ``TEP_DEADLETTER``, put there by each role that
consumes its subject (the orchestrator fails an execution whose ``plan.submitted`` is
undecodable instead, and ignores a second one for an execution that exists).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from matrix_support import (
    FaultReport,
    MatrixSystem,
    MatrixTarget,
    check_execution,
    eventually,
    fault_seed,
    matrix_system,
    mixed_plan,
    timed_history,
    view_problem,
)
from roles_support import dead_letters

from eventstore import headers as h
from eventstore.codec import decode_event
from eventstore.errors import EventDecodeError, PlanValidationError
from eventstore.events import ExecutionFailed
from eventstore.jetstream.partition_status import partition_backlogs
from eventstore.jetstream.queues import consumer_name
from eventstore.partitions import partition_stream
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.plan_validation import parse_plan
from tep.cli.main import main

SEED = fault_seed()
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------ strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)
numbers = st.sampled_from([0, -1, 1, 1e15, 1e308, -1e308, 2**63, 0.5]) | st.integers()


def deep(depth: int, kind: str = "{") -> str:
    """JSON nested ``depth`` levels of objects or arrays around a 1."""
    if kind == "{":
        return '{"k":' * depth + "1" + "}" * depth
    return "[" * depth + "1" + "]" * depth


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return values | json_values


actions = st.fixed_dictionaries(
    {},
    optional={
        "id": _maybe(st.sampled_from(["a", "b", "", "x" * 200, "a b", "failed"])),
        "type": _maybe(st.sampled_from(["http", "noop", "crash", ""])),
        "depends_on": _maybe(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)),
        "queue": _maybe(st.sampled_from(["http", "", "q!"])),
        "request": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "url": _maybe(st.sampled_from(["http://127.0.0.1:1/x", "ftp://x", "", "x"])),
                    "method": _maybe(st.sampled_from(["GET", "POST", "BREW"])),
                    "headers": json_values,
                    "query": json_values,
                    "json": json_values,
                    "timeout_s": _maybe(numbers),
                },
            )
        ),
        "timeout_s": _maybe(numbers),
        "retry": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    k: _maybe(numbers)
                    for k in ("max_attempts", "backoff_factor", "min_backoff_ms", "max_backoff_ms")
                },
            )
        ),
        "when": _maybe(st.fixed_dictionaries({"path": _maybe(st.text(max_size=20))})),
        "continue_on_error": json_values,
    },
)
plan_shaped = st.fixed_dictionaries(
    {},
    optional={
        "id": _maybe(st.sampled_from(["p", "", "p" * 300])),
        "actions": _maybe(st.lists(actions, max_size=4)),
        "input": json_values,
        "timeout_s": _maybe(numbers),
        "queues": _maybe(
            st.dictionaries(
                st.sampled_from(["http", "x"]),
                st.fixed_dictionaries({"concurrency_limit": _maybe(numbers)}),
                max_size=2,
            )
        ),
        "description": json_values,
    },
)
deep_documents = st.builds(
    lambda depth, kind, where: (
        f'{{"id":"p","actions":[{{"id":"a","type":"noop","input":{deep(depth, kind)}}}]}}'
        if where
        else deep(depth, kind)
    ),
    st.integers(min_value=50, max_value=3000),
    st.sampled_from(["{", "["]),
    st.booleans(),
)
plan_documents = (
    plan_shaped.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda d: json.dumps(d).encode())
    | deep_documents.map(str.encode)
    | st.binary(max_size=200)
    | plan_shaped
)

EVENT_TYPES = [
    "plan.submitted",
    "action.completed",
    "action.failed",
    "execution.cancel.requested",
    "action.execute.requested",
    "action.started",
    "no.such.type",
]
SUBJECTS = {
    "plan": "plan.submitted.{e}",
    "completed": "action.completed.{e}.{a}",
    "failed": "action.failed.{e}.{a}",
    "cancel": "execution.cancel.requested.{e}",
    "request": "action.execute.requested.http.{e}.{a}",
}
# "EXEC" and "ACT" are replaced by the ids of the subject a payload is published on.
event_shaped = st.fixed_dictionaries(
    {"type": _maybe(st.sampled_from(EVENT_TYPES))},
    optional={
        "execution_id": _maybe(st.just("EXEC")),
        "action_id": _maybe(st.just("ACT")),
        **{
            name: json_values
            for name in (
                "attempt",
                "output",
                "error",
                "plan",
                "reason",
                "queue",
                "action_type",
                "request",
                "event_id",
                "schema_version",
            )
        },
    },
)
payloads = (
    st.binary(max_size=300)
    | event_shaped.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda d: json.dumps(d).encode())
    | st.builds(
        lambda depth, kind: (
            f'{{"type":"action.completed","execution_id":"EXEC","action_id":"ACT","attempt":1,'
            f'"output":{deep(depth, kind)}}}'
        ).encode(),
        st.integers(min_value=100, max_value=3000),
        st.sampled_from(["{", "["]),
    )
)


def collect(strategy: st.SearchStrategy[Any], examples: int) -> list[Any]:
    """``examples`` values of ``strategy``, drawn the way a hypothesis test draws them."""
    found: list[Any] = []

    @seed(SEED)
    @settings(FUZZ, max_examples=examples)
    @given(strategy)
    def draw(value: Any) -> None:
        found.append(value)

    draw()
    return found


# ------------------------------------------------------------------------------ plan documents


@FUZZ
@given(plan_documents)
def test_parse_plan_answers_a_plan_or_plan_validation_error(document: Any) -> None:
    try:
        parse_plan(document)
    except PlanValidationError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@pytest.fixture(scope="module")
def plan_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-plans")


@FUZZ
@given(plan_documents)
def test_tep_validate_exits_0_or_2_and_never_with_a_traceback(
    plan_files: Path, document: Any
) -> None:
    raw = json.dumps(document).encode() if isinstance(document, dict) else document
    path = plan_files / f"{uuid.uuid4().hex}.json"
    path.write_bytes(raw)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    try:
        parse_plan(raw)
        valid = True
    except PlanValidationError:
        valid = False
    assert code == (0 if valid else 2), err.getvalue()[-2000:]
    assert "Traceback" not in err.getvalue()
    if not valid:
        assert err.getvalue().startswith("tep: "), err.getvalue()[-2000:]


# ------------------------------------------------------------------------------ raw payloads


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultReport]:
    figures = FaultReport("fuzz", SEED)
    yield figures
    path = figures.write(tmp_path_factory.getbasetemp())
    print(f"\n{figures.summary()}\nfigures: {path}")


@pytest.fixture(scope="module")
async def ms(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MatrixSystem]:
    async with (
        MatrixTarget() as target,
        matrix_system(
            tmp_path_factory.mktemp("fuzz"), target, orchestrators=1, executors=1
        ) as running,
    ):
        yield running


def decodes(data: bytes) -> bool:
    """Whether the bytes are an event at all (the codec may raise nothing else)."""
    try:
        decode_event(data)
    except EventDecodeError:
        return False
    return True


def consumers_of(subject: str) -> set[str]:
    """The roles that must dead-letter an undecodable message on ``subject``."""
    if subject.startswith("action.execute.requested."):
        return {"executor", "projector"}
    if subject.startswith("plan.submitted."):
        return {"projector"}  # the orchestrator fails the execution instead
    return {"orchestrator", "projector"}


async def quiet(ms: MatrixSystem, consumer: str) -> bool:
    """Whether a consumer of the log holds nothing unacked and has nothing left to deliver."""
    info = await ms.log.js.consumer_info(ms.log.stream, consumer)
    return not info.num_ack_pending and not info.num_pending


async def orchestrators_quiet(ms: MatrixSystem) -> bool:
    """Whether every partition's consumer holds nothing unacked and has nothing left, with
    the whole log routed into the partitions."""
    sources = (await ms.log.js.stream_info(partition_stream(ms.log.stream))).sources or []
    if any(source.lag for source in sources):
        return False
    backlogs = await partition_backlogs(ms.log.js, ms.fs.settings)
    return all(not b.pending and not b.ack_pending for b in backlogs.values())


@pytest.mark.anyio
async def test_hostile_payloads_on_every_consumed_subject_stop_nothing(
    ms: MatrixSystem, report: FaultReport
) -> None:
    nc = ms.system.nc
    rng = random.Random(SEED)
    big = nc.max_payload - 512
    special = [
        b"\xff\xfe" + rng.randbytes(2000),
        b'{"type":"action.completed","output":"' + b"x" * big + b'"}',
        rng.randbytes(big),
        deep(5000).encode(),
        b'{"type":"plan.submitted","execution_id":7,"plan":[]}',
        b'{"type":"action.failed","execution_id":"EXEC","action_id":"ACT","attempt":"one"}',
        b"null",
        b"",
    ]
    # A live execution whose actions are running while its subjects get hostile payloads.
    live = ms.system.new_id("fz-live")
    live_plan = Plan(
        id="fz-live",
        actions=[
            Action(
                id=f"a{n}",
                request=RequestSpec(
                    url=ms.target.url(f"/slow/{live}/a{n}"), query={"delay": "2"}, timeout_s=30
                ),
            )
            for n in range(4)
        ],
    )
    await ms.system.submit(live, live_plan)
    await eventually(lambda: ms.target.called(live) == 4, 20, "the live plan never ran", 0.02)

    # A well-formed outcome as anyone could publish it: no event id, no time (the codec's
    # defaults fill them in).
    forged = {"type": "action.completed", "execution_id": live, "action_id": "a3"}
    forged |= {"attempt": 1, "output": {}}
    await ms.log.js.publish(f"action.completed.{live}.a3", json.dumps(forged).encode())

    # Hypothesis' payloads go round the subjects, every third onto the live execution's; each
    # special one goes onto every subject.
    drawn = collect(payloads, 45)
    sent = [(list(SUBJECTS)[n % len(SUBJECTS)], n % 3 == 0, data) for n, data in enumerate(drawn)]
    sent += [(kind, False, data) for data in special for kind in SUBJECTS]
    published: list[tuple[int, str, bytes]] = []
    for n, (kind, onto_live, payload) in enumerate(sent):
        e, a = (live, f"a{n % 4}") if onto_live else (f"fz{n}-{uuid.uuid4().hex[:6]}", "a")
        subject = SUBJECTS[kind].format(e=e, a=a)
        data = payload.replace(b'"EXEC"', f'"{e}"'.encode()).replace(b'"ACT"', f'"{a}"'.encode())
        ack = await ms.log.js.publish(subject, data)
        published.append((int(ack.seq), subject, data))
    last = published[-1][0]

    # Nothing held or redelivered for ever, the view at the end of the log.
    await eventually(lambda: orchestrators_quiet(ms), 60, "the orchestrators never went quiet", 0.1)
    consumer = consumer_name("http")
    await eventually(lambda: quiet(ms, consumer), 60, f"{consumer} never went quiet", 0.1)
    await eventually(
        lambda: _at_least(ms.view_checkpoint(), last), 60, "the view never reached the end", 0.1
    )

    poison = [(seq, subject) for seq, subject, data in published if not decodes(data)]

    async def letters() -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        for letter in await dead_letters(nc, ms.fs.settings):
            headers = letter.headers or {}
            sequence = int(headers.get(h.DEADLETTER_SEQUENCE, 0))
            found.setdefault(sequence, set()).add(str(letter.subject).split(".")[2])
        return found

    async def missing() -> dict[int, Any]:
        found = await letters()
        gaps = {}
        for sequence, subject in poison:
            wanted = consumers_of(subject) - found.get(sequence, set())
            execution_id = subject.split(".")[2]
            if (
                subject.startswith("plan.submitted.")
                and execution_id != live  # a second plan.submitted: no role acts on it
                and "orchestrator" not in found.get(sequence, set())
            ):
                end = await ms.system.end_of(execution_id)
                if not isinstance(end, ExecutionFailed):
                    wanted.add("orchestrator (or execution.failed)")
            if wanted:
                gaps[sequence] = (subject, sorted(wanted))
        return gaps

    with contextlib.suppress(AssertionError):
        await eventually(lambda: _empty(missing()), 30, "dead letters missing", 0.2)
    gaps = await missing()
    # The live execution ended, whatever was forged onto it, and the view believes of it
    # exactly what a fresh fold of its history does.
    with contextlib.suppress(AssertionError):
        await ms.system.wait_end(live, timeout=30)
    live_end = await ms.system.end_of(live)
    live_view = await view_problem(ms, live, await ms.log.last_sequence()) if live_end else None
    history = await timed_history(ms.log, live)
    onto_live = {seq: subject for seq, subject, _ in published if f".{live}" in subject}
    live_timeline = [
        f"{t.sequence} {t.stored_at - history[0].stored_at:+.3f}s "
        f"{t.event.__struct_config__.tag} {getattr(t.event, 'action_id', '')}"
        for t in history
    ] + [f"{seq} forged onto {subject}" for seq, subject in onto_live.items()]
    live_timeline.sort(key=_seq)
    await ms.all_healthy(timeout=10)
    e = ms.system.new_id("after-fuzz")
    plan = mixed_plan(ms.target, e, 10, random.Random(SEED))
    await ms.system.submit(e, plan)
    check, _ = await check_execution(ms, e, plan, duplicates_allowed=set(), timeout=30)
    report.add(
        "raw payloads",
        check,
        published=len(published),
        undecodable=len(poison),
        dead_letters=sum(len(v) for v in (await letters()).values()),
        not_dead_lettered={str(k): v for k, v in gaps.items()},
        live_end=type(live_end).__name__ if live_end else None,
        live_view=live_view,
        live_timeline=None if live_end and not live_view else live_timeline,
    )

    assert gaps == {}, f"undecodable messages not dead-lettered by their consumers: {gaps}"
    assert live_end is not None, f"the live execution never ended: {live_timeline}"
    assert live_view is None, live_view
    assert check.problems == [], "\n".join(check.problems)


def _seq(line: str) -> int:
    return int(line.split()[0])


async def _at_least(value: Any, floor: int) -> bool:
    return bool(await value >= floor)


async def _empty(value: Any) -> bool:
    return not await value
