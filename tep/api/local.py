"""The API token of a local ``tep up``: generated once per data dir, kept readable by the user
alone, handed to its ``tep api`` as a tokens file of the token's digest.

``<data dir>/api/token`` holds the token (the banner prints it; the stack's note names it);
``<data dir>/api/tokens.json`` its SHA-256 with every scope, for ``tep api --tokens-file``.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tep.api.tokens import Scope, hash_token, new_token
from tep.server import find_free_port

__all__ = ["TOKEN_NAME", "LocalApi", "LocalApiToken", "ensure_local_token", "free_or_other_port"]

TOKEN_NAME = "tep-up"
"""The holder's name the API records for the local token (``requested_by``)."""

_MIN_LENGTH = 32


@dataclass(frozen=True)
class LocalApiToken:
    """The token and the tokens file made of it."""

    token: str
    token_file: Path
    tokens_file: Path


def _write_private(path: Path, text: str) -> None:
    # A temporary file of its own (mode 0600) per writer: two `tep up`s starting at once
    # each replace the file whole, never one another's half-written temporary.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def ensure_local_token(directory: Path) -> LocalApiToken:
    """The token kept in ``directory`` (created, mode 0600, if none is there yet) and a
    tokens file granting it every scope."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    token_file = directory / "token"
    try:
        token = token_file.read_text().strip()
    except FileNotFoundError:
        token = ""
    if len(token) < _MIN_LENGTH:
        token = new_token()
        _write_private(token_file, token + "\n")
    tokens_file = directory / "tokens.json"
    document = {
        TOKEN_NAME: {"token_sha256": hash_token(token), "scopes": [scope.value for scope in Scope]}
    }
    _write_private(tokens_file, json.dumps(document, indent=2) + "\n")
    return LocalApiToken(token=token, token_file=token_file, tokens_file=tokens_file)


@dataclass(frozen=True)
class LocalApi:
    """The ``tep api`` a ``tep up`` runs: where it listens (loopback) and its token."""

    port: int
    credential: LocalApiToken

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"


def free_or_other_port(port: int) -> int:
    """``port`` if nothing listens on it on loopback, else a free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return find_free_port()
    return port
