"""``tep up``'s embedded nats-server: started on a data dir this process holds, checked to be
the server that answers on its port, and watched while the stack runs.

A port taken by another server must never pass for ours: the roles would run against someone
else's stack and loop forever once it stops. So the server is started under a name derived from
its data dir, and the server answering on the port must carry that name.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

import anyio

from eventstore.errors import ServerBinaryNotFoundError, TepError
from tep.server import EmbeddedServer
from tep.supervisor import parent_death_launcher

__all__ = [
    "EmbeddedServerError",
    "is_embedded_server_of",
    "server_exit",
    "server_name",
    "start_embedded_server",
]

_STOP_GRACE_S = 1.5
_WATCH_POLL_S = 0.5
_FAILURE_LINE = re.compile(r"\[(?:FTL|ERR)\] (?P<message>.*)$")


class EmbeddedServerError(TepError):
    """The embedded nats-server did not start, another server answers on its port, or it
    exited while the stack ran."""


async def start_embedded_server(
    data_dir: Path, host: str, port: int, *, auth_file: Path | None = None
) -> EmbeddedServer:
    """Start ``nats-server -js`` with its store in ``data_dir/nats`` and its log next to it,
    with authentication as ``auth_file`` (an ``authorization`` block) says.

    Raises:
        ServerBinaryNotFoundError: no ``nats-server`` binary.
        EmbeddedServerError: it exited (the message is the failure from its log), did not listen
            in time, or another server answers on ``host:port``.
    """
    log_file = data_dir / "nats-server.log"
    name = server_name(data_dir)
    server = EmbeddedServer(
        data_dir=data_dir / "nats",
        port=port,
        host=host,
        log_file=log_file,
        auth_file=auth_file,
        new_session=True,
        extra_args=["--server_name", name],
        # Gone with `tep up` even when it is killed: SIGTERM from Linux, as its roles get.
        launcher=parent_death_launcher(),
        spawn_with=anyio.from_thread.run_sync,
    )
    start_of_log = log_file.stat().st_size if log_file.exists() else 0
    try:
        try:
            await anyio.to_thread.run_sync(server.start)
        except ServerBinaryNotFoundError:
            raise
        except TepError as exc:
            failure = _failure_in_log(log_file, start_of_log) or str(exc)
            raise EmbeddedServerError(
                f"nats-server could not start on {host}:{port}: {failure} (log {log_file})"
            ) from None
        answering = await anyio.to_thread.run_sync(_name_of_server_at, host, port)
        if answering != name:
            raise EmbeddedServerError(
                f"nats-server could not start on {host}:{port}: another server "
                f"({answering or 'unnamed'}) answers there; pick another --port"
            )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.stop, _STOP_GRACE_S)
        raise
    return server


async def server_exit(server: EmbeddedServer) -> int:
    """Wait until the server exits by itself; its exit code."""
    # A Popen child offers nothing to await: poll it.
    while (code := server.exit_code) is None:  # noqa: ASYNC110
        await anyio.sleep(_WATCH_POLL_S)
    return code


async def is_embedded_server_of(data_dir: Path, url: str) -> bool:
    """Whether the server answering at ``url`` is the one ``tep up`` runs on ``data_dir``."""
    if "," in url:
        return False
    parts = urlsplit(url)
    if parts.hostname is None:
        return False
    name = await anyio.to_thread.run_sync(_name_of_server_at, parts.hostname, parts.port or 4222)
    return name == server_name(data_dir)


def server_name(data_dir: Path) -> str:
    """The embedded server's name: the same for a data dir each run, different between two."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()
    return f"tep-up-{digest[:12]}"


def _name_of_server_at(host: str, port: int) -> str | None:
    """The ``server_name`` of the NATS server answering at ``host:port`` (from its INFO)."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as sock:
            received = b""
            while b"\r\n" not in received and len(received) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
    except OSError:
        return None
    line = received.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return None
    try:
        info = json.loads(line[5:])
    except ValueError:
        return None
    name = info.get("server_name") if isinstance(info, dict) else None
    return name if isinstance(name, str) else None


def _failure_in_log(log_file: Path, offset: int) -> str | None:
    """The last fatal or error line the server wrote from ``offset`` on, without its prefix."""
    try:
        with log_file.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return None
    failures = [m["message"] for line in text.splitlines() if (m := _FAILURE_LINE.search(line))]
    return failures[-1] if failures else None
