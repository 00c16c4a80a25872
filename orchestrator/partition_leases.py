"""Partition leases: which orchestrator process holds which partition, taken and kept by CAS.

The lease bucket holds one key per partition, ``partition.<n>`` =
``{"holder": <instance>, "renewed_at": ...}``, and one per live process, ``member.<instance>``.
Every process watches the bucket, renews its member key and the leases it holds every
``renew_s`` by compare-and-set on the revision it last wrote (a failed CAS means another process
took the partition over: it stops serving it at once), and applies the balancing rule of
:mod:`orchestrator.balance`: take free or expired partitions up to its share, give up the rest.

A lease or member key whose revision has not changed for ``lease_s`` *as measured on this
process's clock* has expired, so clocks of different hosts are never compared. A holder that
could not renew for 60 % of ``lease_s`` stops serving on its own, before anyone may take over.
Giving a partition up stops serving it first (its messages handed back), then writes
``holder: null``, which the others see through their watch and take at once. Correctness does
not rest on the leases: every decision is appended with a guard, so two holders of one
partition for a moment can never store a second dispatch; the leases keep processes from doing
the same work twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from eventstore.events import utc_now
from orchestrator.balance import moves

__all__ = ["LeaseRecord", "PartitionLeases", "member_key", "partition_key", "read_leases"]

_log = logging.getLogger("tep.orchestrator.leases")
_STEP_DOWN_FRACTION = 0.6
_RESYNC_S = 30.0
_DELETED = ("DEL", "PURGE")


class LeaseRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a partition's lease key (and of a member key: ``holder`` is the member)."""

    holder: str | None
    renewed_at: str | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(LeaseRecord).decode


def partition_key(partition: int) -> str:
    """The lease key of ``partition``."""
    return f"partition.{partition}"


def member_key(instance: str) -> str:
    """The key a live process keeps renewed."""
    return f"member.{instance}"


@dataclass
class _Seen:
    holder: str | None
    revision: int
    changed_at: float  # monotonic, when this revision was first seen


class PartitionLeases:
    """Competes for, keeps, balances and releases the leases of ``count`` partitions.

    Args:
        kv: the lease bucket.
        holder: this process's unique id.
        count: the number of partitions.
        lease_s: validity of a lease (and a membership) that is not renewed.
        renew_s: the renewal period (the table is looked at twice as often, and at once
            whenever it changes).
        serve: called with a partition this process now holds (it must not block).
        stop: awaited with a partition this process no longer holds, to stop serving it:
            before giving it up, or after it was taken over or could not be renewed.
    """

    def __init__(
        self,
        kv: KeyValue,
        holder: str,
        count: int,
        *,
        lease_s: float,
        renew_s: float,
        serve: Callable[[int], None],
        stop: Callable[[int], Awaitable[None]],
    ) -> None:
        self.kv = kv
        self.holder = holder
        self.count = count
        self.lease_s = lease_s
        self.renew_s = renew_s
        self._serve = serve
        self._stop = stop
        self.held: dict[int, int] = {}  # partition -> revision we last wrote
        self._renewed_at: dict[int, float] = {}
        self._table: dict[str, _Seen] = {}
        self._free_since: dict[int, float] = {}
        self._changed = anyio.Event()
        self._last_renewal = 0.0

    def holders(self) -> dict[int, str | None]:
        """Each partition's live holder as this process sees it (``None``: free or expired)."""
        now = time.monotonic()
        result: dict[int, str | None] = {}
        for partition in range(self.count):
            if partition in self.held:
                result[partition] = self.holder
                continue
            seen = self._table.get(partition_key(partition))
            live = seen is not None and now - seen.changed_at < self.lease_s
            holder = seen.holder if seen is not None and live else None
            result[partition] = None if holder == self.holder else holder
        return result

    def fresh(self, partition: int) -> bool:
        """Whether this process holds ``partition`` and renewed it recently enough to act on
        it: not after a pause, or a stall, that let its lease run towards expiry (no one may
        take it over before 60 % of the lease time has passed twice over)."""
        renewed = self._renewed_at.get(partition)
        if partition not in self.held or renewed is None:
            return False
        return time.monotonic() - renewed <= self.lease_s * _STEP_DOWN_FRACTION

    def members(self) -> list[str]:
        """The live processes' ids (this one included)."""
        now = time.monotonic()
        prefix = member_key("")
        live = {
            key.removeprefix(prefix)
            for key, seen in self._table.items()
            if key.startswith(prefix) and seen.holder and now - seen.changed_at < self.lease_s
        }
        return sorted(live | {self.holder})

    async def run(self) -> None:
        """Watch the bucket and keep a fair share of the partitions until cancelled."""
        async with anyio.create_task_group() as group:
            await group.start(self._watch)
            while True:
                try:
                    await self._round()
                except Exception as exc:
                    _log.warning("partition leases: %s", exc, extra={"holder": self.holder})
                with anyio.move_on_after(self.renew_s / 2):
                    await self._changed.wait()
                self._changed = anyio.Event()

    async def release_all(self) -> None:
        """Stop serving and give up every partition, and leave (best effort: whatever is not
        released expires)."""
        await self._stop_all(list(self.held), self._give_up)
        try:
            await self.kv.delete(member_key(self.holder))
        except Exception as exc:
            _log.warning("membership not removed (it expires on its own): %s", exc)

    # ----------------------------------------------------------------------------

    async def _round(self) -> None:
        now = time.monotonic()
        taken = await self._renew(now) if now - self._last_renewal >= self.renew_s else []
        late = [p for p in self.held if p not in taken and not self.fresh(p)]
        async with anyio.create_task_group() as stopping:
            for partition in taken:
                stopping.start_soon(partial(self._lost, partition, why="taken over"))
            for partition in late:
                stopping.start_soon(
                    partial(self._lost, partition, why="could not renew its lease in time")
                )
        holders = self.holders()
        now = time.monotonic()
        for partition, holder in holders.items():
            if holder is None:
                self._free_since.setdefault(partition, now)
            else:
                self._free_since.pop(partition, None)
        long_free = {p for p, since in self._free_since.items() if now - since >= self.lease_s}
        # Taken by CAS on the revisions the plan was made from: a lease written meanwhile
        # (by its holder, or by someone taking it) makes the take fail.
        planned = {p: self._revision_of(p) for p in range(self.count)}
        plan = moves(self.holder, self.members(), self.count, holders, long_free=long_free)
        await self._stop_all(plan.release, self._give_up)
        for partition in plan.take:
            await self._take(partition, planned[partition])

    async def _renew(self, now: float) -> list[int]:
        """Renew the membership and every lease held; the partitions found taken over."""
        await self.kv.put(member_key(self.holder), self._record())
        self._last_renewal = now
        taken: list[int] = []

        async def renew(partition: int, revision: int) -> None:
            started = time.monotonic()  # the lease runs from the request, not its answer
            try:
                written = await self.kv.update(partition_key(partition), self._record(), revision)
            except KeyWrongLastSequenceError:
                taken.append(partition)
                return
            except Exception as exc:  # not renewed: it goes stale, then is given up
                _log.debug("lease of partition %s not renewed: %s", partition, exc)
                return
            if self.held.get(partition) == revision:
                self.held[partition] = written
                self._renewed_at[partition] = started

        # All at once: one after another, under load the last waited for all the others.
        async with anyio.create_task_group() as group:
            for partition, revision in list(self.held.items()):
                group.start_soon(renew, partition, revision)
        return taken

    @staticmethod
    async def _stop_all(
        partitions: Iterable[int], stop: Callable[[int], Coroutine[Any, Any, None]]
    ) -> None:
        async with anyio.create_task_group() as group:
            for partition in partitions:
                group.start_soon(stop, partition)

    def _revision_of(self, partition: int) -> int | None:
        seen = self._table.get(partition_key(partition))
        return None if seen is None else seen.revision

    async def _take(self, partition: int, planned: int | None) -> None:
        if self._revision_of(partition) != planned:
            return  # written since the plan was made: the next round looks again
        key = partition_key(partition)
        started = time.monotonic()
        try:
            if planned is None:
                revision = await self.kv.create(key, self._record())
            else:
                revision = await self.kv.update(key, self._record(), planned)
        except KeyWrongLastSequenceError:
            return  # another process was faster, or the holder renewed meanwhile
        self.held[partition] = revision
        self._renewed_at[partition] = started
        self._free_since.pop(partition, None)
        _log.info(
            "took partition %s",
            partition,
            extra={"holder": self.holder, "partition": partition, "held": sorted(self.held)},
        )
        self._serve(partition)

    async def _give_up(self, partition: int) -> None:
        revision = self.held.pop(partition, None)
        self._renewed_at.pop(partition, None)
        if revision is None:
            return
        await self._stop(partition)
        free = _encode(LeaseRecord(holder=None, renewed_at=utc_now()))
        try:
            await self.kv.update(partition_key(partition), free, revision)
        except KeyWrongLastSequenceError:
            pass  # someone holds it already
        except Exception as exc:
            _log.warning("partition %s not released (it expires on its own): %s", partition, exc)
        _log.info(
            "gave up partition %s",
            partition,
            extra={"holder": self.holder, "partition": partition, "held": sorted(self.held)},
        )

    async def _lost(self, partition: int, *, why: str) -> None:
        if self.held.pop(partition, None) is None:
            return
        self._renewed_at.pop(partition, None)
        _log.warning(
            "lost partition %s: %s",
            partition,
            why,
            extra={"holder": self.holder, "partition": partition, "held": sorted(self.held)},
        )
        await self._stop(partition)

    def _record(self) -> bytes:
        return _encode(LeaseRecord(holder=self.holder, renewed_at=utc_now()))

    async def _watch(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Keep the table of the bucket's keys; re-read it now and then (a watch that missed
        something then heals)."""
        started = False
        while True:
            try:
                watcher = await self.kv.watchall()
                try:
                    with anyio.move_on_after(_RESYNC_S):
                        async for entry in watcher:
                            if entry is None:  # the current values are all in
                                if not started:
                                    started = True
                                    task_status.started()
                                continue
                            self._note(entry.key, entry.value, entry.revision, entry.operation)
                finally:
                    await watcher.stop()  # type: ignore[no-untyped-call]
            except Exception as exc:
                _log.warning("lease watch: %s; watching again", exc)
                await anyio.sleep(self.renew_s)

    def _note(
        self, key: str, value: bytes | None, revision: int | None, operation: str | None
    ) -> None:
        revision = int(revision or 0)
        seen = self._table.get(key)
        if seen is not None and seen.revision == revision:
            return
        holder: str | None = None
        if operation not in _DELETED:
            try:
                holder = _decode(value or b"").holder
            except msgspec.DecodeError:
                holder = None
        self._table[key] = _Seen(holder, revision, time.monotonic())
        self._changed.set()


async def read_leases(kv: KeyValue, count: int) -> dict[int, LeaseRecord]:
    """Each partition's lease as recorded (holder ``None``: free, or never taken)."""
    result: dict[int, LeaseRecord] = {}
    for partition in range(count):
        try:
            entry = await kv.get(partition_key(partition))
            result[partition] = _decode(entry.value or b"")
        except (KeyNotFoundError, msgspec.DecodeError):
            result[partition] = LeaseRecord(holder=None)
    return result
