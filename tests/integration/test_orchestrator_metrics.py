"""A process samples only the partition consumers it reads: a handed-over one's figures go."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from support.waiting import eventually
from test_orchestrator import orchestrator

from eventstore.config import TepSettings
from eventstore.jetstream.connection import NatsClient
from eventstore.partitions import partition_consumer
from orchestrator.service import Orchestrator

pytestmark = pytest.mark.anyio


def _sampled_consumers() -> set[str]:
    return {
        sample.labels["consumer"]
        for metric in REGISTRY.collect()
        if metric.name == "tep_consumer_pending"
        for sample in metric.samples
        if sample.labels.get("consumer", "").startswith("orchestrator-p")
    }


async def test_a_partition_handed_over_is_no_longer_sampled_here(
    nc: NatsClient, settings: TepSettings
) -> None:
    def consumers(service: Orchestrator) -> set[str]:
        return {partition_consumer(service.config.consumer, p) for p in service.held}

    async with orchestrator(settings, "o1") as first:

        async def holds_all() -> bool:
            return len(first.held) == 16

        await eventually(holds_all, 15, "o1 never held every partition")
        await first.sample_metrics()
        assert _sampled_consumers() >= consumers(first)
        assert len(consumers(first)) == 16

        async with orchestrator(settings, "o2") as second:

            async def shared() -> bool:
                return bool(second.held) and len(first.held) + len(second.held) == 16

            await eventually(shared, 20, "o2 never took a share of the partitions")
            await first.sample_metrics()
            # Only o1 sampled: what o2 reads now is not counted here.
            assert _sampled_consumers() == consumers(first)
