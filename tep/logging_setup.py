"""Structured logging: one JSON object per line when stderr is not a terminal.

Pass ids as ``extra`` so they become fields::

    log.info("action dispatched", extra={"execution_id": e, "action_id": a})

A line written while a role works on an event of a trace also has its ``trace_id`` (see
:mod:`eventstore.tracing`), so the lines of one execution can be found across every role.

Secrets never reach a log line: nothing here formats request headers or resolved templates,
and callers log ids and codes, not payloads.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from eventstore.config import TepSettings
from eventstore.tracing import current_trace_id

__all__ = ["configure_logging"]

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with its ``extra`` fields."""

    def __init__(self, role: str | None) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.role:
            entry["role"] = self.role
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TraceFilter(logging.Filter):
    """Adds ``trace_id`` to a record written within a trace (unless it names one itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record``; never drops it."""
        trace_id = current_trace_id()
        if trace_id is not None and not hasattr(record, "trace_id"):
            record.trace_id = trace_id
        return True


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, ids appended as ``key=value``."""

    def __init__(self, role: str | None) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")
        )
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        prefix = f"[{self.role}] " if self.role else ""
        line = f"{stamp} {prefix}{record.levelname.lower():7} {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(
    role: str | None = None, settings: TepSettings | None = None, *, level: str | None = None
) -> None:
    """Log to stderr: JSON lines unless stderr is a TTY (``TEP_LOG_FORMAT=json|text`` overrides).

    ``settings`` defaults to the environment's; ``level`` overrides ``TEP_LOG_LEVEL``.
    """
    settings = settings or TepSettings.from_env()
    chosen = settings.log_format or ("text" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(role) if chosen == "json" else TextFormatter(role))
    handler.addFilter(TraceFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or settings.log_level).upper())
    logging.getLogger("nats").setLevel(logging.CRITICAL)
