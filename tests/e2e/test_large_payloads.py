"""Large payloads (claim check) through the whole system: 2 `tep orchestrator` replicas, a `tep
executor` and a `tep projector` as processes on one nats-server, a real HTTP target.

A 5 MB response, a large plan input and large resume data go to the payload bucket and their
events carry references; templates reach into them, the target gets the right values, the
StateManager and `tep status --resolve` give them back whole, the view keeps the references.
A 100 MB response fails with `output_too_large`, the executor having stopped reading at the
cap. The last test rebuilds the view after everything and compares it with the live one.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from support.http_target import HttpTarget
from system_support import System, eventually, projected, running_system
from tep_cli import run_tep, write_plan

from eventstore.config import TepSettings
from eventstore.error_codes import ErrorCode
from eventstore.events import ActionCompleted, ActionFailed, ExecutionCompleted, ExecutionFailed
from eventstore.jetstream.scan import scan_keys
from eventstore.payloads import DEFAULT_MAX_BYTES, payload_ref
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.state import ExecutionState
from projections import StateManager, WaitpointRefusedError, rebuild
from projections.buckets import ensure_meta_bucket, read_pointer
from projections.view import STATS_KEY, decode_stats

pytestmark = pytest.mark.anyio

FIVE_MB = 5 * 1000 * 1000


@dataclass
class Large:
    """The system, a StateManager on its connection, and `tep` commands against it."""

    system: System
    sm: StateManager
    settings: TepSettings
    directory: Path

    async def tep(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``tep ARGS`` as a subprocess (in a thread: the HTTP target shares this loop)."""
        run = functools.partial(run_tep, *args, nats_url=self.system.server.url, timeout=120)
        return await anyio.to_thread.run_sync(run)

    async def viewed(self, execution_id: str) -> ExecutionState:
        """The execution's state in the KV view once it has ended there."""

        async def ended() -> ExecutionState | None:
            state = await self.sm.get_execution_state(execution_id)
            return state if state is not None and state.terminal else None

        found: ExecutionState = await eventually(ended, 30, f"{execution_id} not ended in view")
        return found


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def large(
    tmp_path_factory: pytest.TempPathFactory, target: HttpTarget
) -> AsyncIterator[Large]:
    directory = tmp_path_factory.mktemp("large")
    async with (
        running_system(directory, target, orchestrators=2, executors=1) as system,
        projected(system, directory) as sm,
    ):
        settings = sm.settings
        yield Large(system, sm, settings, directory)


def call(target: HttpTarget, path: str, action_id: str, *deps: str, **spec: Any) -> Action:
    return Action(
        id=action_id,
        depends_on=list(deps),
        request=RequestSpec(url=target.url(path), timeout_s=60, **spec),
    )


def memory_bytes(pid: int, field: str) -> int:
    """A process's resident memory now (``VmRSS``) or at its peak (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


# ------------------------------------------------------------------------------ outputs


async def test_a_100_mb_response_fails_with_the_limit_named_and_is_read_no_further(
    large: Large, target: HttpTarget
) -> None:
    system = large.system
    e = system.new_id("huge")
    path = f"/stream/{100 * 1000 * 1000}/{e}"
    executor = system.executors[0].process.pid
    before = memory_bytes(executor, "VmRSS")
    plan = Plan(id="huge", actions=[call(target, path, "fetch")])

    await system.submit(e, plan)
    end = await system.wait_end(e, timeout=60)

    [failed] = [x for x in await system.history(e) if isinstance(x, ActionFailed)]
    assert isinstance(end, ExecutionFailed)
    assert failed.error.code == ErrorCode.OUTPUT_TOO_LARGE and failed.attempt == 1
    assert f"the output limit is {DEFAULT_MAX_BYTES} bytes" in failed.error.message
    # The executor stopped reading at the 64 MiB cap (socket buffers aside), so the target
    # could not send the 100 MB, and the executor never held them.
    assert DEFAULT_MAX_BYTES <= target.streamed[path] < DEFAULT_MAX_BYTES + 16 * 1024 * 1024
    assert memory_bytes(executor, "VmHWM") - before < 100 * 1000 * 1000


async def test_a_5_mb_response_completes_feeds_its_dependents_and_stays_out_of_the_view(
    large: Large, target: HttpTarget
) -> None:
    system = large.system
    e = system.new_id("five")
    fields = {
        "email": "{{actions.fetch.output.user.email}}",
        "third": "{{actions.fetch.output.rows[3].n}}",
    }
    plan = Plan(
        id="five-mb",
        actions=[
            call(target, f"/json/{FIVE_MB}/{e}", "fetch"),
            call(target, f"/echo/{e}/send", "send", "fetch", method="POST", json=fields),
            call(
                target,
                f"/echo/{e}/whole?n={{{{actions.fetch.output.rows[1].n}}}}",
                "whole",
                "fetch",
                method="POST",
                json="{{actions.fetch.output}}",
            ),
        ],
    )
    expected = HttpTarget.large_json(FIVE_MB, e)

    await system.submit(e, plan)
    end = await system.wait_end(e, timeout=60)
    state = await large.viewed(e)
    output = await large.sm.output(e, "fetch")
    resolved = await large.sm.get_execution_state(e, resolve=True)

    assert isinstance(end, ExecutionCompleted), end
    [send] = target.hits_for(f"/echo/{e}/send")
    assert json.loads(send.body) == {"email": f"{e}@example.com", "third": 3}
    [whole] = target.hits_for(f"/echo/{e}/whole")
    assert whole.query == {"n": "1"} and json.loads(whole.body) == expected
    assert output == expected
    assert resolved is not None and resolved.actions["fetch"].output == expected
    # The log and the view hold the reference, never the 5 MB.
    [completed] = [
        x
        for x in await system.history(e)
        if isinstance(x, ActionCompleted) and x.action_id == "fetch"
    ]
    ref = payload_ref(completed.output)
    assert ref is not None and ref.size > FIVE_MB
    assert state.actions["fetch"].output == completed.output
    assert len(msgspec.json.encode(state)) < 64 * 1024


async def test_tep_status_and_events_show_the_reference_and_resolve_it_on_request(
    large: Large, target: HttpTarget
) -> None:
    system = large.system
    e = system.new_id("cli")
    plan = Plan(id="cli", actions=[call(target, f"/json/{1000 * 1000}/{e}", "fetch")])
    await system.submit(e, plan)
    await system.wait_end(e, timeout=60)
    await large.viewed(e)

    table = await large.tep("status", e)
    brief = await large.tep("status", e, "--json")
    full = await large.tep("status", e, "--json", "--resolve")
    events = await large.tep("events", e)
    events_full = await large.tep("events", e, "--json", "--resolve")

    for result in (table, brief, full, events, events_full):
        assert result.returncode == 0, result.stderr
    assert "by reference" in table.stdout and "by reference" in events.stdout
    assert payload_ref(json.loads(brief.stdout)["actions"]["fetch"]["output"]) is not None
    expected = HttpTarget.large_json(1000 * 1000, e)
    assert json.loads(full.stdout)["actions"]["fetch"]["output"] == expected
    outputs = [
        x["event"]["output"]
        for x in json.loads(events_full.stdout)["events"]
        if x["event"]["type"] == "action.completed"
    ]
    assert outputs == [expected]


# ------------------------------------------------------------------------------ input, resume


def big_input() -> dict[str, Any]:
    return {
        "customer": {"id": "c-7"},
        "lines": [{"sku": f"s{n}", "pad": "l" * 90} for n in range(20000)],
    }


async def test_a_large_plan_input_is_stored_by_reference_and_read_by_templates(
    large: Large, target: HttpTarget
) -> None:
    system = large.system
    e = system.new_id("input")
    plan = Plan(
        id="large-input",
        input=big_input(),
        input_schema={"type": "object", "required": ["customer", "lines"]},
        actions=[
            call(
                target,
                f"/echo/{e}/use",
                "use",
                method="POST",
                json={"customer": "{{input.customer.id}}", "sku": "{{input.lines[2].sku}}"},
            ),
        ],
    )

    started = await large.sm.initialize_state(plan, execution_id=e)
    system.executions.append(e)
    end = await system.wait_end(e, timeout=60)
    state = await large.viewed(e)
    resolved = await large.sm.get_execution_state(e, resolve=True)

    assert isinstance(end, ExecutionCompleted), end
    assert payload_ref(started.input) is not None and state.input == started.input
    [hit] = target.hits_for(f"/echo/{e}/use")
    assert json.loads(hit.body) == {"customer": "c-7", "sku": "s2"}
    assert resolved is not None and resolved.input == big_input()


async def test_a_raw_plan_whose_referenced_input_fails_its_schema_is_rejected(
    large: Large, target: HttpTarget
) -> None:
    system = large.system
    e = system.new_id("forged-input")
    # Published around the client library: the input, stored by reference, was never checked.
    forged = {"user_id": 42, "pad": "p" * 300_000}
    marker = await large.sm.payloads.store(forged)
    schema = {"type": "object", "properties": {"user_id": {"type": "string"}}}
    plan = Plan(
        id="forged",
        input=marker,
        input_schema=schema,
        actions=[call(target, f"/echo/{e}", "fetch")],
    )

    await system.submit(e, plan)
    end = await system.wait_end(e, timeout=30)

    assert isinstance(end, ExecutionFailed) and end.error.code == ErrorCode.INVALID_PLAN
    assert "input.user_id: 42 is not of type 'string'" in end.error.message
    assert not [hit for hit in target.hits if hit.path == f"/echo/{e}"]


async def test_tep_submit_stores_a_large_input_and_waits_for_the_end(
    large: Large, target: HttpTarget
) -> None:
    e = large.system.new_id("submit")
    document = {
        "id": "submitted-input",
        "input": big_input(),
        "actions": [
            {
                "id": "use",
                "type": "http",
                "request": {
                    "method": "POST",
                    "url": target.url(f"/echo/{e}/use"),
                    "json": {"customer": "{{input.customer.id}}"},
                },
            },
        ],
    }
    path = write_plan(large.directory, document, f"{e}.json")
    assert path.stat().st_size > 1024 * 1024

    validated = await large.tep("validate", str(path))
    submitted = await large.tep("submit", str(path), "--execution-id", e, "--wait", "--json")

    assert validated.returncode == 0, validated.stderr
    assert submitted.returncode == 0, submitted.stderr
    assert payload_ref(json.loads(submitted.stdout)["input"]) is not None
    [hit] = target.hits_for(f"/echo/{e}/use")
    assert json.loads(hit.body) == {"customer": "c-7"}
    large.system.executions.append(e)


async def test_large_resume_data_is_checked_stored_and_read_downstream(
    large: Large, target: HttpTarget
) -> None:
    system = large.system
    e = system.new_id("resume")
    schema = {
        "type": "object",
        "required": ["amount"],
        "properties": {"amount": {"type": "integer"}},
    }
    plan = Plan(
        id="large-resume",
        actions=[
            Action(id="approve", type="wait", schema=schema),
            call(
                target,
                f"/echo/{e}/after",
                "after",
                "approve",
                method="POST",
                json={"amount": "{{actions.approve.output.amount}}"},
            ),
        ],
    )
    data = {"amount": 42, "attachment": "a" * (1024 * 1024)}
    await system.submit(e, plan)

    async def waiting() -> bool:
        state = await large.sm.get_execution_state(e)
        return state is not None and state.actions["approve"].status == "waiting"

    await eventually(waiting, 30, "the waitpoint never waited")
    with pytest.raises(WaitpointRefusedError, match="amount"):
        await large.sm.complete_waitpoint(e, "approve", {"amount": "many", "pad": "p" * 400_000})
    final = await large.sm.complete_waitpoint(e, "approve", data, timeout=30)
    end = await system.wait_end(e, timeout=60)
    await large.viewed(e)

    assert isinstance(end, ExecutionCompleted), end
    assert final.status == "completed" and payload_ref(final.output) is not None
    [hit] = target.hits_for(f"/echo/{e}/after")
    assert json.loads(hit.body) == {"amount": 42}
    assert await large.sm.output(e, "approve") == data


# ------------------------------------------------------------------------------ rebuild


async def test_a_rebuild_after_everything_equals_the_live_view(large: Large) -> None:
    system = large.system
    last = await system.log.last_sequence()
    await large.sm.wait_for_sequence(last, timeout=30)
    pointer = await read_pointer(await ensure_meta_bucket(system.log.js, large.settings))
    assert pointer is not None
    live = await scan_keys(system.nc, pointer.bucket)
    report = await rebuild(system.nc, large.settings, keep_old=True)
    rebuilt = await scan_keys(system.nc, report.bucket)

    assert await system.log.last_sequence() == last  # nothing happened meanwhile
    assert _comparable(rebuilt) == _comparable(live)
    assert all(len(value) < 64 * 1024 for value in live.values())


def _comparable(contents: dict[str, bytes]) -> dict[str, object]:
    return {k: decode_stats(v) if k == STATS_KEY else v for k, v in contents.items()}
