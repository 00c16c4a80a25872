"""How far behind each partition's consumer is (for ``tep status --partitions`` and the
metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from eventstore.config import TepSettings
from eventstore.jetstream.provision import partition_count
from eventstore.partitions import ORCHESTRATOR_CONSUMER, partition_consumer, partition_stream

__all__ = ["Backlog", "partition_backlogs"]


@dataclass(frozen=True)
class Backlog:
    """One partition consumer's backlog: events not yet delivered, delivered and unsettled;
    and the server that leads the consumer (on a cluster)."""

    pending: int
    ack_pending: int
    exists: bool = True
    node: str | None = None


async def partition_backlogs(
    js: JetStreamContext,
    settings: TepSettings,
    *,
    prefix: str = ORCHESTRATOR_CONSUMER,
) -> dict[int, Backlog]:
    """Each partition's backlog (none before the deployment was provisioned)."""
    stream = partition_stream(settings.stream)
    count = await partition_count(js) or 0
    result: dict[int, Backlog] = {}
    for partition in range(count):
        try:
            info = await js.consumer_info(stream, partition_consumer(prefix, partition))
        except NotFoundError:
            result[partition] = Backlog(0, 0, exists=False)
            continue
        node = info.cluster.leader if info.cluster is not None else None
        result[partition] = Backlog(
            int(info.num_pending or 0), int(info.num_ack_pending or 0), node=node
        )
    return result
