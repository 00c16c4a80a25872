"""One NATS identity per role: nkey seeds and the server's ``authorization`` block.

``tep creds init DIR`` (and ``tep up`` for its embedded server) writes into ``DIR``:

- ``<role>.nk`` for ``client``, ``executor``, ``orchestrator``, ``projector`` and ``admin``: the
  role's nkey seed, readable by the owner alone. Hand each process its own (``--nkey FILE`` or
  ``TEP_NKEY``);
- ``auth.conf``: the nats-server ``authorization`` block listing each role's public key with
  its permissions (:mod:`eventstore.access`). Include it from the server configuration
  (``include "auth.conf"``) or pass it with ``-c``.

Seeds never leave ``DIR``; ``auth.conf`` holds public keys only. Rotating a role writes a new
seed and a new ``auth.conf``; the server picks it up on ``nats-server --signal reload``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import nkeys

from eventstore.access import ROLES, Permissions, Role, permissions
from eventstore.config import TepSettings
from eventstore.errors import TepError
from orchestrator.config import OrchestratorConfig

__all__ = ["AUTH_FILE", "CredentialsError", "init_credentials", "public_key", "seed_path"]

AUTH_FILE = "auth.conf"
_QUEUES_FILE = "queues.json"
_QUEUE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class CredentialsError(TepError):
    """The credentials directory cannot be written or read as asked."""


def seed_path(directory: Path, role: Role | str) -> Path:
    """Where ``role``'s seed lives in ``directory``."""
    return directory / f"{Role(role).value}.nk"


def public_key(seed_file: Path) -> str:
    """The public key (``U...``) of a seed file.

    Raises:
        CredentialsError: the file is missing or is not an nkey user seed.
    """
    try:
        seed = seed_file.read_bytes().strip()
        pair = nkeys.from_seed(bytearray(seed))
        key: bytes = pair.public_key
    except OSError as exc:
        raise CredentialsError(f"cannot read {seed_file}: {exc.strerror or exc}") from None
    except Exception:
        raise CredentialsError(f"{seed_file} is not an nkey seed") from None
    if not key.startswith(b"U"):
        raise CredentialsError(f"{seed_file} is not a user nkey seed")
    return key.decode()


def _new_seed() -> bytes:
    seed: bytes = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    temporary.replace(path)


def init_credentials(
    directory: Path,
    *,
    settings: TepSettings | None = None,
    queues: Iterable[str] | None = None,
    rotate: Iterable[Role | str] = (),
    force: bool = False,
    reuse: bool = False,
) -> list[Path]:
    """Write a seed per role and ``auth.conf`` into ``directory``; the files written.

    Args:
        directory: created if missing (mode 0700).
        settings: stream names the permissions refer to (default: the environment's).
        queues: the queues the executor identity may serve (default: those of the last
            run on ``directory``, else ``http``).
        rotate: roles whose seeds are replaced (the others are kept).
        force: replace every seed.
        reuse: keep existing seeds and only rewrite ``auth.conf`` (what ``tep up`` does).

    Raises:
        CredentialsError: seeds exist and neither ``force``, ``rotate`` nor ``reuse`` says what
            to do with them, or the directory cannot be written.
    """
    settings = settings or TepSettings.from_env()
    queues = tuple(dict.fromkeys(queues if queues is not None else _last_queues(directory)))
    queues = queues or ("http",)
    for queue in queues:
        if not _QUEUE.match(queue):
            raise CredentialsError(f"queue {queue!r} must match [A-Za-z0-9_-]{{1,64}}")
    renew = {Role(role) for role in rotate}
    existing = [role for role in ROLES if seed_path(directory, role).exists()]
    if existing and not (force or renew or reuse):
        names = ", ".join(seed_path(directory, role).name for role in existing)
        raise CredentialsError(
            f"{directory} already holds {names}: use --rotate ROLE to replace one, or --force "
            "to replace them all"
        )
    written: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for role in ROLES:
            path = seed_path(directory, role)
            if force or role in renew or not path.exists():
                _write_private(path, _new_seed() + b"\n")
                written.append(path)
        keys = {role: public_key(seed_path(directory, role)) for role in ROLES}
        orchestrator = OrchestratorConfig.from_env()
        rules = {
            role: permissions(
                role,
                stream=settings.stream,
                deadletter_stream=settings.deadletter_stream,
                orchestrator_consumer=orchestrator.consumer,
                lease_bucket=orchestrator.lease_bucket,
                queues=queues,
                payload_bucket=settings.payload_bucket,
            )
            for role in ROLES
        }
        auth = directory / AUTH_FILE
        _write_private(auth, render_authorization(keys, rules).encode())
        _write_private(directory / _QUEUES_FILE, json.dumps(list(queues)).encode())
        written.append(auth)
    except OSError as exc:
        raise CredentialsError(f"cannot write to {directory}: {exc.strerror or exc}") from None
    return written


def _last_queues(directory: Path) -> list[str]:
    try:
        stored = json.loads((directory / _QUEUES_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [q for q in stored if isinstance(q, str)] if isinstance(stored, list) else []


def render_authorization(keys: dict[Role, str], rules: dict[Role, Permissions]) -> str:
    """The nats-server configuration block granting each role's key its permissions."""
    lines = [
        "# tep identities, written by `tep creds init` "
        f"({datetime.now(UTC).isoformat(timespec='seconds')}).",
        "# Public keys only; each role's seed is <role>.nk next to this file.",
        '# Use it with `include "auth.conf"` in the server config, or `nats-server -c`.',
        "authorization {",
        "  users = [",
    ]
    for role in ROLES:
        rule = rules[role]
        publish: dict[str, list[str]] = {"allow": list(rule.publish_allow)}
        if rule.publish_deny:
            publish["deny"] = list(rule.publish_deny)
        user: dict[str, object] = {
            "nkey": keys[role],
            "permissions": {
                "publish": publish,
                "subscribe": {"allow": list(rule.subscribe_allow)},
                **({"allow_responses": True} if rule.allow_responses else {}),
            },
        }
        lines.append(f"    # {role.value}")
        lines.append(f"    {json.dumps(user)}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)
