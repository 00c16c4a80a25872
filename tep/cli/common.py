"""What every ``tep`` command shares: exit codes, errors to one line, JSON output, settings."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import msgspec

from eventstore.config import DEFAULT_NATS_URL, TepSettings
from eventstore.errors import TepError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_NATS_UNAVAILABLE",
    "EXIT_NOT_COMPLETED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "UsageError",
    "add_nats_url",
    "fail",
    "print_json",
    "settings_from",
    "single_errors",
]

EXIT_OK = 0
EXIT_NOT_COMPLETED = 1
EXIT_BAD_INPUT = 2
EXIT_NATS_UNAVAILABLE = 3
EXIT_TIMEOUT = 124


class UsageError(TepError):
    """Bad input from the user: printed as one line, exit code 2."""


def add_nats_url(parser: argparse.ArgumentParser) -> None:
    """The ``--nats-url`` option every command takes."""
    parser.add_argument(
        "--nats-url",
        default=os.environ.get("TEP_NATS_URL", DEFAULT_NATS_URL),
        help="NATS server URL, comma-separated for a cluster "
        "(default: $TEP_NATS_URL or %(default)s)",
    )


def settings_from(args: argparse.Namespace) -> TepSettings:
    """TepSettings from the environment with ``--nats-url`` applied."""
    return TepSettings.from_env(nats_url=getattr(args, "nats_url", None))


def print_json(document: Any) -> None:
    """Write one JSON document to stdout (the whole output of ``--json`` modes)."""
    sys.stdout.write(msgspec.json.encode(document).decode() + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``tep: <message>`` to stderr and exit with ``code``."""
    sys.stderr.write(f"tep: {message}\n")
    raise SystemExit(code)


@contextlib.contextmanager
def single_errors() -> Iterator[None]:
    """Re-raise a task group's only error as itself.

    anyio task groups wrap every error in an exception group; unwrapped, a ``UsageError``,
    ``NatsUnavailableError`` or ``BrokenPipeError`` from inside one still becomes its exit code
    and one line in :func:`tep.cli.main.main`. Several errors at once stay a group.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if error is group:
            raise
        raise error from None
