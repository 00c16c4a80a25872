"""One typed configuration: ``TEP_*`` environment variables, flags on top, validated once.

:class:`TepSettings` holds what every process shares (where the log lives, its limits, logging);
each role adds a section on the same base (``orchestrator.config.OrchestratorConfig``,
``executor.config.ExecutorConfig``), each with its own variable prefix. A value given
explicitly (a command-line flag) wins over the environment, which wins over the default. A bad
value raises :class:`~eventstore.errors.SettingsError` with one line naming the variable.
``docs/configuration.md`` is generated from these classes (``python -m tep.config_docs``).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import (
    SettingsError as PydanticSettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from eventstore.errors import SettingsError
from eventstore.partitions import DEFAULT_PARTITIONS, MAX_PARTITIONS
from eventstore.payloads import (
    DEFAULT_INLINE_BYTES,
    DEFAULT_MAX_BYTES,
    DEFAULT_PAYLOAD_BUCKET,
    PayloadLimits,
)
from eventstore.plan_validation import DEFAULT_PLAN_LIMITS, PlanLimits

__all__ = [
    "DEFAULT_NATS_URL",
    "PAYLOAD_ENVELOPE_BYTES",
    "SettingsBase",
    "SettingsError",
    "TepSettings",
    "default_state_dir",
]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
PAYLOAD_ENVELOPE_BYTES = 16 * 1024
"""Room an inline value leaves in its message for the event around it (ids, times, headers)."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/tep``, else ``~/.local/state/tep``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tep"


_ENVIRONMENT: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "tep_settings_environment", default=None
)


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of ``os.environ``."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENVIRONMENT.get()
        assert env is not None
        return parse_env_vars(env, self.case_sensitive, self.env_ignore_empty, None)


@contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    token = _ENVIRONMENT.set(env)
    try:
        yield
    finally:
        _ENVIRONMENT.reset(token)


class SettingsBase(BaseSettings):
    """What every settings section shares: frozen, ``TEP_*`` names, one-line errors.

    A section sets ``model_config = SettingsConfigDict(env_prefix=...)`` and its fields; every
    field should have a ``description`` (it becomes the documentation).
    """

    model_config = SettingsConfigDict(
        env_prefix="TEP_", frozen=True, extra="ignore", env_ignore_empty=True, populate_by_name=True
    )
    title: ClassVar[str] = "settings"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_one_line(type(self), exc, set(values))) from None
        except PydanticSettingsError as exc:
            # A list-valued variable that is not JSON fails before validation.
            raise SettingsError(
                f"invalid {type(self).title}: {exc} (expected a JSON list)"
            ) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init values), then the environment; no dotenv or secrets files."""
        if _ENVIRONMENT.get() is not None:
            return init_settings, _MappingEnvSource(settings_cls)
        return init_settings, env_settings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Self:
        """The settings from ``env`` (default ``os.environ``), then ``overrides``.

        Overrides that are ``None`` (a flag not given) are ignored.

        Raises:
            SettingsError: a value has the wrong type or range (the message names it).
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        with _environment(env):
            return cls(**given)

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of ``field``."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, str):
            return alias
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def _one_line(cls: type[SettingsBase], exc: ValidationError, given: set[str]) -> str:
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = error.get("loc") or ()
        field = str(loc[0]) if loc else None
        if field in cls.model_fields:
            shown = f"={error['input']!r}" if "input" in error else ""
            where = f"{field}{shown}"
            if field not in given:
                where = f"{field} ({cls.variable(field)}{shown})"
            problems.append(f"{where}: {message}")
        elif field is not None:
            problems.append(f"{field}: {message}")
        else:
            problems.append(message)
    return f"invalid {cls.title}: " + "; ".join(problems)


class TepSettings(SettingsBase):
    """Where the log lives, its limits, and logging: shared by every role and client.

    Every field is the variable ``TEP_<FIELD>``, e.g. ``TEP_NATS_URL``, ``TEP_REPLICAS=3``.
    """

    title: ClassVar[str] = "setting"

    nats_url: str = Field(
        DEFAULT_NATS_URL,
        description="NATS server URL; a comma-separated list for a cluster "
        "(`nats://n1:4222,nats://n2:4222,nats://n3:4222`). Flag: `--nats-url`",
    )
    stream: str = Field(
        "TEP_EVENTS",
        description="name of the event log stream (subjects `plan.>`, `action.>`, `execution.>`)",
    )
    deadletter_stream: str = Field(
        "TEP_DEADLETTER",
        description="stream for messages no role could process (`tep.deadletter.>`)",
    )
    partitions: int = Field(
        DEFAULT_PARTITIONS,
        ge=1,
        le=MAX_PARTITIONS,
        description="orchestrator partitions of a new deployment (executions are spread over "
        "them by id; orchestrator processes share them). Fixed once provisioned: the count is "
        "kept in the meta bucket and a different value is refused",
    )
    replicas: int = Field(
        1,
        description="replicas of the streams and KV buckets when they are created: 1, 3 or 5. "
        "Use 3 on a 3-node cluster (R3: survives the loss of one node)",
    )
    duplicate_window_s: float = Field(
        300.0,
        gt=0,
        description="how long the server remembers event ids to drop duplicate appends "
        "(retries, racing replicas)",
    )
    max_msg_bytes: int = Field(
        DEFAULT_PLAN_LIMITS.max_event_bytes,
        gt=0,
        description="largest event (the stream's `max_msg_size`); must not exceed the "
        "server's `max_payload`. A plan is valid only if its `plan.submitted` event fits",
    )
    max_actions: int = Field(
        DEFAULT_PLAN_LIMITS.max_actions,
        gt=0,
        description="most actions in one plan (the default fits the `plan.submitted` event of "
        "that many small actions in the default `TEP_MAX_MSG_BYTES`)",
    )
    max_plan_bytes: int = Field(
        DEFAULT_PLAN_LIMITS.max_plan_bytes,
        description="largest plan document; below `TEP_MAX_MSG_BYTES` to leave room for the "
        "event envelope",
    )
    max_json_depth: int = Field(
        DEFAULT_PLAN_LIMITS.max_json_depth,
        ge=1,
        le=256,
        description="deepest nesting of arrays and objects in a plan document (the document "
        "is level 1); at most 256, as the roles walk plan values recursively",
    )
    max_subplan_depth: int = Field(
        DEFAULT_PLAN_LIMITS.max_subplan_depth,
        ge=1,
        le=32,
        description="deepest a sub-plan's child execution may run below its top-level "
        "execution (depth 0): deeper inline plans are invalid, and a child that would start "
        "deeper (e.g. a registry plan that runs itself) fails its sub-plan action",
    )
    creds: Path | None = Field(
        None,
        description="NATS credentials file (JWT and seed, `.creds`) of this process's identity. "
        "Flag: `--creds`",
    )
    nkey: Path | None = Field(
        None,
        description="NATS nkey seed file of this process's identity (as written by "
        "`tep creds init`). Flag: `--nkey`",
    )
    user: str | None = Field(None, description="NATS user name. Flag: `--user`")
    password: SecretStr | None = Field(
        None, description="NATS password (with `TEP_USER`); never logged. Flag: `--password`"
    )
    tls_ca: Path | None = Field(
        None, description="CA certificate(s) to verify the NATS server with. Flag: `--tls-ca`"
    )
    tls_cert: Path | None = Field(
        None,
        description="client certificate for TLS client auth (with `TEP_TLS_KEY`). "
        "Flag: `--tls-cert`",
    )
    tls_key: Path | None = Field(
        None, description="private key of `TEP_TLS_CERT`. Flag: `--tls-key`"
    )
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="where `tep up` notes the local stack it runs (its URL and where its "
        "credentials are), so commands on the same machine connect to it without flags",
    )
    connect_timeout_s: float = Field(
        3.0,
        gt=0,
        description="how long the first connection may take; an unreachable server is "
        "reported (exit 3) after about this long. Once connected, clients reconnect forever",
    )
    log_format: Literal["json", "text"] | None = Field(
        None,
        description="`json`: one JSON object per line (`ts`, `level`, `logger`, `msg`, "
        "`role`, ids such as `execution_id` / `action_id` / `trace_id`); `text`: readable lines. "
        "Default: `text` on a terminal, else `json`",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="the lowest level logged"
    )
    metrics_sample_s: float = Field(
        5.0,
        gt=0,
        description="how often a role serving `/metrics` (on its `--health-port`) samples "
        "what it cannot count as it goes, such as its consumer's pending messages",
    )
    max_age_s: float = Field(
        0.0,
        ge=0,
        description="how long the log keeps events and the payload bucket the values stored "
        "by reference, in seconds (the streams' `max_age`); 0 keeps them forever. Applied "
        "when `tep provision` creates the streams; an existing stream with another value is "
        "reported, not changed",
    )
    payload_bucket: str = Field(
        DEFAULT_PAYLOAD_BUCKET,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="the JetStream Object Store bucket (stream `OBJ_<name>`) of action outputs, "
        "plan inputs and resume data too large to travel inline",
    )
    payload_inline_bytes: int = Field(
        DEFAULT_INLINE_BYTES,
        gt=0,
        description="an action output, plan input or resume data whose JSON encoding is larger "
        "is stored in the payload bucket and its event carries a reference "
        '(`{"$ref": {"digest", "size", "bucket"}}`); at most what fits one message beside its '
        "event (`TEP_MAX_MSG_BYTES` less 16 KiB)",
    )
    payload_max_bytes: int = Field(
        DEFAULT_MAX_BYTES,
        gt=0,
        description="the hard cap on one value: a larger action output fails the action with "
        "`output_too_large` (the executor stops reading a response there), a larger plan input "
        "or resume data is refused",
    )

    @property
    def plan_limits(self) -> PlanLimits:
        """The plan limits these settings set.

        From ``TEP_MAX_ACTIONS``, ``TEP_MAX_PLAN_BYTES``, ``TEP_MAX_JSON_DEPTH``,
        ``TEP_MAX_SUBPLAN_DEPTH`` and ``TEP_MAX_MSG_BYTES`` (the ``plan.submitted`` event must
        fit one message).
        """
        return PlanLimits(
            max_actions=self.max_actions,
            max_plan_bytes=self.max_plan_bytes,
            max_json_depth=self.max_json_depth,
            max_subplan_depth=self.max_subplan_depth,
            max_event_bytes=self.max_msg_bytes,
        )

    @property
    def payload_limits(self) -> PayloadLimits:
        """When values are stored by reference and how large they may be.

        From ``TEP_PAYLOAD_INLINE_BYTES`` (bounded by what fits one message beside its event),
        ``TEP_PAYLOAD_MAX_BYTES`` and ``TEP_PAYLOAD_BUCKET``.
        """
        inline = min(self.payload_inline_bytes, self.max_msg_bytes - PAYLOAD_ENVELOPE_BYTES)
        return PayloadLimits(
            inline_bytes=max(inline, 1),
            max_bytes=max(self.payload_max_bytes, inline),
            bucket=self.payload_bucket,
        )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: int) -> int:
        if value not in (1, 3, 5):
            raise ValueError(f"replicas must be 1, 3 or 5 (got {value})")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        for field in ("creds", "nkey", "tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, field)
            if path is not None and not path.is_file():
                where = f"{field} ({self.variable(field)}, --{field.replace('_', '-')})"
                raise ValueError(f"{where}: file {str(path)!r} does not exist")
        if sum(x is not None for x in (self.creds, self.nkey, self.user)) > 1:
            raise ValueError("give one of creds, nkey or user/password, not several")
        if self.password is not None and self.user is None:
            raise ValueError("password needs a user")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    @property
    def has_credentials(self) -> bool:
        """Whether an identity (creds, nkey or user) is configured explicitly."""
        return any(x is not None for x in (self.creds, self.nkey, self.user))

    @model_validator(mode="after")
    def _payload_limits(self) -> Self:
        if self.payload_inline_bytes > self.payload_max_bytes:
            raise ValueError(
                f"payload_inline_bytes ({self.payload_inline_bytes}) must not exceed "
                f"payload_max_bytes ({self.payload_max_bytes})"
            )
        return self

    @model_validator(mode="after")
    def _plan_fits_a_message(self) -> Self:
        if self.max_plan_bytes >= self.max_msg_bytes:
            raise ValueError(
                f"max_plan_bytes ({self.max_plan_bytes}) must be below "
                f"max_msg_bytes ({self.max_msg_bytes}) to leave room for the event envelope"
            )
        return self
