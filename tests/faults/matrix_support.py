"""What the kill matrix, pause, soak, cluster and fuzz tests share: a target that answers after a
delay (and fails on request), plans of chains and fan-outs, faults injected at a chosen point
(SIGSTOP, look, then SIGKILL or SIGCONT), the checks every faulted execution must pass, and the
figures each run reports.

Builds on tests/faults/roles_support.py (the system of `tep` processes) and
tests/faults/executor_fault_support.py (the target that counts calls per Idempotency-Key).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import msgspec
from aiohttp import web
from executor_fault_support import CountingTarget
from nats.js.errors import NotFoundError
from roles_support import FaultSystem, Role, eventually, fault_system, healthy
from system_support import System, dispatches_per_action

from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
)
from eventstore.fold import fold
from eventstore.jetstream.log import EventLog
from eventstore.plan import Action, Plan, RequestSpec, RetryPolicy
from projections import StateManager

__all__ = [
    "DECISIONS",
    "Check",
    "Fault",
    "FaultReport",
    "MatrixSystem",
    "MatrixTarget",
    "TimedEvent",
    "action_timeline",
    "check_execution",
    "eventually",
    "fault_seed",
    "first_after",
    "in_flight_of",
    "kill_executor_mid_call",
    "kill_orchestrator_mid_decision",
    "kill_projector_mid_batch",
    "kill_server",
    "matrix_system",
    "mixed_plan",
    "peak_rss_kb",
    "signal_role",
    "timed_history",
    "view_problem",
]

TERMINAL = (ActionCompleted, ActionFailed, ActionSkipped, ActionCancelled)
DECISIONS = (ActionExecuteRequested, ActionSkipped, ExecutionCompleted, ExecutionFailed)
_ROLE_ARGS = {
    "executor": ("--queue", "http", "--shutdown-grace", "1"),
    "projector": (),
}


# ----------------------------------------------------------------------------- the target


class MatrixTarget(CountingTarget):
    """A :class:`CountingTarget` whose ``/slow/{tail}?delay=S`` also takes ``fail=N`` (and
    ``status=C``, default 500): the first N calls of each Idempotency-Key answer C at once,
    later ones sleep S seconds and answer 200."""

    def __init__(self) -> None:
        super().__init__()
        self._refused: Counter[str] = Counter()
        self.served_at: dict[str, list[float]] = {}
        """Arrival times of the calls that did the work (not refused), per key."""

    async def _slow(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", request.path)
        if self._refused[key] < int(request.query.get("fail", "0")):
            self._refused[key] += 1
            status = int(request.query.get("status", "500"))
            return web.json_response({"failing": True}, status=status)
        self.served_at.setdefault(key, []).append(time.time())
        return await super()._slow(request)

    @property
    def refusals(self) -> int:
        """How many calls were answered with a failure on purpose."""
        return sum(self._refused.values())

    def calls_of(self, execution_id: str, action_id: str) -> list[float]:
        """Wall-clock arrival times of every call of one action."""
        return self.called_at.get(f"{execution_id}:{action_id}", [])

    def effects_of(self, execution_id: str, action_id: str) -> list[float]:
        """Wall-clock arrival times of the calls of one action that did the work."""
        return self.served_at.get(f"{execution_id}:{action_id}", [])

    def called(self, execution_id: str) -> int:
        """How many actions of the execution were called at least once."""
        prefix = f"{execution_id}:"
        return sum(1 for key in self.calls if key.startswith(prefix))


def mixed_plan(
    target: MatrixTarget,
    execution_id: str,
    size: int,
    rng: random.Random,
    *,
    delay_s: tuple[float, float] = (0.03, 0.15),
    failing: float = 0.0,
    retry: RetryPolicy | None = None,
    timeout_s: float | None = None,
) -> Plan:
    """``size`` actions: a root, chains fanned out from it (about sqrt(size) of them, each
    action of a chain waiting for the one before), and a join waiting for every chain.

    Each action calls ``/slow/<execution>/<action>`` with a random delay from ``delay_s``;
    with ``failing`` > 0 that share of actions first answers 500 once or twice (give them a
    ``retry`` policy that allows it).
    """
    assert size >= 4
    width = max(2, round((size - 2) ** 0.5))
    chains: list[list[str]] = [[] for _ in range(width)]
    for n in range(size - 2):
        chains[n % width].append(f"c{n % width}-{len(chains[n % width])}")

    def action(action_id: str, deps: Sequence[str]) -> Action:
        query = {"delay": f"{rng.uniform(*delay_s):.3f}"}
        if failing and rng.random() < failing:
            query["fail"] = str(rng.randint(1, 2))
        spec = RequestSpec(
            url=target.url(f"/slow/{execution_id}/{action_id}"), query=query, timeout_s=timeout_s
        )
        return Action(id=action_id, depends_on=list(deps), request=spec, retry=retry)

    actions = [action("root", [])]
    for chain in chains:
        actions += [action(a, [chain[i - 1] if i else "root"]) for i, a in enumerate(chain)]
    actions.append(action("join", [chain[-1] for chain in chains if chain]))
    return Plan(id=f"mixed-{size}", actions=actions)


# ----------------------------------------------------------------------------- the system


@dataclass
class MatrixSystem:
    """A :class:`FaultSystem` whose roles can be replaced, with projectors as a list, a
    StateManager on the test's connection and the peak RSS seen per role kind."""

    fs: FaultSystem
    projectors: list[Role]
    sm: StateManager
    peak_rss_kb: dict[str, int] = field(default_factory=dict)
    _started: Counter[str] = field(default_factory=Counter)

    @property
    def system(self) -> System:
        return self.fs.system

    @property
    def log(self) -> EventLog:
        return self.fs.system.log

    @property
    def target(self) -> MatrixTarget:
        target = self.fs.system.target
        assert isinstance(target, MatrixTarget)
        return target

    def roles(self, kind: str) -> list[Role]:
        """The live list of roles of ``kind`` (orchestrator, executor, projector)."""
        if kind == "orchestrator":
            return self.system.orchestrators
        if kind == "executor":
            return self.system.executors
        return self.projectors

    def every_role(self) -> list[Role]:
        return [*self.system.orchestrators, *self.system.executors, *self.projectors]

    def note_rss(self) -> None:
        """Record the high-water RSS of every live role and of nats-server."""
        pids: dict[str, list[int]] = {}
        for role in self.every_role():
            pids.setdefault(role.kind, []).append(role.process.pid)
        if self.system.server.pid is not None:
            pids["nats-server"] = [self.system.server.pid]
        for kind, found in pids.items():
            for pid in found:
                peak = peak_rss_kb(pid)
                if peak is not None:
                    self.peak_rss_kb[kind] = max(self.peak_rss_kb.get(kind, 0), peak)

    def start(self, kind: str) -> Role:
        """Start one more ``tep KIND`` and add it to its list."""
        self._started[kind] += 1
        name = f"{kind}-r{self._started[kind]}"
        args = ("--instance-id", name) if kind == "orchestrator" else _ROLE_ARGS[kind]
        role = self.fs.start_role(kind, name, *args)
        self.roles(kind).append(role)
        return role

    async def replace(self, dead: Role) -> Role:
        """Take ``dead`` off its list, start a replacement and wait until it is healthy."""
        roles = self.roles(dead.kind)
        if dead in roles:
            roles.remove(dead)
        role = self.start(dead.kind)
        document = await healthy(role)
        if role.kind == "executor":
            self.system.executor_ids.add(str(document["executor_id"]))
        return role

    async def all_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every live role answers 200 (fails if one exited)."""
        async with aiohttp.ClientSession() as session:
            for role in self.every_role():
                await eventually(
                    lambda r=role: r.health(session), timeout, f"{role.name} unhealthy", 0.05
                )

    async def view_checkpoint(self) -> int:
        return await self.sm.view_checkpoint()


@asynccontextmanager
async def matrix_system(
    directory: Path,
    target: MatrixTarget,
    *,
    orchestrators: int = 2,
    executors: int = 2,
    projectors: int = 1,
) -> AsyncIterator[MatrixSystem]:
    """:func:`fault_system` with ``projectors`` projectors and a StateManager."""
    async with fault_system(
        directory, target, orchestrators=orchestrators, executors=executors
    ) as fs:
        assert fs.projector is not None
        ms = MatrixSystem(fs, [fs.projector], StateManager(fs.system.nc, fs.settings))
        await ms.sm.open()
        try:
            for _ in range(projectors - 1):
                await healthy(ms.start("projector"))
            yield ms
        finally:
            await ms.sm.close()


def peak_rss_kb(pid: int) -> int | None:
    """``VmHWM`` of a live process in kB (``None`` once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# ----------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """One fault injected: what, into whom, at which point, and how fast things recovered."""

    kind: str
    victim: str
    point: str
    reached: bool
    at: float
    progress: int
    details: dict[str, Any] = field(default_factory=dict)
    recovery_s: dict[str, float | None] = field(default_factory=dict)


def signal_role(role: Role, number: signal.Signals) -> None:
    """Send ``number`` to the role's process group."""
    os.killpg(role.process.pid, number)


async def freeze_then(
    role: Role,
    looks_right: Callable[[], Awaitable[Any]],
    too_late: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 10.0,
) -> tuple[bool, Any] | None:
    """SIGSTOP the role and ask ``looks_right``; when it answers something truthy, SIGKILL the
    frozen role, else SIGCONT and try again (after ``timeout``: SIGKILL anyway). When
    ``too_late`` holds first (the run is over), SIGCONT and give up: ``None``.

    Returns whether the point was reached and what ``looks_right`` answered."""
    deadline = time.monotonic() + timeout
    while True:
        signal_role(role, signal.SIGSTOP)
        try:
            seen = await looks_right()
            late = not seen and await too_late()
        except BaseException:
            signal_role(role, signal.SIGCONT)
            raise
        if late:
            signal_role(role, signal.SIGCONT)
            return None
        if seen or time.monotonic() > deadline:
            signal_role(role, signal.SIGKILL)
            role.process.wait(10)
            return bool(seen), seen
        signal_role(role, signal.SIGCONT)
        await anyio.sleep(0.02)


def in_flight_of(events: Iterable[Event], executor_id: str, target: MatrixTarget) -> list[str]:
    """Actions whose current attempt ``executor_id`` started, called the target for, and has
    not settled (no outcome, no attempt failure after it)."""
    last: dict[str, Event] = {}
    for event in events:
        if isinstance(event, (ActionStarted, ActionAttemptFailed, *TERMINAL)):
            last[event.action_id] = event
    return sorted(
        a
        for a, event in last.items()
        if isinstance(event, ActionStarted)
        and event.executor_id == executor_id
        and target.calls_of(event.execution_id, a)
    )


def _ended(ms: MatrixSystem, execution_id: str) -> Callable[[], Awaitable[bool]]:
    async def ended() -> bool:
        return await ms.system.end_of(execution_id) is not None

    return ended


async def kill_executor_mid_call(ms: MatrixSystem, execution_id: str, victim: Role) -> Fault | None:
    """SIGKILL ``victim`` while it has calls of the execution in flight, then replace it
    (``None``: the execution ended first)."""
    executor_id = str((await healthy(victim))["executor_id"])
    ms.note_rss()

    async def cut_off() -> list[str]:
        return in_flight_of(await ms.system.history(execution_id), executor_id, ms.target)

    frozen = await freeze_then(victim, cut_off, _ended(ms, execution_id))
    if frozen is None:
        return None
    fault = Fault(
        "executor",
        victim.name,
        "calls in flight at the target, outcome not stored",
        frozen[0],
        time.time(),
        ms.target.called(execution_id),
        {"cut_off": frozen[1] or [], "executor_id": executor_id},
    )
    replacement = await ms.replace(victim)
    fault.details["replacement_id"] = str((await healthy(replacement))["executor_id"])
    return fault


async def kill_orchestrator_mid_decision(
    ms: MatrixSystem, execution_id: str, victim: Role
) -> Fault | None:
    """SIGKILL ``victim``, the holder of the execution's partition, while it holds events it
    consumed and has not acked (its decision not appended, or appended and not acked), then
    start a replacement."""
    ms.note_rss()

    async def holding() -> int:
        return await ms.system.unsettled(execution_id)

    frozen = await freeze_then(victim, holding, _ended(ms, execution_id))
    if frozen is None:
        return None
    fault = Fault(
        "orchestrator",
        victim.name,
        "events delivered to the leader and not acked",
        frozen[0],
        time.time(),
        ms.target.called(execution_id),
        {"ack_pending": frozen[1] or 0},
    )
    await ms.replace(victim)
    return fault


async def kill_projector_mid_batch(ms: MatrixSystem, execution_id: str) -> Fault | None:
    """SIGKILL a projector while the log is ahead of the view's checkpoint, then replace it and
    measure how long until the view moves again."""
    victim = ms.projectors[0]
    ms.note_rss()

    async def behind() -> tuple[int, int] | None:
        checkpoint, last = await ms.view_checkpoint(), await ms.log.last_sequence()
        return (checkpoint, last) if last > checkpoint else None

    frozen = await freeze_then(victim, behind, _ended(ms, execution_id))
    if frozen is None:
        return None
    seen = frozen[1]
    checkpoint = seen[0] if seen else await ms.view_checkpoint()
    fault = Fault(
        "projector",
        victim.name,
        "events in the log past the view's checkpoint",
        frozen[0],
        time.time(),
        ms.target.called(execution_id),
        {"checkpoint": checkpoint, "log_last_sequence": seen[1] if seen else None},
    )
    await ms.replace(victim)

    async def moved() -> bool:
        return await ms.view_checkpoint() > checkpoint

    await eventually(moved, 60, "the view never moved after the projector was replaced", 0.05)
    fault.recovery_s["view_moved"] = time.time() - fault.at
    return fault


async def kill_server(ms: MatrixSystem, execution_id: str) -> Fault:
    """SIGKILL nats-server and start it again on the same port and data dir."""
    ms.note_rss()
    last = await ms.log.last_sequence()
    server = ms.system.server
    server.kill()
    fault = Fault(
        "nats-server",
        f"nats-server:{server.port}",
        "any (a random moment of the run)",
        True,
        time.time(),
        ms.target.called(execution_id),
        {"log_last_sequence": last},
    )
    server.start()
    fault.details["down_s"] = round(time.time() - fault.at, 3)
    fault.recovery_s.update(await view_recovery(ms, last, fault.at))
    return fault


async def view_recovery(ms: MatrixSystem, sequence: int, since: float) -> dict[str, float | None]:
    """Seconds from ``since`` until: the test's own connection reads the view again, each
    read given 1 s (``client_reads``); the view's checkpoint reaches ``sequence``
    (``view_caught_up``); a projector's health says so (``projector_says_caught_up``); every
    role answers 200 (``roles_healthy``)."""
    marks: dict[str, float | None] = {}

    def mark(name: str) -> None:
        marks.setdefault(name, round(time.time() - since, 3))

    async def view() -> bool:
        # A read sent while the test's own connection reconnects may wait out its whole
        # timeout; ask again instead of measuring that.
        checkpoint = -1
        with anyio.move_on_after(1.0), contextlib.suppress(Exception):
            checkpoint = await ms.view_checkpoint()
        if checkpoint >= 0:
            mark("client_reads")
        return checkpoint >= sequence

    async def projector() -> bool:
        async with aiohttp.ClientSession() as session:
            for role in ms.projectors:
                health = await role.health(session)
                if health is not None and int(health["checkpoint"]) >= sequence:
                    return True
        return False

    async def roles() -> bool:
        async with aiohttp.ClientSession() as session:
            for role in ms.every_role():
                if await role.health(session) is None:
                    return False
        return True

    async def until(name: str, condition: Callable[[], Awaitable[bool]]) -> None:
        await eventually(condition, 90, f"{name}: not after the fault", 0.05)
        mark(name)

    async with anyio.create_task_group() as group:
        group.start_soon(until, "view_caught_up", view)
        group.start_soon(until, "projector_says_caught_up", projector)
        group.start_soon(until, "roles_healthy", roles)
    return marks


# ----------------------------------------------------------------------------- checks


class TimedEvent(msgspec.Struct, frozen=True):
    """An event of the log with the wall-clock time the server stored it."""

    sequence: int
    stored_at: float
    event: Event


async def timed_history(log: EventLog, execution_id: str) -> list[TimedEvent]:
    """The execution's events in log order, each with its stored time (one direct get per
    event: the log's records do not carry it)."""
    records = await log.read_execution(execution_id, timeout=30)
    stored: dict[int, float] = {}

    async def time_of(sequence: int) -> None:
        try:
            msg = await log.js.get_msg(log.stream, sequence, direct=True)
        except NotFoundError:
            return
        stored[sequence] = msg.time.timestamp() if msg.time else 0.0

    for start in range(0, len(records), 64):
        async with anyio.create_task_group() as group:
            for record in records[start : start + 64]:
                group.start_soon(time_of, record.sequence)
    return [TimedEvent(r.sequence, stored.get(r.sequence, 0.0), r.event) for r in records]


async def _retried(read: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """``read()``, asked again while it fails (a failover, a reconnect) until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await read()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.25)


async def view_problem(ms: MatrixSystem, execution_id: str, sequence: int) -> str | None:
    """``None`` when the view's state of the execution (once it applied ``sequence``) equals a
    fresh fold of its history, plan aside; else which fields differ."""
    view = await ms.sm.get_execution_state(execution_id, min_sequence=sequence, timeout=60)
    folded = fold(await _retried(lambda: ms.log.read_execution(execution_id, timeout=10)))
    if view is None or folded is None:
        return f"view {view is not None}, fold {folded is not None}"
    left = msgspec.to_builtins(msgspec.structs.replace(view, plan=None))
    right = msgspec.to_builtins(msgspec.structs.replace(folded, plan=None))
    differing = sorted(k for k in set(left) | set(right) if left.get(k) != right.get(k))
    if not differing:
        return None
    details = {k: (left.get(k), right.get(k)) for k in differing if k != "actions"}
    if "actions" in differing:
        for a, folded_action in right["actions"].items():
            viewed = left["actions"].get(a) or {}
            fields = sorted(k for k in folded_action if viewed.get(k) != folded_action[k])
            if fields:
                details[f"actions.{a}"] = {k: (viewed.get(k), folded_action[k]) for k in fields}
    shown = dict(list(details.items())[:5])
    return f"view differs from the fold (view, fold): {shown}"


@dataclass
class Check:
    """What one execution shows after the faults: every figure and every broken promise."""

    execution_id: str
    actions: int
    end: str | None
    duration_s: float | None
    lost: list[str]
    dispatched_twice: list[str]
    no_effect: list[str]
    raw_hits: dict[int, int]
    duplicate_effects: dict[str, int]
    after_outcome: dict[str, int]
    view: str | None
    problems: list[str]


async def check_execution(
    ms: MatrixSystem,
    execution_id: str,
    plan: Plan,
    *,
    expected_end: type[Event] = ExecutionCompleted,
    duplicates_allowed: set[str] | None = None,
    timeout: float = 90.0,
) -> tuple[Check, list[TimedEvent]]:
    """Wait for the end, then check the promises: the right end, one outcome per action (none
    lost), one dispatch per action, every action's effect at the target, no call after an
    outcome was stored, duplicates only on ``duplicates_allowed`` (``None``: anywhere before
    the outcome), and the view equal to a fresh fold."""
    ids = [a.id for a in plan.actions]

    async def end() -> Event | None:
        # A read sent while the test's connection fails over may time out: ask again.
        with contextlib.suppress(Exception):
            return await ms.system.end_of(execution_id)
        return None

    with contextlib.suppress(AssertionError):  # stuck: reported below with the rest
        await eventually(end, timeout, f"{execution_id} did not end", 0.05)
    history = await _retried(lambda: timed_history(ms.log, execution_id))
    events = [t.event for t in history]
    ends = [t for t in history if isinstance(t.event, ExecutionCompleted | ExecutionFailed)]
    ends += [t for t in history if isinstance(t.event, ExecutionCancelled)]
    outcomes: dict[str, list[TimedEvent]] = {a: [] for a in ids}
    for timed in history:
        if isinstance(timed.event, TERMINAL):
            outcomes.setdefault(timed.event.action_id, []).append(timed)
    lost = [a for a in ids if len(outcomes[a]) != 1]
    dispatched = dispatches_per_action(events)
    twice = sorted(a for a in ids if dispatched[a] > 1)
    calls = {a: ms.target.calls_of(execution_id, a) for a in ids}
    dispatched_ids = {a for a in ids if dispatched[a]}
    no_effect = [a for a in sorted(dispatched_ids) if not ms.target.effects_of(execution_id, a)]
    after = {
        a: sum(1 for at in calls[a] if at > outcomes[a][0].stored_at)
        for a in ids
        if outcomes[a] and calls[a]
    }
    after = {a: n for a, n in after.items() if n}
    effects = {a: ms.target.effects_of(execution_id, a) for a in ids}
    duplicates = {a: len(effects[a]) for a in ids if len(effects[a]) > 1}
    submitted = history[0].stored_at if history else None
    duration = ends[0].stored_at - submitted if ends and submitted else None
    view = None
    if ends:
        view = await view_problem(ms, execution_id, max(t.sequence for t in history))

    problems = []
    if not ends:
        problems.append(f"stuck: no end after {timeout}s")
    elif not isinstance(ends[0].event, expected_end) or len(ends) != 1:
        problems.append(
            f"ends {[type(t.event).__name__ for t in ends]}, expected one {expected_end.__name__}"
        )
    if lost:
        counts = {a: len(outcomes[a]) for a in lost[:10]}
        problems.append(f"{len(lost)} actions without exactly one outcome: {counts}")
    if twice:
        problems.append(f"dispatched twice: {twice[:10]}")
    if no_effect:
        problems.append(f"dispatched, never called: {no_effect[:10]}")
    if after:
        problems.append(f"called after their outcome was stored: {dict(list(after.items())[:10])}")
    if duplicates_allowed is not None:
        unexplained = sorted(set(duplicates) - duplicates_allowed)
        if unexplained:
            problems.append(
                f"called twice without a fault to explain it: "
                f"{ {a: duplicates[a] for a in unexplained[:10]} }"
            )
    if view:
        problems.append(view)
    check = Check(
        execution_id=execution_id,
        actions=len(ids),
        end=type(ends[0].event).__name__ if ends else None,
        duration_s=round(duration, 3) if duration is not None else None,
        lost=lost,
        dispatched_twice=twice,
        no_effect=no_effect,
        raw_hits=dict(sorted(Counter(len(calls[a]) for a in ids).items())),
        duplicate_effects=duplicates,
        after_outcome=after,
        view=view,
        problems=problems,
    )
    return check, history


def action_timeline(
    history: Iterable[TimedEvent], action_id: str, since: float, calls: Iterable[float] = ()
) -> list[str]:
    """One action's events (and its calls at the target), as seconds since ``since``."""
    lines = [(at, "call at the target") for at in calls]
    for timed in history:
        event = timed.event
        if getattr(event, "action_id", None) != action_id:
            continue
        what = str(event.__struct_config__.tag)
        for name in ("attempt", "interruption", "executor_id"):
            if hasattr(event, name):
                what += f" {name}={getattr(event, name)}"
        error = getattr(event, "error", None)
        if error is not None:
            what += f" error={error.code}: {error.message[:80]}"
        lines.append((timed.stored_at, what))
    return [f"{at - since:+.3f}s {what}" for at, what in sorted(lines)]


def first_after(history: Iterable[TimedEvent], at: float, kinds: tuple[type, ...]) -> float | None:
    """Seconds from ``at`` to the first event of ``kinds`` stored after it."""
    times = [t.stored_at for t in history if t.stored_at > at and isinstance(t.event, kinds)]
    return round(min(times) - at, 3) if times else None


# ----------------------------------------------------------------------------- figures


@dataclass
class FaultReport:
    """Figures of one test module's runs, written as JSON into the pytest temp dir."""

    name: str
    seed: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, case: str, check: Check | None = None, **figures: Any) -> None:
        """One run of one execution, with its figures."""
        run: dict[str, Any] = {"case": case, **figures}
        if check is not None:
            run["check"] = asdict(check)
        self.runs.append(_rounded(run))

    def add_many(self, case: str, checks: Sequence[Check], **figures: Any) -> None:
        """One run of many executions: their tally, and in full only those with problems."""
        tally = _tally([asdict(c) for c in checks])
        failing = [asdict(c) for c in checks if c.problems]
        self.runs.append(_rounded({"case": case, "tally": tally, **figures, "failing": failing}))

    def totals(self) -> dict[str, Any]:
        tallies = [_tally([run["check"]]) for run in self.runs if "check" in run]
        tallies += [run["tally"] for run in self.runs if "tally" in run]
        totals = {"faults_injected": sum(len(run.get("faults", [])) for run in self.runs)}
        for key in _TALLY_KEYS:
            totals[key] = sum(t[key] for t in tallies)
        return totals

    def write(self, directory: Path) -> Path:
        path = directory / f"{self.name}.json"
        document = {"seed": self.seed, "totals": self.totals(), **self.extra, "runs": self.runs}
        path.write_text(json.dumps(document, indent=2, default=str))
        return path

    def summary(self) -> str:
        lines = [f"{self.name} (seed {self.seed}): {json.dumps(self.totals())}"]
        for run in self.runs:
            if "tally" in run:
                figures = {k: v for k, v in run.items() if k not in {"case", "faults", "failing"}}
                faults = Counter(f["kind"] for f in run.get("faults", []))
                lines.append(f"  {run['case']}: kills {dict(faults)} {json.dumps(figures)}")
                continue
            check = run.get("check", {})
            faults = [
                f"{f['kind']}@{f.get('progress', '-')}"
                f"{'' if f.get('reached', True) else '(point not reached)'} "
                f"{json.dumps(f.get('recovery_s', {}))}"
                for f in run.get("faults", [])
            ]
            baseline = (
                f" (no fault {run['baseline_s']}s, +{run.get('extra_vs_baseline_s')}s)"
                if run.get("baseline_s") is not None
                else ""
            )
            lines.append(
                f"  {run['case']}: end={check.get('end')} duration={check.get('duration_s')}s"
                f"{baseline} raw hits per action={check.get('raw_hits')} "
                f"problems={len(check.get('problems', []))} faults={faults}"
            )
        if self.extra:
            lines.append(f"  {json.dumps(self.extra, default=str)}")
        return "\n".join(lines)


_TALLY_KEYS = (
    "executions",
    "actions",
    "lost",
    "stuck",
    "dispatched_twice",
    "duplicate_effects",
    "calls_after_outcome",
    "view_mismatches",
)


def _tally(checks: Sequence[dict[str, Any]]) -> dict[str, int]:
    """The figures of many checks (as dicts) added up."""
    return {
        "executions": len(checks),
        "actions": sum(c["actions"] for c in checks),
        "lost": sum(len(c["lost"]) for c in checks),
        "stuck": sum(1 for c in checks if c["end"] is None),
        "dispatched_twice": sum(len(c["dispatched_twice"]) for c in checks),
        "duplicate_effects": sum(len(c["duplicate_effects"]) for c in checks),
        "calls_after_outcome": sum(sum(c["after_outcome"].values()) for c in checks),
        "view_mismatches": sum(1 for c in checks if c["view"]),
    }


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    if isinstance(value, Fault):
        return _rounded(asdict(value))
    return value


def fault_seed() -> int:
    """``TEP_FAULT_SEED`` to replay a run, else a fresh one (printed with the figures)."""
    return int(os.environ.get("TEP_FAULT_SEED") or random.SystemRandom().randrange(10**6))
