"""Bearer tokens of the HTTP API: reading them from configuration, and checking one. Pure.

A token configuration maps a name (who holds it, recorded as ``requested_by``) to the
token's SHA-256 (``token_sha256``, hex) or, for development, the token itself (``token``),
and its scopes::

    {"ci":        {"token_sha256": "9f86d081...", "scopes": ["read", "submit"]},
     "dashboard": {"token": "s3cret-dev-token", "scopes": ["read", "operate"]}}

Only digests are kept in memory; a presented token is hashed and compared with every known
digest in constant time, so neither the comparison nor the loop says which one was close.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

from eventstore.errors import SettingsError

__all__ = [
    "Scope",
    "TokenHolder",
    "Tokens",
    "hash_token",
    "load_tokens",
    "new_token",
    "parse_tokens",
    "read_tokens_file",
]

_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}\Z")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")
_MIN_TOKEN_LENGTH = 16


class Scope(StrEnum):
    """What a token may do: ``read`` (every GET and the event stream), ``submit`` (start
    executions, complete waitpoints by their token) and ``operate`` (cancel, retry,
    resume or reject by action id, change schedules)."""

    READ = "read"
    SUBMIT = "submit"
    OPERATE = "operate"


class TokenHolder(msgspec.Struct, frozen=True, kw_only=True):
    """Who presented a valid token, and what it may do."""

    name: str
    scopes: frozenset[Scope]


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, as a tokens file stores it."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


class Tokens:
    """The configured tokens, by digest.

    Args:
        holders: digest (hex SHA-256) -> holder.
    """

    def __init__(self, holders: Mapping[str, TokenHolder]) -> None:
        self._digests = [(bytes.fromhex(d), holder) for d, holder in holders.items()]

    def __len__(self) -> int:
        return len(self._digests)

    def holder(self, token: str) -> TokenHolder | None:
        """Who ``token`` belongs to, or ``None`` (every digest is compared, in constant time)."""
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for digest, holder in self._digests:
            if hmac.compare_digest(digest, presented):
                found = holder
        return found


def _scopes(name: str, value: Any) -> frozenset[Scope]:
    if not isinstance(value, list) or not value:
        raise SettingsError(f"API token {name!r}: scopes must be a non-empty list")
    known = {scope.value for scope in Scope}
    unknown = [s for s in value if s not in known]
    if unknown:
        raise SettingsError(
            f"API token {name!r}: unknown scope {unknown[0]!r} (one of {', '.join(sorted(known))})"
        )
    return frozenset(Scope(s) for s in value)


def _digest(name: str, entry: Mapping[str, Any]) -> str:
    digest = entry.get("token_sha256")
    token = entry.get("token")
    if (digest is None) == (token is None):
        raise SettingsError(f"API token {name!r}: give exactly one of token_sha256 and token")
    if digest is not None:
        if not isinstance(digest, str) or not _HEX_DIGEST.match(digest.lower()):
            raise SettingsError(f"API token {name!r}: token_sha256 must be 64 hex digits")
        return digest.lower()
    if not isinstance(token, str) or len(token) < _MIN_TOKEN_LENGTH:
        raise SettingsError(
            f"API token {name!r}: a token has at least {_MIN_TOKEN_LENGTH} characters"
        )
    return hash_token(token)


def parse_tokens(document: Any, source: str = "TEP_API_TOKENS") -> dict[str, TokenHolder]:
    """Digest -> holder for a token configuration (the module shows its shape).

    Raises:
        SettingsError: not that shape (the message names the entry, never a token).
    """
    if not isinstance(document, dict):
        raise SettingsError(f"{source}: expected a JSON object of name -> token entry")
    holders: dict[str, TokenHolder] = {}
    for name, entry in document.items():
        if not _NAME.match(str(name)):
            raise SettingsError(f"{source}: token name {name!r} must match [A-Za-z0-9_.@-]{{1,64}}")
        if not isinstance(entry, dict):
            raise SettingsError(f"{source}: token {name!r} must be an object")
        unknown = set(entry) - {"token", "token_sha256", "scopes"}
        if unknown:
            field = sorted(unknown)[0]
            raise SettingsError(f"{source}: token {name!r} has unknown field {field!r}")
        digest = _digest(name, entry)
        if digest in holders:
            raise SettingsError(f"{source}: tokens {holders[digest].name!r} and {name!r} are equal")
        holders[digest] = TokenHolder(name=name, scopes=_scopes(name, entry.get("scopes")))
    return holders


def read_tokens_file(path: Path) -> dict[str, TokenHolder]:
    """:func:`parse_tokens` of a JSON file.

    Raises:
        SettingsError: the file cannot be read or is not a token configuration.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"API tokens file {path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"API tokens file {path}: not JSON: {exc.msg} (line {exc.lineno})"
        ) from None
    return parse_tokens(document, str(path))


def load_tokens(inline: str | None, file: Path | None) -> Tokens:
    """The tokens of ``TEP_API_TOKENS`` (``inline``) and of the tokens file together.

    Raises:
        SettingsError: either is not a token configuration, or a token is in both.
    """
    holders: dict[str, TokenHolder] = {}
    if file is not None:
        holders.update(read_tokens_file(file))
    if inline is not None:
        try:
            document = json.loads(inline)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"TEP_API_TOKENS: not JSON: {exc.msg}") from None
        for digest, holder in parse_tokens(document).items():
            if digest in holders:
                raise SettingsError(
                    f"TEP_API_TOKENS: token {holder.name!r} is also {holders[digest].name!r} "
                    "of the tokens file"
                )
            holders[digest] = holder
    return Tokens(holders)
