"""The executor's settings section: ``TEP_EXECUTOR_*``, flags on top."""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from typing import Annotated, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from eventstore.config import SettingsBase
from eventstore.jetstream.queues import DEFAULT_ACK_WAIT_S
from eventstore.plan import DEFAULT_ACTION_TYPE
from executor.env_values import parse_env_name
from executor.http_messages import DEFAULT_MAX_REDIRECTS
from executor.outcome import DEFAULT_TIMEOUT_S
from executor.target_policy import TargetPolicy, parse_allowed_cidr, parse_allowed_host

__all__ = ["DEFAULT_CONCURRENCY", "ExecutorConfig", "new_executor_id"]

DEFAULT_CONCURRENCY = 32
_QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


def new_executor_id() -> str:
    """``<host>-<pid>-<random>``: names the process in ``action.started`` events."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ExecutorConfig(SettingsBase):
    """How one executor process serves one queue.

    Every field is the variable ``TEP_EXECUTOR_<FIELD>`` (``max_output_bytes``:
    ``TEP_MAX_OUTPUT_BYTES``); the flags of ``tep executor`` win over them.
    """

    model_config = SettingsConfigDict(env_prefix="TEP_EXECUTOR_")
    title: ClassVar[str] = "executor setting"

    queue: str = Field(
        DEFAULT_ACTION_TYPE,
        description="the queue served (executors of one queue share its durable consumer "
        "`queue-<name>`); actions route here by `queue` or type. Flag: `--queue`",
    )
    concurrency: int = Field(
        DEFAULT_CONCURRENCY, description="requests this process runs at once. Flag: `--concurrency`"
    )
    handler_modules: tuple[str, ...] = Field(
        (),
        description="modules imported at start so their `@handler` types are served "
        "(a JSON list). Flag: `--handlers MODULE...`",
    )
    max_output_bytes: int | None = Field(
        None,
        gt=0,
        validation_alias="TEP_MAX_OUTPUT_BYTES",
        description="largest response body / output this executor keeps; larger fails with "
        "`output_too_large` (the body is read no further). Default and upper bound: the hard "
        "cap `TEP_PAYLOAD_MAX_BYTES`; outputs above `TEP_PAYLOAD_INLINE_BYTES` are stored in "
        "the payload bucket. Flag: `--max-output-bytes`",
    )
    default_timeout_s: float = Field(
        DEFAULT_TIMEOUT_S, gt=0, description="an attempt's time limit when the action sets none"
    )
    shutdown_grace_s: float = Field(
        5.0,
        ge=0,
        description="on SIGTERM, seconds in-flight calls may finish before they are handed back "
        "to the queue. Flag: `--shutdown-grace`",
    )
    pull_expires_s: float = Field(
        2.0,
        gt=0,
        description="lifetime of each pull request (bounds how long a stop waits for the "
        "current pull to end)",
    )
    ack_wait_s: float = Field(
        DEFAULT_ACK_WAIT_S,
        gt=0,
        description="the queue consumer's ack wait, set on it at start: a request whose "
        "executor stopped answering (crash, pause, lost connection) goes to another executor "
        "after this long; requests in progress are heartbeated every third of it",
    )
    max_interruptions: int = Field(
        5,
        ge=0,
        description="how often one attempt may be cut off (executor crash, pause or lost "
        "connection) and started again; once more and the action fails with `interrupted` and "
        "the request is dead-lettered. Interruptions do not use up the plan's attempts",
    )
    max_redirects: int = Field(
        DEFAULT_MAX_REDIRECTS,
        ge=0,
        description="redirects an HTTP call follows; more fails with `too_many_redirects`",
    )
    allow_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="host names HTTP calls may reach whatever they resolve to, e.g. "
        '`["api.internal", "*.svc.cluster.local"]` (a JSON list, or comma-separated; '
        "`*.domain` matches its subdomains). Anything else that resolves to a loopback, "
        "private, link-local, CGNAT, multicast or cloud-metadata address is refused with "
        "`target_not_allowed`. Flag: `--allow-host HOST` (repeatable; replaces the list)",
    )
    allow_cidrs: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="address ranges HTTP calls may reach although the target policy refuses "
        'them by default, e.g. `["10.20.0.0/16", "fd00:1::/64"]` (a JSON list, or '
        "comma-separated). Flag: `--allow-cidr CIDR` (repeatable; replaces the list)",
    )
    allow_env: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="environment variables of this process that plans may read as "
        '`{{env.NAME}}`, e.g. `["REGION", "STAGE"]` (a JSON list, or comma-separated). The '
        "value is substituted at call time and NOT redacted (secrets belong in "
        "`{{secrets.NAME}}`); a variable not listed is never read, and a reference to it "
        "fails the action with `invalid_request`. Flag: `--allow-env NAME` (repeatable; "
        "replaces the list)",
    )
    executor_id: str = Field(
        default_factory=new_executor_id,
        description="recorded on `action.started`, and the name other executors ask whether "
        "this process still runs an attempt: unique per process (default "
        "`<host>-<pid>-<random>`)",
    )

    @field_validator("queue")
    @classmethod
    def _queue_token(cls, value: str) -> str:
        if not _QUEUE_PATTERN.match(value):
            raise ValueError(f"queue {value!r} must match [A-Za-z0-9_-]{{1,64}}")
        return value

    @field_validator("allow_hosts", "allow_cidrs", "allow_env", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        return _split_list(value) if isinstance(value, str) else value

    @field_validator("allow_hosts")
    @classmethod
    def _host_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(parse_allowed_host(host) for host in value)

    @field_validator("allow_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(parse_allowed_cidr(cidr)) for cidr in value)

    @field_validator("allow_env")
    @classmethod
    def _env_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(parse_env_name(name) for name in value)

    def target_policy(self) -> TargetPolicy:
        """The addresses this executor's HTTP calls may connect to."""
        return TargetPolicy.from_strings(self.allow_hosts, self.allow_cidrs)

    @field_validator("concurrency")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"concurrency must be at least 1 (got {value})")
        return value


def _split_list(text: str) -> list[str]:
    """A variable's list: JSON (``["a", "b"]``) or comma-separated (``a,b``)."""
    text = text.strip()
    if not text.startswith("["):
        return [item.strip() for item in text.split(",") if item.strip()]
    try:
        items = json.loads(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a JSON list of strings") from None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"{text!r} is not a JSON list of strings")
    return items
