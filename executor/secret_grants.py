"""Where each secret may be sent: ``TEP_SECRET_<NAME>_HOSTS`` and the secrets file. Pure.

A grant is one of:

- a host name or IP address (``api.example.com``, ``10.1.2.3``), matched exactly;
- ``*.example.com``: the subdomains of ``example.com`` (not ``example.com`` itself);
- ``handler:<action type>``: the input of that Python handler type (which has no URL);
- ``*``: anywhere (an explicit opt-out of scoping).

``TEP_SECRET_API_TOKEN_HOSTS=api.example.com,*.example.org`` grants ``API_TOKEN``; the file
named by ``TEP_EXECUTOR_SECRETS_FILE`` is a JSON object ``{"API_TOKEN": ["api.example.com"]}``.
Both count (a secret may go where either grants it). A secret with no grant goes nowhere.
Names match as values are looked up: exactly, or upper-cased with ``-`` as ``_``.

Host names are compared as the HTTP client connects to them: lower case, no trailing dot,
international names in their IDNA (``xn--``) form, whether the grant or the URL spells them.

Example:
    >>> grants = SecretGrants.from_env({"TEP_SECRET_TOKEN_HOSTS": "api.example.com"})
    >>> grants.refusal("TOKEN", Destination.of_url("https://API.example.com/x")) is None
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from yarl import URL

from eventstore.errors import SettingsError, TepError
from executor.target_policy import InvalidTargetPolicyError, parse_allowed_host

__all__ = [
    "ANY_DESTINATION",
    "HANDLER_GRANT_PREFIX",
    "HOSTS_SUFFIX",
    "SECRETS_FILE_VARIABLE",
    "SECRET_ENV_PREFIX",
    "Destination",
    "InvalidGrantError",
    "SecretGrants",
    "grants_variable",
    "normalized_name",
    "parse_grant",
]

SECRET_ENV_PREFIX = "TEP_SECRET_"
HOSTS_SUFFIX = "_HOSTS"
SECRETS_FILE_VARIABLE = "TEP_EXECUTOR_SECRETS_FILE"
ANY_DESTINATION = "*"
HANDLER_GRANT_PREFIX = "handler:"
_GRANT_FORMS = "a host name, *.domain, an IP address, handler:<action type> or *"


class InvalidGrantError(TepError, ValueError):
    """A grant that is none of the accepted forms (the message names it)."""


def normalized_name(name: str) -> str:
    """A secret's name as its variables spell it: upper case, ``-`` as ``_``."""
    return name.upper().replace("-", "_")


def grants_variable(name: str) -> str:
    """The variable that grants secret ``name``: ``TEP_SECRET_<NAME>_HOSTS``."""
    return f"{SECRET_ENV_PREFIX}{normalized_name(name)}{HOSTS_SUFFIX}"


def _wire_host(host: str) -> str:
    """``host`` as the HTTP client connects to it (IDNA, lower case, no trailing dot).

    Raises:
        ValueError: ``host`` cannot be a host name.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    encoded = URL.build(scheme="http", host=host).raw_host
    if not encoded:
        raise ValueError("empty host")
    return encoded.lower().rstrip(".")


@dataclass(frozen=True)
class Destination:
    """Where a request carrying secrets goes: a URL's host, or a Python handler type."""

    kind: Literal["host", "handler"]
    name: str

    @classmethod
    def of_url(cls, url: str) -> Destination:
        """The host of ``url``, as the HTTP client will connect to it.

        Raises:
            ValueError: ``url`` has no host the client could connect to.
        """
        host = URL(url).raw_host
        if not host:
            raise ValueError(f"{url!r} names no host")
        return cls("host", _wire_host(host))

    @classmethod
    def handler(cls, action_type: str) -> Destination:
        """The Python handler of ``action_type``."""
        return cls("handler", action_type)

    @property
    def grant(self) -> str:
        """The grant that lets a secret go here."""
        return self.name if self.kind == "host" else f"{HANDLER_GRANT_PREFIX}{self.name}"

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def parse_grant(text: str) -> str:
    """``text`` as a grant, normalised (hosts in their wire form).

    Raises:
        InvalidGrantError: ``text`` is none of the accepted forms.
    """
    grant = text.strip()
    if grant == ANY_DESTINATION:
        return grant
    if grant.startswith(HANDLER_GRANT_PREFIX):
        action_type = grant.removeprefix(HANDLER_GRANT_PREFIX).strip()
        if action_type and all(c.isascii() and (c.isalnum() or c in "_-") for c in action_type):
            return f"{HANDLER_GRANT_PREFIX}{action_type}"
        raise InvalidGrantError(f"{text!r} names no action type (e.g. handler:resize-image)")
    wildcard = "*." if grant.startswith("*.") else ""
    try:
        return parse_allowed_host(wildcard + _wire_host(grant.removeprefix(wildcard)))
    except (ValueError, InvalidTargetPolicyError):
        raise InvalidGrantError(
            f"{text!r} is not {_GRANT_FORMS} (no scheme, port or path)"
        ) from None


def _host_granted(grant: str, host: str) -> bool:
    return grant == host or (grant.startswith("*.") and host.endswith(grant[1:]))


@dataclass(frozen=True)
class SecretGrants:
    """The grants of every secret, by normalised name."""

    by_name: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SecretGrants:
        """Every ``TEP_SECRET_<NAME>_HOSTS`` variable of ``env`` and its secrets file.

        Raises:
            SettingsError: one line naming each malformed variable, file or entry.
        """
        grants: dict[str, set[str]] = {}
        problems: list[str] = []
        for variable, value in sorted(env.items()):
            if not (variable.startswith(SECRET_ENV_PREFIX) and variable.endswith(HOSTS_SUFFIX)):
                continue
            name = variable[len(SECRET_ENV_PREFIX) : -len(HOSTS_SUFFIX)]
            if not name:
                continue
            try:
                parsed = [parse_grant(g) for g in value.split(",") if g.strip()]
            except InvalidGrantError as exc:
                problems.append(f"{variable}: {exc}")
                continue
            grants.setdefault(normalized_name(name), set()).update(parsed)
        path = env.get(SECRETS_FILE_VARIABLE, "").strip()
        if path:
            try:
                for name, entries in _read_file(Path(path)).items():
                    grants.setdefault(normalized_name(name), set()).update(entries)
            except InvalidGrantError as exc:
                problems.append(f"{SECRETS_FILE_VARIABLE}={path}: {exc}")
        if problems:
            raise SettingsError("; ".join(problems))
        return cls({name: frozenset(entries) for name, entries in grants.items()})

    def granted(self, name: str) -> frozenset[str]:
        """The grants of secret ``name`` (empty: it may go nowhere)."""
        return self.by_name.get(normalized_name(name), frozenset())

    def refusal(self, name: str, destination: Destination) -> str | None:
        """Why secret ``name`` may not go to ``destination``, or ``None`` if it may.

        The reason is one line naming the secret and the variable that would grant it.
        """
        grants = self.granted(name)
        if ANY_DESTINATION in grants or destination.grant in grants:
            return None
        if destination.kind == "host" and any(_host_granted(g, destination.name) for g in grants):
            return None
        variable = grants_variable(name)
        if not grants:
            return (
                f"secret {name} is not granted to any host: set "
                f"{variable}={destination.grant} (or * for any)"
            )
        return (
            f"secret {name} is not granted to {destination} (granted: "
            f"{', '.join(sorted(grants))}); add {destination.grant} to {variable} to allow it"
        )


def _read_file(path: Path) -> dict[str, list[str]]:
    """The secrets file: ``{"NAME": ["grant", ...], ...}``, each grant parsed.

    Raises:
        InvalidGrantError: the file cannot be read, is not such an object, or holds a bad grant.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidGrantError(f"cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InvalidGrantError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise InvalidGrantError(
            "expected a JSON object of secret name -> list of hosts, e.g. "
            '{"API_TOKEN": ["api.example.com"]}'
        )
    parsed: dict[str, list[str]] = {}
    for name, entries in document.items():
        if not name.strip() or not _is_string_list(entries):
            raise InvalidGrantError(
                f"entry {name!r}: expected a secret name and a list of hosts, e.g. "
                '"API_TOKEN": ["api.example.com"]'
            )
        try:
            parsed[name] = [parse_grant(entry) for entry in entries]
        except InvalidGrantError as exc:
            raise InvalidGrantError(f"entry {name!r}: {exc}") from None
    return parsed


def _is_string_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
