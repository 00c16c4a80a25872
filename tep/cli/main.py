"""``tep``: the command line. Wiring only; each command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from eventstore.errors import NatsUnavailableError, SettingsError, TepError
from eventstore.jetstream.connection import last_permission_denial
from eventstore.payloads import PayloadTooLargeError
from tep import __version__
from tep.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_NATS_UNAVAILABLE,
    UsageError,
    fail,
)

__all__ = ["build_parser", "main"]

# Each module defines `register(subparsers)`, which adds its command and sets `handler`:
# a function (args) -> exit code.
COMMAND_MODULES = (
    "tep.cli.validate",
    "tep.cli.submit",
    "tep.cli.events",
    "tep.cli.watch",
    "tep.cli.cancel",
    "tep.cli.resume",
    "tep.cli.retry",
    "tep.demo_target",
    "tep.cli.up",
    "tep.cli.executor",
    "tep.cli.orchestrator",
    "tep.cli.projector",
    "tep.cli.rebuild",
    "tep.cli.status",
    "tep.cli.list",
    "tep.cli.queue",
    "tep.cli.schedule",
    "tep.cli.api",
    "tep.cli.plan",
    "tep.cli.creds",
    "tep.cli.provision",
)


def _command_modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in COMMAND_MODULES]


def build_parser() -> argparse.ArgumentParser:
    """The full ``tep`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="tep",
        description="Event-sourced workflow plans on NATS JetStream: "
        "submit plans of HTTP actions, run the roles, watch and replay executions.",
        epilog="Run `tep <command> --help` for details and an example. "
        "Exit codes: 0 ok, 1 execution not completed, 2 bad input, 3 NATS unreachable, "
        "124 --wait timed out.",
    )
    parser.add_argument("--version", action="version", version=f"tep {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for module in _command_modules():
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tep`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # A command reports a refused permission in its own one-line message (below); the roles,
    # which configure logging, still log it.
    logging.getLogger("tep.nats").addHandler(logging.NullHandler())
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        code = handler(args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`tep events ID | head`): not an error of ours. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except UsageError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except SettingsError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except NatsUnavailableError as exc:
        fail(str(exc), EXIT_NATS_UNAVAILABLE)
    except PayloadTooLargeError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except TepError as exc:
        fail(str(exc), 1)
    except TimeoutError:
        denied = last_permission_denial()
        if denied is None:
            raise
        fail(
            f"NATS refused this identity permission {denied}: `tep {args.command}` needs "
            "an identity allowed to do it (see --nkey / --creds and docs/security.md)",
            EXIT_NATS_UNAVAILABLE,
        )


if __name__ == "__main__":
    sys.exit(main())
