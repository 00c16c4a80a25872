"""The orchestrator's settings: one typed object, from ``TEP_ORCHESTRATOR_*`` and overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from eventstore.errors import SettingsError

__all__ = ["OrchestratorConfig"]



class OrchestratorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How the orchestrator consumes, leads and caches.

    Every field can be set as ``TEP_ORCHESTRATOR_<FIELD>``, e.g. ``TEP_ORCHESTRATOR_LEASE_S=10``.

    Attributes:
        consumer: the durable pull consumer shared by all replicas.
        lease_bucket: the KV bucket holding the leadership lease.
        lease_key: the lease's key in that bucket.
        lease_s: how long a lease stays valid without renewal; a standby takes over after it.
        renew_s: how often the leader renews.
        ack_wait_s: redelivery delay of an unacknowledged event (a leader that died mid-event).
        pull_batch: messages requested per pull request.
        pull_expires_s: lifetime of a pull request (also the longest a clean stop waits).
        max_ack_pending: unacknowledged events the leader may hold at once.
        cache_size: executions whose state is kept in memory.
        max_conflict_rounds: reload-and-decide rounds before an event is retried later.
    """

    consumer: str = "orchestrator"
    lease_bucket: str = "tep_leases"
    lease_key: str = "orchestrator"
    lease_s: float = 5.0
    renew_s: float = 1.0
    ack_wait_s: float = 10.0
    pull_batch: int = 256
    pull_expires_s: float = 1.0
    max_ack_pending: int = 4096
    cache_size: int = 10_000
    max_conflict_rounds: int = 8

    def __post_init__(self) -> None:
        if not 0 < self.renew_s < self.lease_s:
            raise ValueError(
                f"renew_s ({self.renew_s}) must be positive and below lease_s ({self.lease_s})"
            )
        for name in (
            "ack_wait_s",
            "pull_batch",
            "pull_expires_s",
            "max_ack_pending",
            "cache_size",
            "max_conflict_rounds",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: object
    ) -> OrchestratorConfig:
        """Settings from ``TEP_ORCHESTRATOR_*`` variables, then ``overrides`` (``None`` ignored).

        Raises:
            SettingsError: a value has the wrong type or range.
        """
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        for field in cls.__struct_fields__:
            value = env.get(f"TEP_ORCHESTRATOR_{field.upper()}")
            if value:
                raw[field] = value
        raw.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return msgspec.convert(raw, cls, strict=False)
        except (msgspec.ValidationError, ValueError) as exc:
            raise SettingsError(f"invalid orchestrator setting: {exc}") from exc
