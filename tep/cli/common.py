"""What every ``tep`` command shares: exit codes, errors to one line, JSON output, settings."""

from __future__ import annotations

import argparse
import contextlib
import getpass
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
    "local_user",
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


_CONNECTION_FLAGS = {
    "creds": ("FILE", "NATS credentials file (.creds: JWT and seed) ($TEP_CREDS)"),
    "nkey": ("FILE", "NATS nkey seed file, e.g. from `tep creds init` ($TEP_NKEY)"),
    "user": ("NAME", "NATS user ($TEP_USER)"),
    "password": ("SECRET", "NATS password, with --user ($TEP_PASSWORD)"),
    "tls_ca": ("FILE", "CA certificate to verify the server's TLS certificate ($TEP_TLS_CA)"),
    "tls_cert": ("FILE", "client certificate for TLS client auth ($TEP_TLS_CERT)"),
    "tls_key": ("FILE", "private key of --tls-cert ($TEP_TLS_KEY)"),
}


def add_nats_url(parser: argparse.ArgumentParser) -> None:
    """The connection options every command takes: ``--nats-url`` and the identity.

    Without an identity, a command connecting to the URL of a ``tep up`` on this machine uses
    that stack's credential; any other server is connected to as given.
    """
    parser.add_argument(
        "--nats-url",
        default=os.environ.get("TEP_NATS_URL", DEFAULT_NATS_URL),
        help="NATS server URL, comma-separated for a cluster "
        "(default: $TEP_NATS_URL or %(default)s)",
    )
    group = parser.add_argument_group(
        "NATS identity (default: none, or the credential of a `tep up` on this machine)"
    )
    for field, (metavar, help_text) in _CONNECTION_FLAGS.items():
        group.add_argument(
            f"--{field.replace('_', '-')}", dest=field, metavar=metavar, help=help_text
        )


def settings_from(args: argparse.Namespace) -> TepSettings:
    """TepSettings from the environment with ``--nats-url`` and the identity flags applied."""
    given = {field: getattr(args, field, None) for field in _CONNECTION_FLAGS}
    return TepSettings.from_env(nats_url=getattr(args, "nats_url", None), **given)


def local_user() -> str | None:
    """The local user name, recorded as who asked (``None`` where there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        return None


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
