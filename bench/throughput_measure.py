"""What the throughput bench measures besides wall time: when each event became visible in the
view (projection lag), when each execution ended, and the roles' RSS and CPU over a phase.

Projection lag is read from two server clocks on one machine: the log's stored time of an event,
and the stored time of the first ``meta.checkpoint`` write of the view at or past the event's
sequence. The projector writes the checkpoint in the same atomic batch as the states it folded,
so that moment is when a reader of the view first sees the event's effect. The checkpoint key
is watched live (one small value per projector batch); the log is read after the phase.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from tep_stack import RssSampler, Stack

from eventstore.jetstream.log import EventLog
from eventstore.subjects import event_type_of
from projections.view import CHECKPOINT_KEY, decode_checkpoint

__all__ = [
    "ApiCalls",
    "CheckpointWatch",
    "Contention",
    "PhaseLog",
    "lag_line",
    "orchestrator_cpu",
    "percentile",
    "read_phase",
    "redeliveries",
    "redelivery_line",
    "role_table",
    "settle",
    "warnings_summary",
]

_TERMINAL = {"execution.completed", "execution.failed", "execution.cancelled"}


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank; 0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class CheckpointWatch:
    """Every ``meta.checkpoint`` write of the view seen: (checkpoint, stored ns, received ns).

    A write replaced before the watch delivered it is missed (the bucket keeps one revision);
    the next one then stands for its events, which over-states their lag a little.
    """

    kv: KeyValue
    writes: list[tuple[int, int, int]] = field(default_factory=list)

    async def run(self) -> None:
        watcher = await self.kv.watch(CHECKPOINT_KEY)
        try:
            async for entry in watcher:
                if entry is None or not entry.value or entry.created is None:
                    continue
                received = time.time_ns()
                stored = int(entry.created.timestamp() * 1e6) * 1000
                self.writes.append((decode_checkpoint(entry.value), stored, received))
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def visible_at(self, sequence: int) -> tuple[int, int] | None:
        """(stored ns, received ns) of the first checkpoint write at or past ``sequence``."""
        index = bisect.bisect_left(self.writes, (sequence, 0, 0))
        if index == len(self.writes):
            return None
        _, stored, received = self.writes[index]
        return stored, received


@dataclass
class PhaseLog:
    """The log of one phase: event counts, each execution's end and each event's lag."""

    events: int = 0
    actions_completed: int = 0
    completed_ns: list[int] = field(default_factory=list)
    """When the log stored each ``action.completed``."""
    ended: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    """execution id -> (terminal type, stored ns in the log, visible ns in the view)."""
    lag_ms: list[float] = field(default_factory=list)
    """Per event: log stored -> view checkpoint stored."""
    delivered_lag_ms: list[float] = field(default_factory=list)
    """Per event: log stored -> the checkpoint write reaching this process."""

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kind, _, _ in self.ended.values():
            counts[kind] = counts.get(kind, 0) + 1
        return counts


async def read_phase(
    log: EventLog, first: int, last: int, watch: CheckpointWatch, executions: set[str]
) -> PhaseLog:
    """Read the log from ``first`` to ``last`` and time what ``executions`` did in it."""
    phase = PhaseLog()
    async for batch in log.replay_batches(first, to_sequence=last):
        for record in batch:
            kind = event_type_of(record.subject)
            tokens = record.subject.rsplit(".", 2)  # ids hold no dots
            execution_id = tokens[-2] if kind.startswith("action.") else tokens[-1]
            if execution_id not in executions:
                continue
            phase.events += 1
            seen = watch.visible_at(record.sequence)
            if seen is not None:
                phase.lag_ms.append((seen[0] - record.stored_ns) / 1e6)
                phase.delivered_lag_ms.append((seen[1] - record.stored_ns) / 1e6)
            if kind == "action.completed":
                phase.actions_completed += 1
                phase.completed_ns.append(record.stored_ns)
            elif kind in _TERMINAL:
                visible = seen[0] if seen is not None else record.stored_ns
                phase.ended[execution_id] = (kind, record.stored_ns, visible)
    return phase


def lag_line(phase: PhaseLog, target_ms: float) -> str:
    """Projection lag p50/p99/max, stored and as delivered, against the p99 target."""
    p99 = percentile(phase.lag_ms, 0.99)
    verdict = "ok" if p99 < target_ms else "MISSED"
    return (
        f"projection lag (log stored -> view checkpoint stored), {len(phase.lag_ms)} events: "
        f"p50 {percentile(phase.lag_ms, 0.5):.0f} ms, p99 {p99:.0f} ms, "
        f"max {max(phase.lag_ms, default=0):.0f} ms [target p99 < {target_ms:.0f} ms: {verdict}]; "
        f"delivered to a watcher p50 {percentile(phase.delivered_lag_ms, 0.5):.0f} ms, "
        f"p99 {percentile(phase.delivered_lag_ms, 0.99):.0f} ms"
    )


def role_table(sampler: RssSampler, phases: list[str], before: str) -> list[str]:
    """Per role: RSS at the start of ``phases``, its peak and at the end (MB), the CPU seconds
    from the end of ``before`` to the end of the last phase, and whether RSS grew."""
    lines = [
        f"{'process':<16}{'RSS start':>10}{'peak':>8}{'end':>8}{'growth':>9}{'CPU s':>8}"
        "  peak by quarter of the run"
    ]
    for label in sampler.labels():
        values = [v for p in phases for v in sampler.samples.get(p, {}).get(label, [])]
        if not values:
            continue
        start, peak, end = values[0] / 1024, max(values) / 1024, values[-1] / 1024
        cpu = sampler.cpu(before, phases[-1], label)
        growth = f"{(end - start):+.1f}"
        cpu_text = f"{cpu:8.2f}" if cpu is not None else f"{'-':>8}"
        by_quarter = " ".join(f"{q:.1f}" for q in quarter_peaks(values))
        lines.append(
            f"{label:<16}{start:10.1f}{peak:8.1f}{end:8.1f}{growth:>9}{cpu_text}  {by_quarter}"
        )
    return lines


def quarter_peaks(values_kb: list[int]) -> list[float]:
    """The peak (MB) of each quarter of a run's samples: a plateau shows as equal last three."""
    size = max(1, -(-len(values_kb) // 4))
    return [max(values_kb[i : i + size]) / 1024 for i in range(0, len(values_kb), size)]


def orchestrator_cpu(sampler: RssSampler, before: str, phase: str) -> float:
    """CPU seconds every orchestrator process used from the end of ``before`` to ``phase``."""
    total = 0.0
    for label in sampler.labels():
        if label.startswith("orchestrator"):
            total += sampler.cpu(before, phase, label) or 0.0
    return total


@dataclass
class Contention:
    """How much the stack's processes waited for a CPU, between two snapshots (Linux
    schedstat: run time and run-queue wait of every thread), and the machine's CPU pressure
    (``/proc/pressure/cpu``: the share of time some task was ready but not running)."""

    stack: Stack
    began_s: float = 0.0
    pressure_us: int = 0
    before: dict[str, tuple[float, float]] = field(default_factory=dict)

    def start(self) -> None:
        self.began_s, self.pressure_us = time.monotonic(), _pressure_us()
        self.before = _sched_by_role(self.stack)

    def lines(self, actions: int) -> list[str]:
        """Run and wait seconds per role since :meth:`start`, and CPU ms per completed action."""
        wall = time.monotonic() - self.began_s
        pressure = (_pressure_us() - self.pressure_us) / 1e6 / wall if self.pressure_us else 0
        parts, costs, total = [], [], 0.0
        for role, (run, wait) in sorted(_sched_by_role(self.stack).items()):
            run0, wait0 = self.before.get(role, (0.0, 0.0))
            parts.append(f"{role} ran {run - run0:.1f} s, waited {wait - wait0:.1f} s")
            costs.append(f"{role} {1000 * (run - run0) / max(actions, 1):.2f}")
            total += run - run0
        return [
            f"  CPU contention over {wall:.1f} s: machine pressure {100 * pressure:.0f}% "
            f"(load {os.getloadavg()[0]:.1f}); {'; '.join(parts)}",
            f"  CPU ms per completed action: {', '.join(costs)}; the stack "
            f"{1000 * total / max(actions, 1):.2f} ({actions / total if total else 0:,.0f} "
            "actions per CPU-second of the whole stack)",
        ]


def _pressure_us() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1])
    return 0


def _sched_by_role(stack: Stack) -> dict[str, tuple[float, float]]:
    """Role -> seconds its threads ran and waited on a run queue, since they started."""
    found: dict[str, tuple[float, float]] = {}
    for pid, name in stack.processes().items():
        run = wait = 0
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError):
                fields = task.read_text().split()
                run, wait = run + int(fields[0]), wait + int(fields[1])
        before = found.get(name, (0.0, 0.0))
        found[name] = (before[0] + run / 1e9, before[1] + wait / 1e9)
    return found


@dataclass
class ApiCalls:
    """JetStream API requests seen on ``$JS.API.>`` (the admin identity may listen there),
    counted by kind, stream and asking role (each role's replies come to its own inbox
    prefix): what the roles ask the server for, besides publishing."""

    counts: Counter[str] = field(default_factory=Counter)

    async def start(self, nc: NatsClient) -> None:
        async def count(msg: Msg) -> None:
            tokens = msg.subject.split(".")
            reply = msg.reply.split(".")
            asker = reply[1] if len(reply) > 1 and reply[0] == "_INBOX" else "?"
            self.counts[f"{'.'.join(tokens[2:5])} ({asker})"] += 1

        await nc.subscribe("$JS.API.>", cb=count)

    def line(self, since: Counter[str], executions: int) -> str:
        delta = self.counts - since
        top = ", ".join(f"{kind} {n / executions:.1f}" for kind, n in delta.most_common(6))
        return f"  JetStream API requests per execution: {top}"


async def redeliveries(nc: NatsClient) -> Counter[str]:
    """Stream -> messages its consumers delivered again (an ack wait ran out, or a nak)."""
    js = nc.jetstream()
    found: Counter[str] = Counter()
    for stream in await js.streams_info():
        name = stream.config.name or ""
        if name.startswith("KV_"):
            continue
        for consumer in await js.consumers_info(name):
            found[name] += consumer.num_redelivered or 0
    return found


def redelivery_line(before: Counter[str], after: Counter[str]) -> str:
    delta = after - before
    text = ", ".join(f"{stream} {n}" for stream, n in sorted(delta.items())) or "none"
    return f"  redelivered by the streams' consumers: {text}"


def warnings_summary(up_stderr: str, top: int = 8) -> list[str]:
    """The roles' most frequent warnings and errors in `tep up`'s stderr (JSON lines), each
    cut to its first words (delivery counts and ids dropped) so that alike ones add up."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for line in up_stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
            message = re.sub(r"\(delivery \d+\)|\d+", "N", str(entry.get("msg", "")))
            counts[(str(entry.get("proc")), str(entry["level"]), message[:90])] += 1
    if not counts:
        return ["roles' warnings and errors: none"]
    lines = ["roles' warnings and errors (most frequent):"]
    lines += [
        f"  {n:6d}  {proc} {level}: {msg}" for (proc, level, msg), n in counts.most_common(top)
    ]
    return lines


async def settle(seconds: float) -> None:
    """Let the sampler take a sample or two before a phase ends."""
    await asyncio.sleep(seconds)
