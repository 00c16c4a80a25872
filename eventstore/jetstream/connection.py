"""Connecting to NATS: quiet, bounded, and mapped onto :class:`NatsUnavailableError`."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import AuthorizationError

from eventstore.access import Role, inbox_prefix
from eventstore.config import TepSettings
from eventstore.errors import NatsAuthorizationError, NatsUnavailableError, SettingsError
from eventstore.jetstream.local_stack import local_stack_for

__all__ = [
    "NatsClient",
    "auth_options",
    "connect",
    "connect_as",
    "last_permission_denial",
    "permission_denials_seen",
]

_log = logging.getLogger("tep.nats")
_PERMISSIONS = "permissions violation"
_AUTHORIZATION = "authorization violation"
_denials: list[str] = []
_denials_seen = 0
# OpenSSL's X509_V_ERR_ codes of a certificate whose issuer is not among the trusted CAs.
_UNKNOWN_ISSUER = {18, 19, 20}
_EOF_OVER_TLS = "returning true from eof_received() has no effect when using ssl"


class _EofOverTlsFilter(logging.Filter):
    """Drops asyncio's warning at the end of every TLS connection of nats-py.

    nats-py upgrades a connection to TLS under a stream protocol that is never told it runs
    over TLS; asyncio then warns, harmlessly, when the server ends the stream.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _EOF_OVER_TLS


logging.getLogger("asyncio").addFilter(_EofOverTlsFilter())


def last_permission_denial() -> str | None:
    """What the server last refused a connection of this process, e.g. ``publish to "x"``.

    The server answers a refused publish or subscription with an asynchronous error only; a
    request to a refused subject then times out. This names the cause of such a timeout.
    """
    return _denials[-1] if _denials else None


def permission_denials_seen() -> int:
    """How many refused permissions the server has told this process of so far: a request
    that timed out while this grew was most likely refused, not slow."""
    return _denials_seen


async def _log_error(exc: Exception) -> None:
    _log.warning("nats connection error: %s", exc)


async def connect(
    url: str,
    *,
    name: str = "tep",
    timeout_s: float = 3.0,
    reconnect: bool = True,
    **options: Any,
) -> NatsClient:
    """Connect to NATS at ``url`` (a comma-separated list is accepted for clusters).

    Once connected, the client reconnects forever; the first connection is bounded by
    ``timeout_s`` so an unreachable server is reported within seconds.

    Raises:
        NatsUnavailableError: no server answered in time, or the TLS handshake failed (at
            once: a refused certificate is not retried).
    """
    servers = [u.strip() for u in url.split(",") if u.strip()]
    connected = False
    refused = False
    dropped_in_tls = False

    async def on_error(exc: Exception) -> None:
        global _denials_seen
        nonlocal refused, dropped_in_tls
        text = str(exc)
        # A server refusing a TLS client sends an alert and closes; the close may arrive first.
        dropped_in_tls = dropped_in_tls or (
            "tls" in options and isinstance(exc, ConnectionResetError | BrokenPipeError)
        )
        # nats-py reports a refused CONNECT as a plain error (reconnecting: "no servers").
        refused = refused or _AUTHORIZATION in text.lower()
        if _PERMISSIONS in text.lower():
            _denials.append(text[text.lower().index(_PERMISSIONS) + len(_PERMISSIONS) :].strip())
            del _denials[:-8]
            _denials_seen += 1
        if not connected and isinstance(exc, ssl.SSLError):
            # A refused certificate stays refused: fail at once. Retrying would also hang, as
            # nats-py never finishes closing a failed TLS upgrade (nats-io/nats.py#718).
            raise exc
        # Failures of the first connection become one NatsUnavailableError, not a log line each.
        if connected:
            await _log_error(exc)

    try:
        client = await nats.connect(
            servers=servers,
            name=name,
            connect_timeout=timeout_s,
            allow_reconnect=reconnect,
            # Bounded while connecting for the first time; unbounded once connected (below).
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=on_error,
            **options,
        )
    except Exception as exc:
        if isinstance(exc, ssl.SSLError):
            raise NatsUnavailableError(_tls_failure(url, exc)) from exc
        if refused or isinstance(exc, AuthorizationError) or _AUTHORIZATION in str(exc).lower():
            how = "the credentials given" if _has_identity(options) else "no credentials"
            raise NatsAuthorizationError(
                f"NATS at {url} refused {how} (authorization violation): give this process's "
                "identity with --nkey, --creds or --user/--password (or TEP_NKEY, TEP_CREDS, "
                "TEP_USER/TEP_PASSWORD)"
            ) from exc
        reason = str(exc) or type(exc).__name__
        if dropped_in_tls:
            reason = (
                "the server closed the connection as TLS was set up (one that requires a client "
                "certificate does: give --tls-cert and --tls-key, TEP_TLS_CERT and TEP_TLS_KEY)"
            )
        raise NatsUnavailableError(f"cannot reach NATS at {url}: {reason}") from exc
    connected = True
    if reconnect:
        client.options["max_reconnect_attempts"] = -1
    return client


def _has_identity(options: dict[str, Any]) -> bool:
    return any(options.get(k) for k in ("user_credentials", "nkeys_seed", "user"))


def _tls_failure(url: str, exc: ssl.SSLError) -> str:
    """One line naming why the TLS handshake with NATS at ``url`` failed, and what to give."""
    failed = f"TLS with NATS at {url} failed"
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = ""
        if exc.verify_code in _UNKNOWN_ISSUER:
            hint = ": give the CA that signed it with --tls-ca (TEP_TLS_CA)"
        return f"{failed}: the server's certificate is not trusted ({exc.verify_message}){hint}"
    reason = str(exc.reason or "")
    if "CERTIFICATE_REQUIRED" in reason:
        return (
            f"{failed}: the server requires a client certificate: give --tls-cert and "
            "--tls-key (TEP_TLS_CERT, TEP_TLS_KEY)"
        )
    if "ALERT" in reason:
        # e.g. TLSV1_ALERT_UNKNOWN_CA: the server does not trust this process's certificate.
        return f"{failed}: the server refused the handshake ({reason.lower().replace('_', ' ')})"
    return f"{failed}: {exc}"


def auth_options(settings: TepSettings, role: Role | str) -> dict[str, Any]:
    """The nats-py connect options for ``role`` under ``settings``.

    Explicit credentials (``TEP_CREDS``, ``TEP_NKEY``, ``TEP_USER``/``TEP_PASSWORD``) win;
    without any, a connection to the URL of a local ``tep up`` uses that stack's credential of
    ``role`` (see :mod:`eventstore.jetstream.local_stack`). With an identity, replies come back
    on the role's own inbox prefix, the only one its permissions let it subscribe to.
    """
    options: dict[str, Any] = {}
    if settings.creds is not None:
        options["user_credentials"] = str(settings.creds)
    elif settings.nkey is not None:
        options["nkeys_seed"] = str(settings.nkey)
    elif settings.user is not None:
        options["user"] = settings.user
        if settings.password is not None:
            options["password"] = settings.password.get_secret_value()
    else:
        stack = local_stack_for(settings.state_dir, settings.nats_url)
        seed = stack.credential(str(role)) if stack is not None else None
        if seed is not None:
            options["nkeys_seed"] = str(seed)
    if options:
        options["inbox_prefix"] = inbox_prefix(role)
    if settings.tls_ca is not None or settings.tls_cert is not None:
        context = ssl.create_default_context(
            cafile=str(settings.tls_ca) if settings.tls_ca is not None else None
        )
        if settings.tls_cert is not None and settings.tls_key is not None:
            context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
        options["tls"] = context
    return options


async def connect_as(
    settings: TepSettings,
    role: Role | str,
    *,
    name: str,
    timeout_s: float | None = None,
    reconnect: bool = True,
) -> NatsClient:
    """Connect to ``settings.nats_url`` as ``role`` (see :func:`auth_options`).

    Raises:
        NatsUnavailableError: no server answered in time, or it refused the identity.
        SettingsError: the TLS files cannot be used.
    """
    try:
        options = auth_options(settings, role)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"cannot use the TLS files given: {exc}") from exc
    return await connect(
        settings.nats_url,
        name=name,
        timeout_s=settings.connect_timeout_s if timeout_s is None else timeout_s,
        reconnect=reconnect,
        **options,
    )
