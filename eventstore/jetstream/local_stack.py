"""The note ``tep up`` leaves for commands on the same machine: where its server listens and
where each role's credential is.

``tep up`` starts its nats-server with authentication on. So that ``tep submit`` or
``StateManager.connect()`` on the same machine keep working without flags, ``tep up`` writes
``<state dir>/stack-<host>-<port>.json`` (readable by the user alone) naming the credentials
directory; a connection to exactly that URL without explicit credentials uses the identity of
its role from there. Any other URL is connected to as given.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

__all__ = ["LocalStack", "local_stack_for", "note_local_stack", "remove_local_stack"]


class LocalStack(msgspec.Struct, frozen=True, kw_only=True):
    """A running ``tep up``: its server's URL and its credentials directory, and, when it runs
    the HTTP API, the API's URL and bearer token (the note is readable by the user alone)."""

    url: str
    creds_dir: str
    pid: int
    api_url: str | None = None
    api_token: str | None = None

    def credential(self, role: str) -> Path | None:
        """The nkey seed file of ``role``, if the stack has one."""
        path = Path(self.creds_dir) / f"{role}.nk"
        return path if path.is_file() else None


def _key(url: str) -> tuple[str, int] | None:
    if "," in url:
        return None
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    if parts.hostname is None:
        return None
    try:
        return parts.hostname, parts.port or 4222
    except ValueError:
        return None


def _note_path(state_dir: Path, url: str) -> Path | None:
    key = _key(url)
    if key is None:
        return None
    return state_dir / f"stack-{key[0]}-{key[1]}.json"


def local_stack_for(state_dir: Path, url: str) -> LocalStack | None:
    """The local stack serving ``url``, if ``tep up`` noted one and its process still runs."""
    path = _note_path(state_dir, url)
    if path is None:
        return None
    try:
        stack = msgspec.json.decode(path.read_bytes(), type=LocalStack)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if _key(stack.url) != _key(url) or not _alive(stack.pid):
        return None
    return stack


def note_local_stack(
    state_dir: Path,
    url: str,
    creds_dir: Path,
    *,
    api_url: str | None = None,
    api_token: str | None = None,
) -> None:
    """Record that this process runs the stack at ``url`` with credentials in ``creds_dir``
    (and its HTTP API at ``api_url``, letting in ``api_token``)."""
    path = _note_path(state_dir, url)
    if path is None:
        return
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    note = LocalStack(
        url=url,
        creds_dir=str(creds_dir.resolve()),
        pid=os.getpid(),
        api_url=api_url,
        api_token=api_token,
    )
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(msgspec.json.encode(note))
    temporary.replace(path)


def remove_local_stack(state_dir: Path, url: str) -> None:
    """Remove the note of ``url`` if it is this process's."""
    path = _note_path(state_dir, url)
    if path is None:
        return
    stack = local_stack_for(state_dir, url)
    if stack is not None and stack.pid == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
