"""The plan registry on JetStream: named, validated plans in the KV bucket ``tep_plans``.

See :mod:`eventstore.plan_registry` for what the bucket holds. ``tep provision`` (and ``tep
up``) create the bucket; clients put and read plans, the orchestrator reads the plans of the
sub-plan actions it starts.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.errors import NotFoundError as StreamNotFoundError
from nats.js.kv import KeyValue

from eventstore.jetstream.consumer_read import read_matching
from eventstore.jetstream.kv_protocol import is_deleted, kv_stream, kv_subject_prefix
from eventstore.jetstream.provision import ensure_kv
from eventstore.plan import Plan
from eventstore.plan_registry import (
    PLAN_BUCKET,
    PlanRegistryError,
    RegisteredPlan,
    RegistryEntry,
    decode_entry,
    encode_entry,
    plan_key,
    plan_name_of,
)

__all__ = ["PlanRegistry"]

_READ_TIMEOUT_S = 10.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class PlanRegistry:
    """Reads and writes the plan registry.

    Build it with :meth:`open` (``None`` when the bucket does not exist) or :meth:`ensure`
    (creating the bucket, for the admin and servers without authorization).

    Plans are stored as given: validate them first (``parse_plan``), as ``tep plan put`` and
    ``StateManager.put_plan`` do.
    """

    def __init__(self, nc: NatsClient, kv: KeyValue) -> None:
        self.nc = nc
        self.kv = kv

    @classmethod
    async def ensure(
        cls, nc: NatsClient, js: JetStreamContext, *, replicas: int = 1
    ) -> PlanRegistry:
        """The registry, creating its bucket if needed."""
        return cls(nc, await ensure_kv(js, PLAN_BUCKET, replicas=replicas))

    @classmethod
    async def open(cls, nc: NatsClient, js: JetStreamContext) -> PlanRegistry | None:
        """The registry, or ``None`` when its bucket does not exist."""
        try:
            return cls(nc, await js.key_value(PLAN_BUCKET))
        except (BucketNotFoundError, StreamNotFoundError):
            return None

    async def put(self, name: str, plan: Plan) -> int:
        """Store ``plan`` as the newest revision of ``name``; the revision.

        Raises:
            PlanRegistryError: ``name`` is not a valid registry name.
        """
        entry = RegistryEntry(plan=plan, stored_at=_now())
        return int(await self.kv.put(plan_key(name), encode_entry(entry)))

    async def get(self, name: str) -> RegisteredPlan | None:
        """The newest revision of ``name``, or ``None`` when nothing (or a deleted plan) is there.

        Raises:
            PlanRegistryError: ``name`` is not a valid registry name, or its value is unreadable.
        """
        try:
            entry = await self.kv.get(plan_key(name))
        except KeyNotFoundError:  # also a deleted key
            return None
        if entry.value is None:
            return None
        return decode_entry(name, entry.value, int(entry.revision or 0))

    async def delete(self, name: str) -> bool:
        """Remove ``name`` (its history stays in the bucket's stream); whether it existed."""
        if await self.get(name) is None:
            return False
        await self.kv.delete(plan_key(name))
        return True

    async def read_all(self) -> tuple[list[RegisteredPlan], dict[str, str]]:
        """Every registered plan by name, and the names whose value is unreadable (with why)."""
        prefix = kv_subject_prefix(PLAN_BUCKET)

        def live(msg: Msg) -> tuple[str, bytes, int] | None:
            if msg.headers and is_deleted(msg.headers):
                return None
            return msg.subject.removeprefix(prefix), msg.data, msg.metadata.sequence.stream

        entries = await read_matching(
            self.nc,
            self.nc.jetstream(timeout=_READ_TIMEOUT_S),
            kv_stream(PLAN_BUCKET),
            [prefix + ">"],
            live,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            timeout=_READ_TIMEOUT_S,
        )
        plans: list[RegisteredPlan] = []
        unreadable: dict[str, str] = {}
        for key, data, revision in entries:
            name = plan_name_of(key)
            if name is None:
                continue
            try:
                plans.append(decode_entry(name, data, revision))
            except PlanRegistryError as exc:
                unreadable[name] = str(exc)
        return sorted(plans, key=lambda p: p.name), unreadable
