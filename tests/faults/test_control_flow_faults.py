"""Forged and oversized input against the control-flow features (for-each, retry, sub-plans,
values stored by reference), with the roles running as `tep` processes: what a client (or
anyone on an unauthenticated server) publishes raw onto the real subjects is refused or
ignored, nothing wedges, nothing retries forever, and every other execution goes on.

One system (nats-server, an orchestrator, an executor, a projector) serves the module; each
test has executions of its own and ends by running a normal plan to its end.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from roles_support import FaultSystem, eventually, fault_system
from support.http_target import HttpTarget
from tep_cli import run_tep, write_plan

from eventstore.codec import encode_event
from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCompleted,
    ActionItemsStarted,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRetried,
    ParentLink,
    PlanSubmitted,
)
from eventstore.fold import fold
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.state import ExecutionState
from orchestrator.subplans import child_execution_id
from projections import StateManager

pytestmark = pytest.mark.anyio

_MISSING_REF = {"$ref": {"digest": "sha256:" + "0" * 64, "size": 300_000}}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def fs(
    tmp_path_factory: pytest.TempPathFactory, target: HttpTarget
) -> AsyncIterator[FaultSystem]:
    async with fault_system(tmp_path_factory.mktemp("control-flow"), target) as running:
        yield running


def echo(target: HttpTarget, e: str, action_id: str, *deps: str, **fields: Any) -> Action:
    spec = RequestSpec(url=target.url(f"/echo/{e}/{action_id}"), method="POST", json={"a": 1})
    return Action(id=action_id, depends_on=list(deps), request=spec, **fields)


def slow(target: HttpTarget, e: str, action_id: str, delay: float = 2.0) -> Action:
    spec = RequestSpec(url=target.url(f"/slow/{e}/{action_id}"), query={"delay": str(delay)})
    return Action(id=action_id, request=spec)


async def publish(fs: FaultSystem, subject: str, payload: bytes) -> int:
    """Store ``payload`` on ``subject`` as any client could (no headers, no guard)."""
    ack = await fs.system.log.js.publish(subject, payload)
    return int(ack.seq)


async def folded(fs: FaultSystem, e: str) -> ExecutionState:
    state = fold(await fs.system.log.read_execution(e))
    assert state is not None, e
    return state


async def viewed_equals_fold(fs: FaultSystem, e: str) -> ExecutionState:
    """The view's state of the ended ``e`` (once it applied everything in the log), which must
    equal a fresh fold of the log."""
    end = await fs.system.sequence_of(f"execution.*.{e}")
    assert end is not None
    # Everything published so far (late forgeries after the end too) must be in the view
    # before it is compared with a fold of the whole log.
    last = await fs.system.log.last_sequence()
    async with await StateManager.connect(settings=fs.settings) as sm:
        view = await sm.get_execution_state(e, min_sequence=max(end, last), timeout=20)
    state = await folded(fs, e)
    assert view is not None
    left = msgspec.to_builtins(msgspec.structs.replace(view, plan=None))
    right = msgspec.to_builtins(msgspec.structs.replace(state, plan=None))
    assert left == right
    return state


async def a_plan_still_runs(fs: FaultSystem, target: HttpTarget, name: str) -> None:
    e = fs.system.new_id(name)
    plan = Plan(id=name, actions=[echo(target, e, "a"), echo(target, e, "b", "a")])
    await fs.system.submit(e, plan)
    assert isinstance(await fs.system.wait_end(e, timeout=30), ExecutionCompleted)


def refused(state: ExecutionState) -> dict[int, str]:
    return {i.sequence: i.reason for i in state.inconsistent}


# ------------------------------------------------------------------------------ for-each


async def test_forged_items_events_are_refused_and_the_for_each_runs_as_planned(
    fs: FaultSystem, target: HttpTarget
) -> None:
    e = fs.system.new_id("items")
    plan = Plan(
        id="items",
        actions=[
            slow(target, e, "gate"),
            echo(target, e, "each", "gate", for_each=[1, 2, 3], concurrency=2),
            echo(target, e, "plain", "gate"),
        ],
    )
    await fs.system.submit(e, plan)
    await eventually(lambda: fs.system.hits_per_action(e)["gate"], 10, "gate never called")

    def started(key: str, count: int, concurrency: int = 2) -> bytes:
        return encode_event(
            ActionItemsStarted(execution_id=e, action_id=key, count=count, concurrency=concurrency)
        )

    forged = {
        "huge": await publish(fs, f"action.items.started.{e}.each", started("each", 10**9)),
        "negative": await publish(fs, f"action.items.started.{e}.each", started("each", -1)),
        "no concurrency": await publish(
            fs, f"action.items.started.{e}.each", started("each", 3, 0)
        ),
    }
    await publish(fs, f"action.items.started.{e}.ghost", started("ghost", 3))
    for key in ("plain@3", "each@7", "each@-1"):
        done = ActionCompleted(execution_id=e, action_id=key, attempt=1, output={"forged": 1})
        await publish(fs, f"action.completed.{e}.{key}", encode_event(done))

    end = await fs.system.wait_end(e, timeout=30)
    assert isinstance(end, ExecutionCompleted), end
    late = ActionCompleted(execution_id=e, action_id="each@1", attempt=1, output={"forged": 1})
    await publish(fs, f"action.completed.{e}.each@1", encode_event(late))
    state = await viewed_equals_fold(fs, e)
    reasons = refused(state)
    assert set(forged.values()) <= set(reasons), reasons
    assert "10000" in reasons[forged["huge"]]
    each = state.actions["each"]
    assert each.items is not None and each.items.count == 3
    assert [x["json"] for x in each.output["items"]] == [{"a": 1}] * 3  # type: ignore[index]
    assert state.actions["plain"].items is None
    assert state.actions["plain"].output["json"] == {"a": 1}  # type: ignore[index]
    hits = fs.system.hits_per_action(e)
    assert hits == {"gate": 1, "plain": 1, "each@0": 1, "each@1": 1, "each@2": 1}
    await a_plan_still_runs(fs, target, "after-items")


# ------------------------------------------------------------------------------- retries


async def test_forged_retries_are_refused_and_run_nothing_again(
    fs: FaultSystem, target: HttpTarget
) -> None:
    e = fs.system.new_id("retries")
    plan = Plan(id="retries", actions=[slow(target, e, "a", 1.5), echo(target, e, "b", "a")])
    await fs.system.submit(e, plan)
    await eventually(lambda: fs.system.hits_per_action(e)["a"], 10, "a never called")

    def retried(run: int, *reset: str) -> bytes:
        return encode_event(ExecutionRetried(execution_id=e, run=run, reset=list(reset)))

    while_running = await publish(fs, f"execution.retried.{e}", retried(2, "a"))
    completed = f"execution.completed.{e}"
    await eventually(lambda: fs.system.sequence_of(completed), 20, f"{e} did not complete")
    unknown = await publish(fs, f"execution.retried.{e}", retried(2, "nope", "a"))
    skipping = await publish(fs, f"execution.retried.{e}", retried(5, "b"))
    empty = await publish(fs, f"execution.retried.{e}", retried(2))
    await fs.system.wait_orchestrated(empty)

    state = await viewed_equals_fold(fs, e)
    reasons = refused(state)
    assert "only an ended execution" in reasons[while_running]
    assert "nope" in reasons[unknown]
    assert "does not follow" in reasons[skipping]
    assert "resets no action" in reasons[empty]
    assert state.status == "completed" and state.run == 1
    assert fs.system.hits_per_action(e) == {"a": 1, "b": 1}
    await a_plan_still_runs(fs, target, "after-retries")


# ----------------------------------------------------------------------------- sub-plans


def subplan(target: HttpTarget, e: str, action_id: str, *deps: str, delay: float = 0) -> Action:
    inner = [slow(target, f"{e}-child", "c", delay)] if delay else [echo(target, f"{e}-child", "c")]
    return Action(
        id=action_id, type="plan", depends_on=list(deps), plan=Plan(id="child", actions=inner)
    )


async def test_a_child_id_taken_before_its_parent_starts_it_fails_the_action(
    fs: FaultSystem, target: HttpTarget
) -> None:
    e = fs.system.new_id("taken")
    plan = Plan(id="taken", actions=[slow(target, e, "gate"), subplan(target, e, "sub", "gate")])
    await fs.system.submit(e, plan)
    await eventually(lambda: fs.system.hits_per_action(e)["gate"], 10, "gate never called")
    child = child_execution_id(e, "sub")
    impostor = Plan(id="impostor", actions=[echo(target, child, "x")])
    link = ParentLink(execution_id=e, action_id="sub", depth=1)
    forged = encode_event(PlanSubmitted(execution_id=child, plan=impostor, parent=link))
    await publish(fs, f"plan.submitted.{child}", forged)
    # The impostor runs as any submitted plan, and ends before its "parent" gets there.
    assert isinstance(await fs.system.wait_end(child, timeout=20), ExecutionCompleted)

    end = await fs.system.wait_end(e, timeout=30)
    assert isinstance(end, ExecutionFailed), end
    state = await viewed_equals_fold(fs, e)
    sub = state.actions["sub"]
    assert sub.status == "failed" and sub.error is not None
    assert sub.error.code == ErrorCode.SUBPLAN_FAILED and "taken" in sub.error.message
    assert sub.child_execution_id is None
    history = await fs.system.history(e)
    assert not [x for x in history if isinstance(x, ActionCompleted) and x.action_id == "sub"]
    await a_plan_still_runs(fs, target, "after-taken")


async def test_forged_children_and_ends_do_not_complete_a_parents_action(
    fs: FaultSystem, target: HttpTarget
) -> None:
    e = fs.system.new_id("parent")
    plan = Plan(id="parent", actions=[subplan(target, e, "sub", delay=2.0)])
    await fs.system.submit(e, plan)
    child = child_execution_id(e, "sub")
    await eventually(lambda: fs.system.hits_per_action(child)["c"], 15, "child idle")

    # A plan claiming to be a child of the parent's action, under another id.
    stranger = "sub_" + "f" * 32
    link = ParentLink(execution_id=e, action_id="sub", depth=1)
    lie = Plan(id="stranger", actions=[echo(target, stranger, "x")])
    await publish(
        fs,
        f"plan.submitted.{stranger}",
        encode_event(PlanSubmitted(execution_id=stranger, plan=lie, parent=link)),
    )
    assert isinstance(await fs.system.wait_end(stranger, timeout=20), ExecutionCompleted)
    # A second plan on the real child's id, and its end while the child runs.
    second = encode_event(PlanSubmitted(execution_id=child, plan=lie, parent=link))
    twice = await publish(fs, f"plan.submitted.{child}", second)
    done = await publish(
        fs, f"execution.completed.{child}", encode_event(ExecutionCompleted(execution_id=child))
    )
    await fs.system.wait_orchestrated(done)
    assert (await folded(fs, e)).actions["sub"].status == "running"

    end = await fs.system.wait_end(e, timeout=30)
    assert isinstance(end, ExecutionCompleted), end
    state = await viewed_equals_fold(fs, e)
    assert state.actions["sub"].output == {
        "execution_id": child,
        "actions": {"c": {"slept": 2.0}},
    }
    child_state = await folded(fs, child)
    assert {twice, done} <= set(refused(child_state))
    assert child_state.plan_id == "child"
    assert fs.system.hits_per_action(stranger) == {"x": 1}
    assert fs.system.hits_per_action(child) == {"c": 1}
    await a_plan_still_runs(fs, target, "after-children")


# --------------------------------------------------------------- values stored by reference


async def test_references_to_values_that_do_not_exist_fail_and_wedge_nothing(
    fs: FaultSystem, target: HttpTarget
) -> None:
    # As plan input.
    e = fs.system.new_id("ref-input")
    uses_input = RequestSpec(url=target.url(f"/echo/{e}/a"), method="POST", json="{{input.big}}")
    plan = Plan(
        id="ref-input", input={"big": _MISSING_REF}, actions=[Action(id="a", request=uses_input)]
    )
    await publish(fs, f"plan.submitted.{e}", encode_event(PlanSubmitted(execution_id=e, plan=plan)))
    end = await fs.system.wait_end(e, timeout=30)
    assert isinstance(end, ExecutionFailed), end
    assert "sha256:" + "0" * 64 in str(msgspec.to_builtins(await folded(fs, e)))
    assert fs.system.hits_per_action(e) == {}

    # As an action's output, forged while the action runs.
    e = fs.system.new_id("ref-output")
    downstream = RequestSpec(
        url=target.url(f"/echo/{e}/b"), method="POST", json="{{actions.a.output}}"
    )
    plan = Plan(
        id="ref-output",
        actions=[slow(target, e, "a"), Action(id="b", depends_on=["a"], request=downstream)],
    )
    await fs.system.submit(e, plan)
    await eventually(lambda: fs.system.hits_per_action(e)["a"], 10, "a never called")
    forged = ActionCompleted(execution_id=e, action_id="a", attempt=1, output=_MISSING_REF)
    await publish(fs, f"action.completed.{e}.a", encode_event(forged))
    end = await fs.system.wait_end(e, timeout=30)
    assert isinstance(end, ExecutionFailed), end
    state = await viewed_equals_fold(fs, e)
    assert state.actions["b"].status == "failed"
    assert "b" not in fs.system.hits_per_action(e)
    await a_plan_still_runs(fs, target, "after-refs")


# ---------------------------------------------------------------------- oversized and deep


async def _tep(fs: FaultSystem, *args: str) -> subprocess.CompletedProcess[str]:
    run = functools.partial(run_tep, *args, nats_url=fs.system.server.url)
    return await anyio.to_thread.run_sync(run)


def _nested(depth: int) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "id": "leaf",
        "actions": [{"id": "a", "request": {"url": "http://127.0.0.1:1/"}}],
    }
    for n in range(depth):
        plan = {"id": f"level-{n}", "actions": [{"id": "a", "type": "plan", "plan": plan}]}
    return plan


async def test_oversized_and_deep_plans_are_refused_with_the_limit_named(
    fs: FaultSystem, tmp_path: Path
) -> None:
    many = {
        "id": "many",
        "actions": [
            {
                "id": "each",
                "for_each": list(range(10_001)),
                "request": {"url": "http://127.0.0.1:1/{{index}}"},
            }
        ],
    }
    result = await _tep(fs, "validate", str(write_plan(tmp_path, many, "many.json")))
    assert result.returncode == 2, result.stderr
    assert "10000" in result.stdout + result.stderr and "Traceback" not in result.stderr

    result = await _tep(fs, "validate", str(write_plan(tmp_path, _nested(40), "deep.json")))
    assert result.returncode == 2, result.stderr
    out = result.stdout + result.stderr
    assert "levels deep" in out and "TEP_MAX_JSON_DEPTH" in out
    assert "Traceback" not in out and "RecursionError" not in out
    # Within the JSON depth, the sub-plan depth limit names itself.
    result = await _tep(fs, "validate", str(write_plan(tmp_path, _nested(6), "six.json")))
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "limit of 5" in out and "TEP_MAX_SUBPLAN_DEPTH" in out and "Traceback" not in out


async def test_a_for_each_over_an_upstream_array_above_the_limit_fails_the_action(
    fs: FaultSystem, target: HttpTarget
) -> None:
    e = fs.system.new_id("wide")
    listing = RequestSpec(
        url=target.url(f"/echo/{e}/list"), method="POST", json={"xs": list(range(10_001))}
    )
    each = RequestSpec(url=target.url(f"/echo/{e}/each"), method="POST", json={"i": "{{index}}"})
    plan = Plan(
        id="wide",
        actions=[
            Action(id="list", request=listing),
            Action(
                id="each",
                depends_on=["list"],
                request=each,
                for_each="{{actions.list.output.json.xs}}",
            ),
        ],
    )
    await fs.system.submit(e, plan)
    end = await fs.system.wait_end(e, timeout=60)
    assert isinstance(end, ExecutionFailed), end
    state = await folded(fs, e)
    error = state.actions["each"].error
    assert error is not None and error.code == ErrorCode.INVALID_REQUEST
    assert "10001" in error.message and "10000" in error.message
    assert fs.system.hits_per_action(e) == {"list": 1}


async def test_a_retry_from_10000_unknown_actions_exits_2_on_one_line(
    fs: FaultSystem, target: HttpTarget
) -> None:
    e = fs.system.new_id("retry-many")
    await fs.system.submit(e, Plan(id="retry-many", actions=[echo(target, e, "a")]))
    assert isinstance(await fs.system.wait_end(e, timeout=20), ExecutionCompleted)
    names = [arg for n in range(10_000) for arg in ("--from", f"missing-{n}")]
    result = await _tep(fs, "retry", e, *names)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) < 2000, result.stderr[:3000]
    assert "missing-0" in lines[0] and "Traceback" not in result.stderr
    assert fs.system.hits_per_action(e) == {"a": 1}
