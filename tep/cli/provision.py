"""``tep provision``: create the log's streams and buckets with the admin identity."""

from __future__ import annotations

import argparse

import anyio

from eventstore.access import Role
from tep.cli.common import EXIT_OK, add_nats_url, settings_from
from tep.cli.executions import open_log
from tep.provision import provision

__all__ = ["register", "run"]

_EPILOG = """\
example:
  TEP_NKEY=/etc/tep/creds/admin.nk tep provision --nats-url nats://nats:4222

Creates what is missing (the event stream, the dead-letter stream, the view's buckets, the
orchestrator's lease bucket, the schedules bucket) and checks what exists; it never changes an
existing stream.
With the shipped server authorization only the admin identity may create streams, so run this
once before starting the roles (`tep up` does it by itself).
exit codes: 0 done, 1 a stream exists with other settings, 3 NATS unreachable or the identity
may not create streams.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep provision``."""
    parser = subparsers.add_parser(
        "provision",
        help="create the streams and buckets the roles use (admin identity)",
        description="Create the log's streams and the buckets every role uses, as the admin.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``tep provision``."""
    settings_from(args)
    return anyio.run(_provision, args)


async def _provision(args: argparse.Namespace) -> int:
    async with open_log(args, client_name="tep-provision", role=Role.ADMIN) as log:
        names = await provision(log.js, log.settings)
    print("provisioned: " + ", ".join(names), flush=True)
    return EXIT_OK
