"""The orchestrator's settings section: ``TEP_ORCHESTRATOR_*``, flags on top."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from eventstore.config import SettingsBase
from eventstore.partitions import ORCHESTRATOR_CONSUMER

__all__ = ["OrchestratorConfig"]


class OrchestratorConfig(SettingsBase):
    """How the orchestrator consumes, leads and caches.

    Every field is the variable ``TEP_ORCHESTRATOR_<FIELD>``, e.g.
    ``TEP_ORCHESTRATOR_LEASE_S=10``.
    """

    model_config = SettingsConfigDict(env_prefix="TEP_ORCHESTRATOR_")
    title: ClassVar[str] = "orchestrator setting"

    consumer: str = Field(
        ORCHESTRATOR_CONSUMER,
        description="what the partitions' durable consumers are named after "
        "(`orchestrator-p03`); every process serving a partition uses its consumer",
    )
    lease_bucket: str = Field(
        "tep_leases",
        description="KV bucket holding the partitions' leases and the live processes",
    )
    lease_s: float = Field(
        3.0,
        description="a partition lease not renewed for this long lets another process take "
        "the partition over (a process not heard from for this long counts as gone)",
    )
    renew_s: float = Field(
        0.5, description="how often a process renews its leases (must be below the lease time)"
    )
    ack_wait_s: float = Field(
        3.0,
        gt=0,
        description="redelivery delay of an event a process took but did not finish (events "
        "still being worked on are kept with in-progress acks every third of it)",
    )
    pull_batch: int = Field(256, gt=0, description="messages per pull request")
    pull_expires_s: float = Field(
        1.0, gt=0, description="lifetime of a pull request (also the longest a clean stop waits)"
    )
    max_ack_pending: int = Field(
        256,
        gt=0,
        description="unfinished events a partition's holder may have in hand (16 partitions "
        "held by one process: 4,096)",
    )
    max_batch: int = Field(
        128,
        gt=0,
        le=1000,
        description="action outcomes of one execution, waiting together, decided as one: one "
        "state, one atomic append, then every ack (1: one at a time)",
    )
    max_deciding: int = Field(
        64,
        gt=0,
        description="executions decided at once by one process, over all its partitions (the "
        "others wait their turn): bounds what is asked of the server at once, so a burst of "
        "thousands queues here instead of timing out there and being retried",
    )
    cache_size: int = Field(
        10_000,
        gt=0,
        description="execution states kept in memory (others are folded from the log on demand)",
    )
    max_conflict_rounds: int = Field(
        8,
        gt=0,
        description="reload-and-decide rounds on a version conflict before the event is "
        "retried later",
    )
    max_deliveries: int = Field(
        10,
        gt=0,
        description="deliveries of an event that keeps failing (NATS errors, conflicts) "
        "before it goes to the dead-letter stream; retries back off from 1 s to 60 s",
    )

    @model_validator(mode="after")
    def _renew_within_lease(self) -> Self:
        if not 0 < self.renew_s < self.lease_s:
            raise ValueError(
                f"renew_s ({self.renew_s}) must be positive and below lease_s ({self.lease_s})"
            )
        return self
