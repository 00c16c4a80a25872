"""The floor of tep's design here: tep's JetStream traffic per action, made with raw nats-py.

    .venv/bin/python bench/throughput_floor.py [--executions 2000] [--steps 5] [--concurrency 32]

A fresh nats-server, provisioned by tep's own code, and three processes sending, each on its own
connection, what tep's roles send for chains of ``--steps`` actions: the orchestrator submits
(256 in flight) and pulls its partitions as tep's ``PullFeed`` does; per ``plan.submitted`` a
direct get (is it the first?) and the request of step 0, per ``action.completed`` the next
request or ``execution.completed``, then the ack. The executor pulls ``queue-http`` with a
credit of ``--concurrency``; per request ``action.started``, ``action.completed`` and the ack
(no HTTP call); plus tep's idle ``action.cancelled`` follower. The projector reads the log with
one ordered consumer and commits each batch (<= 4096 records, cut at 249 executions) as one
atomic KV batch: the touched states (compare-and-set), moved index entries and tombstones,
counters and checkpoint. Messages carry tep's headers (id, ``traceparent``, guards) and bodies
of tep's sizes, so the server's work per message is tep's; all tep adds to it (decoding,
folding, deciding, validation, the HTTP call) is Python work in the roles. Measured: the wall
time from the first publish until the projector committed the last ``execution.completed``,
and each process's CPU (nats-server's too) over it, per action.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DeliverPolicy

from eventstore import headers as h

__all__ = ["FloorResult", "raw_floor"]

ROLES = ("orchestrator", "executor", "projector")
_READY, _GO, _DONE = "floor.ready", "floor.go", "floor.done"
# Bytes of tep's encoded events and view values for the bench's 5-step chain (measured with
# eventstore.codec.encode_event, projections.view.encode_state / encode_summary / encode_stats).
_SIZES = {"plan": 1132, "request": 555, "started": 344, "completed": 392, "end": 225}
_SIZES |= {"state": 2300, "summary": 212, "stats": 178}
_BODIES = {kind: b'{"pad":"' + b"x" * (n - 10) + b'"}' for kind, n in _SIZES.items()}
_STATUS = {"plan": "pending", "execute": "running", "execution": "completed"}
_TOMBSTONE = {h.KV_OPERATION: "DEL", h.TTL: "60s"}  # an index entry's, as tep writes it
_PLAN = "throughput-chain"  # the bench's plan id, a token of the index keys
_SUBMITS_IN_FLIGHT = 256
_WRONG_LAST_SEQUENCE = 10071  # eventstore.jetstream.api_errors
_PROJECTOR_BATCH = 4096  # projections.projector.DEFAULT_BATCH
_RANGE_EXECUTIONS = 249  # projections.view_batch._MAX_EXECUTIONS
Config = dict[str, Any]
Work = Callable[[Msg], Awaitable[None]]
_tasks: set[asyncio.Task[None]] = set()


@dataclass
class FloorResult:
    actions: int
    seconds: float
    actions_per_s: float
    cpu_ms_per_action: dict[str, float]
    """Process name (each role, ``nats-server``) -> CPU ms per action."""
    per_action: dict[str, float]
    """Messages stored and delivered per action (read from the streams and consumers)."""

    def describe(self) -> str:
        cpu = ", ".join(f"{k} {v:.3f}" for k, v in self.cpu_ms_per_action.items())
        counts = ", ".join(f"{k} {v:.2f}" for k, v in self.per_action.items())
        return (
            f"raw floor: {self.actions} actions in {self.seconds:.2f} s = "
            f"{self.actions_per_s:,.0f} actions/s; CPU ms/action: {cpu}; per action: {counts}"
        )


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` so far, as bench/tep_stack.py reads them."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` in a task; if it fails, so does the process (the parent notices)."""
    task = asyncio.create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task[None]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        traceback.print_exception(exc)
        os._exit(1)


async def _pull(
    nc: Client, where: str, work: Work, batch: int, expires_s: float, beat_s: float, credit: int = 0
) -> None:
    """Feed the deliveries of durable consumer ``where`` (``<stream>.<consumer>``) to ``work``
    with the requests of tep's ``PullFeed``: pulls of ``batch`` kept outstanding and topped up
    at half a batch, or with a ``credit``, never more requested plus in hand than that (it
    does not renew a request before it expires: the next one goes once the server ends it);
    messages in hand for over ``beat_s`` get in-progress acks, as tep's ``Heartbeats`` send."""
    inbox, wake = nc.new_inbox(), asyncio.Event()
    due: dict[str, int] = {}  # pull request (its reply subject) -> messages still due
    held: dict[int, tuple[Msg, float]] = {}  # id -> message in hand, since when
    requested = in_hand = 0

    async def handle(msg: Msg) -> None:
        nonlocal in_hand
        held[id(msg)] = (msg, time.monotonic())
        await work(msg)
        del held[id(msg)]
        in_hand -= 1
        wake.set()

    async def beat() -> None:
        while True:
            await asyncio.sleep(beat_s)
            since = time.monotonic() - beat_s
            for msg in [msg for msg, at in held.values() if at < since]:
                await msg.in_progress()

    async def on_message(msg: Msg) -> None:
        nonlocal requested, in_hand
        status = msg.headers.get(h.STATUS) if msg.headers else None
        if status is not None and not msg.data:
            if status != "100":  # a request ended (408 expired, 404 nothing left...)
                requested -= due.pop(msg.subject, 0)
                wake.set()
            return
        if due:  # requests are served in order: the oldest one got it
            oldest = next(iter(due))
            due[oldest] -= 1
            requested -= 1
            if due[oldest] <= 0:
                del due[oldest]
        in_hand += 1
        _spawn(handle(msg))
        wake.set()

    def wanted() -> int:
        if not credit:  # the consumer's max_ack_pending is the limit
            return batch if requested <= batch // 2 else 0
        window = credit - in_hand
        return min(window - requested, batch) if requested <= window // 2 else 0

    async def run() -> None:
        nonlocal requested
        while True:
            wake.clear()  # before asking: a wake-up while a request goes out is kept
            while (asked := wanted()) > 0:
                due[reply := f"{inbox}.{uuid.uuid4().hex[:8]}"] = asked
                requested += asked
                body = json.dumps({"batch": asked, "expires": int(expires_s * 1e9)}).encode()
                await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{where}", body, reply=reply)
            await wake.wait()

    await nc.subscribe(f"{inbox}.*", cb=on_message, pending_msgs_limit=-1, pending_bytes_limit=-1)
    _spawn(run())
    _spawn(beat())


class _Taken(Exception):
    """The guard refused the event: it is stored already (a redelivery decided it before)."""


async def _append(
    nc: Client, subject: str, kind: str, msg_id: str, last: int = 0, on: str | None = None
) -> int:
    """Publish an event as tep's log does (id, trace, guard); its stored sequence."""
    trace = f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-01"
    headers = {h.MSG_ID: msg_id, h.TRACEPARENT: trace, h.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)}
    if on is not None:
        headers[h.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT] = on
    ack = json.loads((await nc.request(subject, _BODIES[kind], timeout=10, headers=headers)).data)
    if ack.get("error", {}).get("err_code") == _WRONG_LAST_SEQUENCE:
        raise _Taken(subject)
    if "error" in ack:
        raise RuntimeError(f"{subject}: {ack['error']}")
    return int(ack["seq"])


async def _orchestrator(nc: Client, cfg: Config) -> None:
    deciding = asyncio.Semaphore(cfg["max_deciding"])
    direct_get = f"$JS.API.DIRECT.GET.{cfg['stream']}"

    async def decide(msg: Msg) -> None:
        subject = msg.subject.split(".", 3)[3]  # tep.part.<n>.<log subject>
        kind, _, e, *action = subject.split(".")
        step = int(action[0][1:]) + 1 if action else 0
        async with deciding:
            with contextlib.suppress(_Taken):  # decided before (a redelivery): tep acks it
                if kind == "plan":  # is it the first plan.submitted on its subject?
                    first = json.dumps({"seq": 1, "next_by_subj": subject}).encode()
                    await nc.request(direct_get, first, timeout=10)
                if kind != "execution" and step < cfg["steps"]:
                    requested = f"action.execute.requested.http.{e}.s{step}"
                    await _append(nc, requested, "request", f"{e}.s{step}.requested")
                elif kind != "execution":
                    end = f"execution.completed.{e}"
                    await _append(nc, end, "end", f"{e}.terminal", 0, f"execution.*.{e}")
            await msg.ack()  # an execution.completed is only acked (it has no parent)

    for consumer in cfg["partition_consumers"]:
        await _pull(nc, f"{cfg['partition_stream']}.{consumer}", decide, *cfg["orchestrator_pull"])
    go = await nc.subscribe(_GO)
    await nc.publish(_READY, b"orchestrator")
    await go.next_msg(timeout=600)
    submitting = asyncio.Semaphore(_SUBMITS_IN_FLIGHT)

    async def submit(e: str) -> None:
        async with submitting:
            await _append(nc, f"plan.submitted.{e}", "plan", uuid.uuid4().hex)

    await asyncio.gather(*(submit(f"floor-{i}") for i in range(cfg["executions"])))


async def _executor(nc: Client, cfg: Config) -> None:
    async def attempt(msg: Msg) -> None:
        e, a = msg.subject.split(".")[4:6]  # action.execute.requested.http.<e>.<a>
        action, claim = f"action.*.{e}.{a}", f"{e}.{a}.started.1.0.{uuid.uuid4().hex[:12]}"
        with contextlib.suppress(_Taken):  # a redelivery of a request done: tep acks it
            at = await _append(nc, f"action.started.{e}.{a}", "started", claim, 0, action)
            done = f"{e}.{a}.completed"
            await _append(nc, f"action.completed.{e}.{a}", "completed", done, at, action)
        await msg.ack()

    await _pull(nc, f"{cfg['stream']}.{cfg['queue_consumer']}", attempt, *cfg["executor_pull"])
    new, js = DeliverPolicy.NEW, nc.jetstream()  # tep's follower of action.cancelled (idle)
    await js.subscribe("action.cancelled.>", cb=_idle, ordered_consumer=True, deliver_policy=new)
    await nc.publish(_READY, b"executor")


async def _idle(msg: Msg) -> None:
    pass


async def _projector(nc: Client, cfg: Config) -> None:
    pending: list[tuple[int, str]] = []
    arrived = asyncio.Event()

    async def collect(msg: Msg) -> None:
        pending.append((msg.metadata.sequence.stream, msg.subject))
        arrived.set()

    js = nc.jetstream()
    await js.subscribe(">", stream=cfg["stream"], cb=collect, ordered_consumer=True)
    await nc.publish(_READY, b"projector")
    known: dict[str, tuple[str, int]] = {}  # execution -> (status, its state's revision)
    revisions = {"stats_key": 0, "checkpoint_key": 0}
    ended = 0
    while ended < cfg["executions"]:
        await arrived.wait()
        batch = pending[:_PROJECTOR_BATCH]
        del pending[:_PROJECTOR_BATCH]
        if not pending:
            arrived.clear()
        while batch:  # a range of at most 249 executions: one atomic batch
            statuses: dict[str, str] = {}  # execution -> its status after the range
            taken = 0
            for _, subject in batch:
                kind, what, *ids = subject.split(".")
                e = ids[2] if what == "execute" else ids[0]
                if e not in statuses and len(statuses) == _RANGE_EXECUTIONS:
                    break
                now = statuses.get(e) or known.get(e, ("", 0))[0]
                statuses[e] = _STATUS.get(what if kind == "action" else kind, now)
                ended, taken = ended + (kind == "execution"), taken + 1
            end, batch = batch[taken - 1][0], batch[taken:]
            writes: list[tuple[str, bytes, dict[str, str]]] = []
            at: dict[str, int] = {}
            for e, status in statuses.items():
                before, revision = known.get(e, ("", 0))
                at[e] = len(writes)
                writes.append((cfg["exec_prefix"] + e, _BODIES["state"], _expect(revision)))
                if status != before:  # its index entry moves
                    index = f"{cfg['index_prefix']}{{}}.{_PLAN}.{e}"
                    writes.append((index.format(status), _BODIES["summary"], {}))
                    if before:
                        writes.append((index.format(before), b"", _TOMBSTONE))
            for key, value in zip(revisions, (_BODIES["stats"], str(end).encode()), strict=True):
                at[key] = len(writes)
                writes.append((cfg[key], value, _expect(revisions[key])))
            first = await _atomic(nc, writes)
            known |= {e: (status, first + at[e]) for e, status in statuses.items()}
            revisions = {key: first + at[key] for key in revisions}
    await nc.publish(_DONE, b"")


def _expect(revision: int) -> dict[str, str]:
    return {h.EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision)}


async def _atomic(nc: Client, writes: list[tuple[str, bytes, dict[str, str]]]) -> int:
    """One atomic batch, as tep's ``AtomicWriter`` sends it; the first write's revision."""
    batch_id = uuid.uuid4().hex
    for number, (subject, value, expect) in enumerate(writes, 1):
        headers = {**expect, h.BATCH_ID: batch_id, h.BATCH_SEQUENCE: str(number)}
        if number < len(writes):
            await nc.publish(subject, value, headers=headers)
    reply = await nc.request(subject, value, timeout=10, headers={**headers, h.BATCH_COMMIT: "1"})
    ack = json.loads(reply.data)
    if "error" in ack:
        raise RuntimeError(f"view batch refused: {ack['error']}")
    return int(ack["seq"]) - len(writes) + 1


async def _role(name: str, cfg: Config) -> None:
    """One role, until the parent ends the process (or the server goes away)."""

    async def gone() -> None:
        os._exit(0)

    nc = await nats.connect(cfg["url"], name=f"floor-{name}", allow_reconnect=False, closed_cb=gone)
    roles = {"orchestrator": _orchestrator, "executor": _executor, "projector": _projector}
    _spawn(roles[name](nc, cfg))
    await asyncio.Event().wait()


async def _provision(url: str, executions: int, steps: int, credit: int) -> Config:
    """Streams, consumers and view bucket as tep makes them; the roles' names and settings."""
    from eventstore.config import TepSettings
    from eventstore.jetstream.kv_protocol import kv_subject_prefix
    from eventstore.jetstream.provision import ensure_log, ensure_partitions
    from eventstore.jetstream.provision import partition_consumer_config as consumer_config
    from eventstore.jetstream.queues import ensure_queue_consumer
    from eventstore.partitions import partition_stream
    from executor.config import ExecutorConfig
    from orchestrator.config import OrchestratorConfig
    from projections.buckets import ensure_current_view
    from projections.view import CHECKPOINT_KEY, EXEC_PREFIX, INDEX_PREFIX, STATS_KEY

    settings, conf, executor = TepSettings(nats_url=url), OrchestratorConfig(), ExecutorConfig()
    nc = await nats.connect(url, name="floor-provision")
    js = nc.jetstream()
    await ensure_log(js, settings)
    stream, consumers = partition_stream(settings.stream), []
    for p in range(await ensure_partitions(js, settings)):  # as each partition's holder does
        config = consumer_config(
            p, ack_wait_s=conf.ack_wait_s, max_ack_pending=conf.max_ack_pending
        )
        consumers.append((await js.add_consumer(stream, config=config)).name)
    queue = (await ensure_queue_consumer(js, settings, "http", ack_wait_s=executor.ack_wait_s)).name
    _, pointer, _ = await ensure_current_view(js, settings)
    await nc.close()
    kv = kv_subject_prefix(pointer.bucket)
    return {  # grouped by what uses them: all, orchestrator, executor, projector, the parent
        **{"url": url, "executions": executions, "steps": steps, "stream": settings.stream},
        **{"partition_stream": stream, "partition_consumers": consumers},
        **{"orchestrator_pull": (conf.pull_batch, conf.pull_expires_s, conf.ack_wait_s / 3)},
        **{"max_deciding": conf.max_deciding, "queue_consumer": queue},
        **{"executor_pull": (256, executor.pull_expires_s, executor.ack_wait_s / 3, credit)},
        **{"exec_prefix": kv + EXEC_PREFIX, "index_prefix": kv + INDEX_PREFIX},
        **{"stats_key": kv + STATS_KEY, "checkpoint_key": kv + CHECKPOINT_KEY},
        **{"kv_stream": f"KV_{pointer.bucket}"},
    }


async def _next(sub: Subscription, roles: dict[str, Any], timeout: float) -> None:
    """The next message on ``sub``; fails if a role exits or nothing comes in ``timeout``."""
    for _ in range(int(timeout * 10)):
        with contextlib.suppress(TimeoutError):
            await sub.next_msg(timeout=0.1)
            return
        if any(process.returncode is not None for process in roles.values()):
            raise RuntimeError("a role of the floor exited")
    raise RuntimeError(f"the floor did not end within {timeout:.0f} s")


async def _per_action(nc: Client, cfg: Config, actions: int) -> dict[str, float]:
    """What the run stored and delivered, per action (checking the log holds what it should)."""
    js = nc.jetstream()
    streams = {"log": cfg["stream"], "partitions": cfg["partition_stream"], "kv": cfg["kv_stream"]}
    counts = {f"{k} stored": (await js.stream_info(s)).state.last_seq for k, s in streams.items()}
    if counts["log stored"] != cfg["executions"] * (3 * cfg["steps"] + 2):
        raise RuntimeError(f"the log holds {counts['log stored']} messages: not tep's pattern")
    pairs = [(cfg["partition_stream"], c) for c in cfg["partition_consumers"]]
    infos = [await js.consumer_info(*p) for p in [*pairs, (cfg["stream"], cfg["queue_consumer"])]]
    counts["orchestrator deliveries"] = sum(i.delivered.consumer_seq or 0 for i in infos[:-1])
    counts["executor deliveries"] = infos[-1].delivered.consumer_seq or 0
    return {name: count / actions for name, count in counts.items()}


async def raw_floor(
    executions: int, steps: int = 5, *, executors_concurrency: int = 32
) -> FloorResult:
    """The floor for ``executions`` chains of ``steps`` actions, on a fresh server."""
    from tep.server import EmbeddedServer

    server, actions = EmbeddedServer(), executions * steps
    await asyncio.to_thread(server.start)
    roles: dict[str, asyncio.subprocess.Process] = {}
    try:
        cfg = await _provision(server.url, executions, steps, executors_concurrency)
        nc = await nats.connect(server.url, name="floor")
        ready, done = await nc.subscribe(_READY), await nc.subscribe(_DONE)
        for name in ROLES:
            arguments = [__file__, "--role", name, json.dumps(cfg)]
            roles[name] = await asyncio.create_subprocess_exec(sys.executable, *arguments)
        for _ in ROLES:
            await _next(ready, roles, 60)
        pids = {name: process.pid for name, process in roles.items()}
        pids["nats-server"] = server.pid or 0
        before = {name: _cpu_s(pid) for name, pid in pids.items()}
        began = time.perf_counter()
        await nc.publish(_GO, b"")
        await _next(done, roles, 60 + actions / 100)
        seconds = time.perf_counter() - began
        cpu = {name: 1000 * (_cpu_s(pid) - before[name]) / actions for name, pid in pids.items()}
        counts = await _per_action(nc, cfg, actions)
        await nc.close()
    finally:
        for process in roles.values():
            if process.returncode is None:
                process.terminate()
                await process.wait()
        await asyncio.to_thread(server.cleanup)
    return FloorResult(actions, seconds, actions / seconds, cpu, counts)


def main() -> None:
    if sys.argv[1:2] == ["--role"]:  # a role, started by raw_floor
        asyncio.run(_role(sys.argv[2], json.loads(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32, help="the executor's")
    args = parser.parse_args()
    floor = raw_floor(args.executions, args.steps, executors_concurrency=args.concurrency)
    print(asyncio.run(floor).describe())


if __name__ == "__main__":
    main()
