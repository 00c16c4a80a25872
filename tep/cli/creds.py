"""``tep creds init DIR``: one NATS identity per role, and the server's authorization block."""

from __future__ import annotations

import argparse
from pathlib import Path

from eventstore.access import ROLES, Role
from tep.cli.common import EXIT_OK, UsageError, settings_from
from tep.creds import AUTH_FILE, CredentialsError, init_credentials

__all__ = ["register", "run"]

_EPILOG = """\
examples:
  tep creds init /etc/tep/creds                     # seeds + auth.conf, for queue http
  tep creds init /etc/tep/creds --queue http --queue gpu
  tep creds init /etc/tep/creds --rotate executor   # new executor seed, new auth.conf
  nats-server --signal reload                       # the server picks up the new auth.conf

Writes <role>.nk (an nkey seed, mode 0600) for client, executor, orchestrator, projector and
admin, and auth.conf: an nats-server `authorization` block with each role's public key and
permissions. Include it from the server's configuration (`include "creds/auth.conf"`, as
deploy/nats/*.conf do), then give each process its own seed: `tep orchestrator --nkey
DIR/orchestrator.nk` or TEP_NKEY. Existing seeds are never replaced unless --rotate or --force
says so. See docs/security.md for what each role may do.
exit codes: 0 written, 2 seeds exist (without --rotate/--force) or DIR cannot be written.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep creds``."""
    parser = subparsers.add_parser(
        "creds",
        help="generate NATS credentials: one identity per role",
        description="Manage the NATS identities of the roles.",
    )
    commands = parser.add_subparsers(dest="creds_command", metavar="<command>", required=True)
    init = commands.add_parser(
        "init",
        help="write an nkey seed per role and the server's auth.conf into DIR",
        description="Write an nkey seed per role (client, executor, orchestrator, projector, "
        "admin) and auth.conf, the nats-server authorization block granting each role the "
        "least it needs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("directory", metavar="DIR", type=Path, help="where to write (created)")
    init.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="Q",
        help="a queue the executor identity may serve (repeatable; default http)",
    )
    init.add_argument(
        "--rotate",
        action="append",
        default=[],
        metavar="ROLE",
        choices=[role.value for role in ROLES],
        help="replace this role's seed, keep the others (repeatable)",
    )
    init.add_argument("--force", action="store_true", help="replace every seed")
    init.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``tep creds init``."""
    settings = settings_from(args)
    try:
        written = init_credentials(
            args.directory,
            settings=settings,
            queues=args.queue or None,
            rotate=[Role(role) for role in args.rotate],
            force=args.force,
        )
    except CredentialsError as exc:
        raise UsageError(str(exc)) from None
    for path in written:
        print(path)
    if any(path.name != AUTH_FILE for path in written) and args.rotate:
        print("reload the server to apply: nats-server --signal reload", flush=True)
    return EXIT_OK
