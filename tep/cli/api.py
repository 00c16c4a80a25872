"""``tep api``: the HTTP API (and its OpenAPI document) over the StateManager."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from eventstore.access import Role
from eventstore.config import TepSettings
from projections.state_manager import StateManager
from tep.api.app import create_app
from tep.api.backend import ApiBackend, admin_settings
from tep.api.config import DEFAULT_API_PORT, ApiSettings
from tep.api.server import ListenError, bind, serve
from tep.api.tokens import Tokens, load_tokens
from tep.cli.common import EXIT_OK, UsageError, add_nats_url, settings_from, single_errors
from tep.logging_setup import configure_logging

__all__ = ["register"]

_log = logging.getLogger("tep.api")

_EPILOG = f"""\
examples:
  tep api --tokens-file tokens.json
  tep api --host 0.0.0.0 --port 9000 --tokens-file /etc/tep/api-tokens.json
  TEP_API_TOKENS='{{"me": {{"token": "a-long-development-token", "scopes": ["read"]}}}}' tep api

  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{DEFAULT_API_PORT}/v1/executions

A tokens file maps a name to a token's SHA-256 (or, for development, the token) and its
scopes: {{"ci": {{"token_sha256": "<hex>", "scopes": ["read", "submit"]}}}}
(`printf %s "$TOKEN" | sha256sum` gives the hex). Scopes: read (GET routes, the event
stream), submit (start executions, complete waitpoints by token), operate (cancel, retry,
resume/reject, schedules). Every route but /healthz needs a token, /openapi.json (the
OpenAPI 3.1 document) too; see docs/api.md.

NATS: the API connects as the client identity (--nkey/--creds, or a local `tep up`'s); changing
schedules needs the admin identity (TEP_API_ADMIN_NKEY / TEP_API_ADMIN_CREDS). `tep up` runs
one itself. SIGTERM / Ctrl-C stops it (open event streams get 2 s).
exit codes: 0 stopped, 2 bad usage (no tokens, address in use), 3 NATS unreachable.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep api``."""
    parser = subparsers.add_parser(
        "api",
        help="serve the HTTP API: executions, live event streams, schedules",
        description="Serve the HTTP API over the StateManager: submit, list and read "
        "executions (also as of any point of their history), their events, a live Server-Sent "
        "Events stream of their states, cancel, retry, resume and reject, schedules and "
        "counters. Bearer tokens with scopes; errors as problem+json.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", metavar="ADDR", help="listen address ($TEP_API_HOST, 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        metavar="P",
        help=f"listen port, 0 for any free one ($TEP_API_PORT, {DEFAULT_API_PORT})",
    )
    parser.add_argument(
        "--tokens-file",
        type=Path,
        metavar="FILE",
        help="JSON file of bearer tokens and their scopes ($TEP_API_TOKENS_FILE)",
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``tep api``."""
    settings = settings_from(args)
    api = ApiSettings.from_env(host=args.host, port=args.port, tokens_file=args.tokens_file)
    secret = api.tokens.get_secret_value() if api.tokens is not None else None
    tokens = load_tokens(secret, api.tokens_file)
    if not len(tokens):
        raise UsageError(
            "no API tokens configured: give --tokens-file or TEP_API_TOKENS (see tep api --help)"
        )
    configure_logging("api", settings)
    try:
        sock = bind(api.host, api.port)
    except ListenError as exc:
        raise UsageError(str(exc)) from None
    with single_errors():
        anyio.run(_serve, settings, api, tokens, sock)
    return EXIT_OK


async def _serve(
    settings: TepSettings, api: ApiSettings, tokens: Tokens, sock: socket.socket
) -> None:
    stop = anyio.Event()
    manager = await StateManager.connect(settings=settings, name="tep-api", role=Role.CLIENT)
    backend = ApiBackend(manager, admin_settings(settings, api))
    try:
        app = create_app(backend, api, tokens)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        _log.info(
            "serving the HTTP API on http://%s:%s (%d tokens)",
            shown,
            port,
            len(tokens),
            extra={"url": f"http://{shown}:{port}"},
        )
        async with anyio.create_task_group() as group:
            await group.start(_stop_on_signal, stop)
            await serve(app, sock, stop)
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await backend.close()
            await manager.close()


async def _stop_on_signal(
    stop: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            stop.set()
