"""A real nats-server with the per-role identities of ``tep creds init``, for permission tests.

:class:`AuthServer` writes the seeds and ``auth.conf`` (:func:`tep.creds.init_credentials`) into
a directory, starts an :class:`EmbeddedServer` with them and a log file, and reads the server's
log back: every ``Publish Violation`` / ``Subscription Violation`` line, with the role whose key
caused it (:func:`violations`). :func:`provision` connects as the admin and provisions the log
and the view, as ``tep up`` does before it starts the roles.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import KeyNotFoundError, NotFoundError

from eventstore.access import ROLES, Role
from eventstore.config import TepSettings
from eventstore.jetstream.connection import NatsClient, connect_as
from projections.buckets import ensure_current_view
from tep.creds import AUTH_FILE, init_credentials, public_key, seed_path
from tep.provision import provision as provision_all
from tep.server import EmbeddedServer

__all__ = ["Admin", "AuthServer", "Violation", "provision", "violations"]

_VIOLATION = re.compile(
    r'"\$G/nkey:(?P<key>U[A-Z0-9]+)" - (?P<kind>Publish|Subscription) Violation - '
    r'Subject "(?P<subject>[^"]*)"'
)


@dataclass(frozen=True)
class Violation:
    """One refusal the server logged: who, what, on which subject."""

    role: str
    kind: str
    """``Publish`` or ``Subscription``."""
    subject: str

    def __str__(self) -> str:
        return f"{self.role}: {self.kind} {self.subject}"


def violations(log_file: Path, creds_dir: Path) -> list[Violation]:
    """Every permission violation in a nats-server log, attributed to the role of its key
    (``?<key>`` for a key that is none of ``creds_dir``'s)."""
    roles = {public_key(seed_path(creds_dir, role)): role.value for role in ROLES}
    text = log_file.read_text(errors="replace") if log_file.exists() else ""
    return [
        Violation(roles.get(m["key"], f"?{m['key']}"), m["kind"], m["subject"])
        for m in _VIOLATION.finditer(text)
    ]


@dataclass
class AuthServer:
    """An embedded nats-server with authentication on, one nkey identity per role."""

    directory: Path

    def __post_init__(self) -> None:
        self.creds_dir = self.directory / "creds"
        self.log_file = self.directory / "nats-server.log"
        self.server = EmbeddedServer(
            data_dir=self.directory / "nats",
            auth_file=self.creds_dir / AUTH_FILE,
            log_file=self.log_file,
        )

    @property
    def url(self) -> str:
        """The server's client URL."""
        return self.server.url

    def start(self) -> AuthServer:
        """Write the identities (with the environment's stream names) and start the server."""
        init_credentials(self.creds_dir, settings=TepSettings(nats_url=self.url))
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        self.server.stop()

    def seed(self, role: Role | str) -> Path:
        """The nkey seed file of ``role``."""
        return seed_path(self.creds_dir, role)

    def settings(self, role: Role | str, **fields: Any) -> TepSettings:
        """Settings connecting to this server with ``role``'s seed."""
        return TepSettings(nats_url=self.url, nkey=self.seed(role), **fields)

    def violations(self) -> list[Violation]:
        """Every permission violation the server has logged so far."""
        return violations(self.log_file, self.creds_dir)


@dataclass
class Admin:
    """The admin identity's view of the deployment: the log, the view bucket, the consumers."""

    nc: NatsClient
    settings: TepSettings
    view_bucket: str

    @property
    def js(self) -> JetStreamContext:
        """JetStream as the admin."""
        return self.nc.jetstream()

    async def holds(self, subject: str) -> bool:
        """Whether the log holds a message on ``subject``."""
        try:
            await self.js.get_last_msg(self.settings.stream, subject, direct=True)
        except NotFoundError:
            return False
        return True

    async def revision(self, bucket: str, key: str) -> int | None:
        """The key's current revision (``None``: no value)."""
        try:
            entry = await (await self.js.key_value(bucket)).get(key)
        except KeyNotFoundError:
            return None
        return entry.revision

    async def consumer(self, name: str) -> ConsumerInfo:
        """A consumer of the log."""
        return await self.js.consumer_info(self.settings.stream, name)


@asynccontextmanager
async def provision(server: AuthServer) -> AsyncIterator[Admin]:
    """The log and the view provisioned by the admin identity, and its connection."""
    settings = server.settings(Role.ADMIN)
    nc = await connect_as(settings, Role.ADMIN, name="tests-admin")
    try:
        await provision_all(nc.jetstream(), settings)
        _, pointer, _ = await ensure_current_view(nc.jetstream(), settings)
        yield Admin(nc, settings, pointer.bucket)
    finally:
        await nc.close()
