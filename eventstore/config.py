"""One typed settings object, read from ``TEP_*`` environment variables and validated once."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from eventstore.errors import SettingsError

__all__ = ["DEFAULT_NATS_URL", "Settings", "SettingsError"]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Where the log lives and how it is provisioned.

    Every field can be set from the environment as ``TEP_<FIELD>`` (upper case), e.g.
    ``TEP_NATS_URL``, ``TEP_REPLICAS=3``, ``TEP_MAX_ACTIONS=2000``.
    """

    nats_url: str = DEFAULT_NATS_URL
    stream: str = "TEP_EVENTS"
    deadletter_stream: str = "TEP_DEADLETTER"
    replicas: int = 1
    duplicate_window_s: float = 300.0
    max_msg_bytes: int = 1024 * 1024
    max_actions: int = 5000
    max_plan_bytes: int = 900 * 1024
    connect_timeout_s: float = 3.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``TEP_*`` variables, then explicit ``overrides`` (``None`` ignored)."""
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        for field in cls.__struct_fields__:
            value = env.get(f"TEP_{field.upper()}")
            if value is not None and value != "":
                raw[field] = value
        raw.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"invalid setting: {exc} (environment TEP_<NAME>)") from exc

    def __post_init__(self) -> None:
        if self.replicas not in (1, 3, 5):
            raise ValueError(f"replicas must be 1, 3 or 5 (got {self.replicas})")
        if self.max_plan_bytes >= self.max_msg_bytes:
            raise ValueError(
                f"max_plan_bytes ({self.max_plan_bytes}) must be below "
                f"max_msg_bytes ({self.max_msg_bytes}) to leave room for the event envelope"
            )
        for name in ("duplicate_window_s", "max_actions", "max_msg_bytes", "connect_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
