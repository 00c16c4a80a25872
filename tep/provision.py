"""Creating everything the roles use, as the admin: the log, the dead letters and the buckets.

On a server with the shipped authorization no role may create or change a stream: a stream
can record any subject, so whoever may create one could record other identities' replies.
``tep up`` provisions its own server; elsewhere ``tep provision`` runs once with the admin
identity before the roles start. Both are idempotent: what exists is checked, never changed.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from eventstore.config import TepSettings
from eventstore.jetstream.payloads import ensure_payload_store
from eventstore.jetstream.provision import ensure_kv, ensure_log
from eventstore.partitions import partition_stream
from eventstore.plan_registry import PLAN_BUCKET
from eventstore.schedules import SCHEDULE_BUCKET
from orchestrator.config import OrchestratorConfig
from projections.buckets import ensure_current_view

__all__ = ["provision"]


async def provision(js: JetStreamContext, settings: TepSettings) -> list[str]:
    """Ensure the streams and buckets exist; the names of what now exists.

    Raises:
        ConfigConflictError: one exists with settings that differ from ours.
    """
    await ensure_log(js, settings)
    _, pointer, _ = await ensure_current_view(js, settings)
    lease_bucket = OrchestratorConfig.from_env().lease_bucket
    await ensure_kv(js, lease_bucket, replicas=settings.replicas)
    await ensure_kv(js, SCHEDULE_BUCKET, replicas=settings.replicas)
    await ensure_kv(js, PLAN_BUCKET, replicas=settings.replicas)
    payloads = await ensure_payload_store(js, settings)
    return [
        settings.stream,
        settings.deadletter_stream,
        partition_stream(settings.stream),
        "KV_tep_meta",
        f"KV_{pointer.bucket}",
        f"KV_{lease_bucket}",
        f"KV_{SCHEDULE_BUCKET}",
        f"KV_{PLAN_BUCKET}",
        payloads,
    ]
