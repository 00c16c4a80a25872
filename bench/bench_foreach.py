"""A for-each of many items on a real `tep up`, next to the same calls made directly.

    .venv/bin/python bench/bench_foreach.py [--items 10000] [--concurrency 200] [--executors 1]

Starts `tep up` (embedded nats-server with auth, orchestrator, executor(s), projector, demo
target) in a scratch directory, submits through :meth:`StateManager.initialize_state` one plan
whose action runs ``for_each`` over ``--items`` elements of its input at ``--concurrency``
(each item one GET of the demo target's ``/echo?n={{index}}&sku={{item.sku}}``) and waits with
:meth:`StateManager.wait_for_completion`. Then it makes the same calls to the same target
directly with the executor's HTTP client (:class:`executor.http_client.AiohttpClient`) at the
same concurrency. Prints:

- tep's items/s, over the for-each action itself (its ``action.items.started`` to its
  outcome) and end to end (submit until the StateManager's view shows the execution
  completed), the direct calls/s, and the ratio (target: at least 0.5x);
- the RSS of every process while idle and the CPU time each used for the full run;
- the orchestrator's RSS at the start, peak and end of a run with a tenth of the items and of
  the full run, with the size of the execution's state beside it (what the orchestrator must
  hold: per item a status, times and its output).

The executors run ``--concurrency`` requests at once between them (``TEP_EXECUTOR_CONCURRENCY``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from tep_stack import RssSampler, start_stack

from eventstore.config import TepSettings
from eventstore.state import ExecutionState
from executor.http_client import AiohttpClient, HttpRequest
from executor.target_policy import TargetPolicy
from projections.state_manager import StateManager
from tep.server import find_free_port

EACH = "each"
_MAX_BODY = 1 << 20


def for_each_plan(count: int, concurrency: int, target: str) -> dict[str, Any]:
    return {
        "id": "bench-foreach",
        "input": {"items": [{"sku": f"sku-{i}"} for i in range(count)]},
        "actions": [
            {
                "id": EACH,
                "for_each": "{{input.items}}",
                "concurrency": concurrency,
                "request": {
                    "method": "GET",
                    "url": f"{target}/echo?n={{{{index}}}}&sku={{{{item.sku}}}}",
                    "timeout_s": 30,
                },
            }
        ],
    }


async def direct_calls(target: str, count: int, concurrency: int) -> float:
    """The same ``count`` GETs through the executor's HTTP client; calls per second."""
    policy = TargetPolicy.from_strings(allow_cidrs=["127.0.0.0/8"])
    client = AiohttpClient(max_connections=concurrency, policy=policy)

    async def drive(calls: int) -> float:
        remaining = iter(range(calls))

        async def worker() -> None:
            for n in remaining:
                request = HttpRequest(
                    method="GET",
                    url=f"{target}/echo?n={n}&sku=sku-{n}",
                    headers={"Idempotency-Key": f"bench:each@{n}"},
                )
                response = await client.send(request, timeout_s=30, max_body_bytes=_MAX_BODY)
                assert response.status == 200, response.status

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return calls / (time.perf_counter() - began)

    try:
        await drive(min(count, 500))  # warm the connection pool
        return await drive(count)
    finally:
        await client.aclose()


def _moment(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


class Measured:
    """One tep run: the final state, the wall time, the orchestrator's RSS samples."""

    def __init__(self, state: ExecutionState, wall_s: float, rss_kb: list[int]) -> None:
        self.state = state
        self.wall_s = wall_s
        self.rss_kb = rss_kb or [0]
        action = state.actions[EACH]
        self.action_s = (_moment(action.completed_at) - _moment(action.started_at)).total_seconds()

    def rss_mb(self) -> tuple[float, float, float]:
        """Start, peak and end, in MB."""
        kb = self.rss_kb
        return kb[0] / 1024, max(kb) / 1024, kb[-1] / 1024


async def tep_run(
    sm: StateManager, sampler: RssSampler, phase: str, count: int, concurrency: int, target: str
) -> Measured:
    sampler.phase = phase
    await asyncio.sleep(0.5)  # a sample or two before it starts
    began = time.perf_counter()
    execution = await sm.initialize_state(for_each_plan(count, concurrency, target))
    state = await sm.wait_for_completion(execution.execution_id, timeout=max(120, count / 20))
    wall = time.perf_counter() - began
    await asyncio.sleep(1.0)  # and after it ended
    sampler.phase = "idle-after"
    if state.status != "completed":
        raise SystemExit(f"the for-each ended {state.status}: {state.error}")
    items = state.actions[EACH].items
    output = state.actions[EACH].output or {}
    assert items is not None and items.completed == count, items
    collected = output.get("items")
    if isinstance(collected, list):
        assert len(collected) == count and collected[-1]["query"]["n"] == str(count - 1)
    rss = sampler.samples.get(phase, {}).get("orchestrator", [])
    return Measured(state, wall, rss)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tep-bench-foreach-") as tmp:
        directory = Path(tmp)
        state_dir = directory / "state"
        os.environ["TEP_STATE_DIR"] = str(state_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEP_")}
        per_executor = max(1, -(-args.concurrency // args.executors))
        env.update(
            TEP_STATE_DIR=str(state_dir),
            TEP_LOG_LEVEL="WARNING",
            TEP_EXECUTOR_CONCURRENCY=str(per_executor),
        )
        demo_port = find_free_port()
        target = f"http://127.0.0.1:{demo_port}"
        stack = start_stack(directory, env, args.executors, demo_port)
        sampler = RssSampler(stack)
        try:
            settings = TepSettings.from_env().model_copy(update={"nats_url": stack.nats_url})
            sm = await StateManager.connect(stack.nats_url, settings=settings, name="bench-foreach")
            try:
                await report(args, sm, sampler, target)
            finally:
                await sm.close()
        finally:
            stack.stop()


async def report(
    args: argparse.Namespace, sm: StateManager, sampler: RssSampler, target: str
) -> None:
    count, concurrency = args.items, args.concurrency
    await tep_run(sm, sampler, "warm-up", min(100, count), concurrency, target)
    sampling = asyncio.create_task(sampler.run())
    sampler.phase = "idle"
    await asyncio.sleep(2)
    small = await tep_run(sm, sampler, "small", max(count // 10, 1), concurrency, target)
    full = await tep_run(sm, sampler, "full", count, concurrency, target)
    sampling.cancel()
    counters = sampler.stack.health("orchestrator")
    direct = await direct_calls(target, count, concurrency)

    action_rate = count / full.action_s
    e2e_rate = count / full.wall_s
    print(
        f"for-each of {count:,} items at concurrency {concurrency} against {target}/echo "
        f"({args.executors} executor process(es), {concurrency} requests at once between them)"
    )
    print(f"tep, the for-each action (items.started -> outcome): {action_rate:10,.0f} items/s")
    print(f"tep, end to end (submit -> view says completed):     {e2e_rate:10,.0f} items/s")
    print(f"direct, executor's HTTP client, same concurrency:    {direct:10,.0f} calls/s")
    ratio = action_rate / direct
    verdict = "met" if ratio >= 0.5 else "MISSED"
    print(
        f"ratio tep / direct: {ratio:.2f}x (end to end {e2e_rate / direct:.2f}x); "
        f"target >= 0.5x: {verdict}"
    )
    wanted = [
        "processed",
        "appended",
        "batches",
        "batched",
        "conflicts",
        "retried",
        "dead_lettered",
    ]
    print("orchestrator counters: " + ", ".join(f"{k} {counters.get(k, '?')}" for k in wanted))

    print(f"\n{'process':<16}{'RSS idle, MB':>13}{'CPU s, full run':>17}{'ms per item':>13}")
    for label in sampler.labels():
        idle = sampler.peak("idle", label)
        cpu = sampler.cpu("small", "full", label)
        cells = f"{idle:>13.1f}" if idle is not None else f"{'-':>13}"
        cells += f"{cpu:>17.1f}{cpu * 1000 / count:>13.2f}" if cpu is not None else ""
        print(f"{label:<16}{cells}")
    print(f"\n{'orchestrator RSS, MB':<28}{'start':>9}{'peak':>9}{'end':>9}{'growth':>9}")
    for name, run in ((f"{count // 10:,} items", small), (f"{count:,} items", full)):
        start, peak, end = run.rss_mb()
        print(f"{name:<28}{start:>9.1f}{peak:>9.1f}{end:>9.1f}{peak - start:>9.1f}")
    full_growth = full.rss_mb()[1] - full.rss_mb()[0]
    state_mb = len(msgspec.json.encode(full.state)) / 1024 / 1024
    print(
        f"peak growth {full_growth * 1024 / count:.2f} KB per item; the execution's state as "
        f"the view holds it (statuses, times, outputs of {count:,} items): {state_mb:.1f} MB "
        "of JSON"
    )
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]) if __doc__ else None,
    )
    parser.add_argument("--items", type=int, default=10_000, help="items (default %(default)s)")
    parser.add_argument(
        "--concurrency", type=int, default=200, help="items at once (default %(default)s)"
    )
    parser.add_argument(
        "--executors", type=int, default=1, help="executor processes (default %(default)s)"
    )
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the stack started is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main(parser.parse_args()))
