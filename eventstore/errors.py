"""The project's exception tree. Adapters map foreign errors onto these with ``raise ... from``.

Every error raised on purpose derives from :class:`TepError`; the others live next to the code
that raises them::

    TepError
    ├── EventDecodeError            bytes from the log are not a known event
    ├── EventTooLargeError          an event does not fit one message
    ├── ConcurrencyError            the execution moved on (optimistic concurrency, guards)
    ├── ExecutionExistsError        a plan submitted under an id already used
    ├── PlanValidationError         a plan is invalid (every problem listed)
    ├── ConfigConflictError         an existing stream/bucket is configured differently
    ├── NatsUnavailableError        no server answered
    ├── ServerBinaryNotFoundError   no nats-server binary
    ├── SettingsError (ValueError)  a bad TEP_* value or flag
    ├── TemplateError, ConditionError, CycleError, PatternError (ValueError)
    │                               eventstore.templates / conditions / dag / patterns
    ├── WriteConflictError          eventstore.jetstream.kv_batch: a KV batch lost a CAS race
    ├── QueueConfigError (ValueError)  eventstore.jetstream.queues: a bad queue name or limit
    ├── CronError, TimeZoneError (ValueError)  eventstore.cron: a bad cron expression or zone
    ├── ScheduleError (ValueError)  eventstore.schedules: a schedule unknown, taken or unstorable
    ├── UnroutableMessageError      orchestrator.intake: a subject names no execution
    ├── ActionError                 executor.errors: an attempt failed, retry policy as data
    │   ├── RetryableError
    │   └── NonRetryableError
    ├── HandlerLoadError            executor.handlers: a --handlers module cannot load
    ├── ExecutionNotFoundError, ActionNotFoundError (LookupError)
    ├── InvalidExecutionIdError, InvalidTransitionError (ValueError)
    ├── ViewTimeoutError (TimeoutError), PointerConflictError, StateTooLargeError
    │                               projections: the read side and the StateManager
    ├── DataDirInUseError           tep.dir_lock: another tep up holds the data dir
    ├── EmbeddedServerError         tep.cli.up_server: tep up's nats-server failed or died
    └── UsageError                  tep.cli.common: bad command-line input (exit 2)
"""

from __future__ import annotations

__all__ = [
    "ConcurrencyError",
    "ConfigConflictError",
    "EventDecodeError",
    "EventTooLargeError",
    "ExecutionExistsError",
    "NatsUnavailableError",
    "PlanValidationError",
    "ServerBinaryNotFoundError",
    "SettingsError",
    "TepError",
]


class TepError(Exception):
    """Base class of every error this project raises on purpose."""


class EventDecodeError(TepError):
    """Bytes from the log are not a valid event of a known type."""


class EventTooLargeError(TepError):
    """An event (payload plus headers) does not fit one message under the server's limit."""


class ConcurrencyError(TepError):
    """Someone else appended to the execution after the version the caller expected.

    Attributes:
        execution_id: the execution whose history moved on.
        expected_version: the version the caller based its decision on.
        actual_version: the version the server reported, when known.
    """

    def __init__(
        self, execution_id: str, expected_version: int, actual_version: int | None = None
    ) -> None:
        self.execution_id = execution_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        found = "" if actual_version is None else f", found {actual_version}"
        super().__init__(f"execution {execution_id}: expected version {expected_version}{found}")


class ExecutionExistsError(TepError):
    """A plan was submitted with an execution id that already has a history."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"execution {execution_id!r} already exists")


class PlanValidationError(TepError):
    """A plan document is malformed or inconsistent; ``problems`` lists every finding."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class ConfigConflictError(TepError):
    """An existing stream, bucket or consumer has a configuration that differs from ours."""


class NatsUnavailableError(TepError):
    """No NATS server answered at the configured URL."""


class NatsAuthorizationError(NatsUnavailableError):
    """The NATS server refused this process's identity (or the lack of one)."""


class ServerBinaryNotFoundError(TepError):
    """The ``nats-server`` executable could not be found."""


class SettingsError(TepError, ValueError):
    """A setting (flag or ``TEP_*`` variable) has an invalid value."""
