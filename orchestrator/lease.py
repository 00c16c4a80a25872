"""Leadership among orchestrator replicas: a lease in a KV bucket, taken and kept by CAS.

One key holds ``{"holder": <instance>, "renewed_at": ...}``. The leader rewrites it every
``renew_s`` with compare-and-set on the revision it last wrote; any other write in between
(a standby that took over) makes the CAS fail and the leader steps down. Standbys poll the key
and take it over by CAS once its revision has not changed for ``lease_s`` *as measured on their
own clock*, so clocks of different hosts are never compared. A leader that cannot renew for
60 % of ``lease_s`` steps down on its own, before any standby may take over. A clean stop
releases the lease (``holder: null``), which standbys take at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from eventstore.events import utc_now

__all__ = ["Lease", "LeaseRecord"]

_log = logging.getLogger("tep.orchestrator.lease")
_STEP_DOWN_FRACTION = 0.6


class LeaseRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The value of the lease key."""

    holder: str | None
    renewed_at: str | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(LeaseRecord).decode


class Lease:
    """Competes for, keeps and releases the lease of one key.

    Args:
        kv: the bucket.
        key: the lease key.
        holder: this replica's unique id.
        lease_s: validity of a lease that is not renewed.
        renew_s: the leader's renewal period (standbys poll twice as often).
        on_change: called with the new leadership flag whenever it changes.
    """

    def __init__(
        self,
        kv: KeyValue,
        key: str,
        holder: str,
        *,
        lease_s: float,
        renew_s: float,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.kv = kv
        self.key = key
        self.holder = holder
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.on_change = on_change
        self.is_leader = False
        self.leader: str | None = None
        self._revision = 0
        self._renewed_at = 0.0
        self._seen_revision = 0
        self._seen_at = 0.0
        self._elected = anyio.Event()

    async def run(self) -> None:
        """Compete for and keep the lease until cancelled."""
        while True:
            try:
                if self.is_leader:
                    await self._renew()
                else:
                    await self._try_acquire()
            except Exception as exc:
                _log.warning("lease %s: %s", "renewal" if self.is_leader else "poll", exc)
            if self.is_leader and time.monotonic() - self._renewed_at > (
                self.lease_s * _STEP_DOWN_FRACTION
            ):
                self._set_leader(False, "could not renew the lease in time")
            await anyio.sleep(self.renew_s if self.is_leader else self.renew_s / 2)

    async def wait_until_leader(self) -> None:
        """Return once this replica holds the lease."""
        while not self.is_leader:
            await self._elected.wait()

    async def release(self) -> None:
        """Give the lease up so a standby takes over at once (no-op unless leading).

        Best effort: if the server cannot be reached, the lease simply expires.
        """
        if not self.is_leader:
            return
        self._set_leader(False, "released")
        try:
            await self.kv.update(self.key, _encode(LeaseRecord(holder=None)), last=self._revision)
        except KeyWrongLastSequenceError:
            pass  # someone else holds it already
        except Exception as exc:
            _log.warning("lease not released (it expires on its own): %s", exc)

    # ----------------------------------------------------------------------------

    def _record(self) -> bytes:
        return _encode(LeaseRecord(holder=self.holder, renewed_at=utc_now()))

    async def _renew(self) -> None:
        started = time.monotonic()  # the lease runs from the request, not from its answer
        try:
            self._revision = await self.kv.update(self.key, self._record(), last=self._revision)
        except KeyWrongLastSequenceError:
            self._set_leader(False, "the lease was taken over")
            return
        self._renewed_at = started

    async def _try_acquire(self) -> None:
        try:
            entry = await self.kv.get(self.key)
        except KeyNotFoundError:
            await self._take(None)
            return
        now = time.monotonic()
        revision = int(entry.revision or 0)
        if revision != self._seen_revision:
            self._seen_revision, self._seen_at = revision, now
        try:
            record = _decode(entry.value or b"")
        except msgspec.DecodeError:
            record = LeaseRecord(holder=None)
        self.leader = record.holder
        if record.holder in (None, self.holder) or now - self._seen_at >= self.lease_s:
            await self._take(revision)

    async def _take(self, revision: int | None) -> None:
        started = time.monotonic()
        try:
            if revision is None:
                self._revision = await self.kv.create(self.key, self._record())
            else:
                self._revision = await self.kv.update(self.key, self._record(), last=revision)
        except KeyWrongLastSequenceError:
            return  # another standby was faster
        self._renewed_at = started
        self._set_leader(True, "acquired the lease")

    def _set_leader(self, leading: bool, why: str) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        self.leader = self.holder if leading else None
        _log.info(
            "leadership %s: %s", "gained" if leading else "lost", why, extra={"holder": self.holder}
        )
        if leading:
            self._elected.set()
        else:
            self._elected = anyio.Event()
            self._seen_revision, self._seen_at = 0, 0.0
        if self.on_change is not None:
            self.on_change(leading)
