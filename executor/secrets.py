"""``{{secrets.NAME}}``: resolved from ``TEP_SECRET_NAME`` at call time, only where granted, then
kept out of sight.

A :class:`SecretScope` lives for one attempt. It substitutes secrets into the request, refuses
a request that would carry a secret anywhere it is not granted to (see
:mod:`executor.secret_grants`) or a secret too short to be told apart from ordinary text, and
remembers every value it handed out, so error texts, outputs and kept headers can be scrubbed
in every spelling (see :mod:`executor.redaction`) before anything is written. Values are looked
up as ``TEP_SECRET_<NAME>``, then with the name upper-cased and ``-`` turned into ``_``.

``{{env.NAME}}`` is resolved in the same pass, from the allow-listed environment
(:mod:`executor.env_values`); those values are not secrets and are not scrubbed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from eventstore.error_codes import ErrorCode
from eventstore.errors import SettingsError
from eventstore.templates import CALL_TIME_KINDS, TemplateError, find_references, render
from executor.env_values import env_values
from executor.errors import NonRetryableError
from executor.redaction import REDACTED, Redactor
from executor.secret_grants import (
    HOSTS_SUFFIX,
    SECRET_ENV_PREFIX,
    Destination,
    SecretGrants,
    normalized_name,
)

__all__ = [
    "MIN_SECRET_CHARS",
    "REDACTED",
    "SECRET_ENV_PREFIX",
    "SecretScope",
    "check_secret_environment",
    "secret_env_names",
]

MIN_SECRET_CHARS = 8
"""The shortest secret value accepted: shorter ones would be found inside ordinary words."""


@lru_cache(maxsize=64)
def _redactor(values: frozenset[str]) -> Redactor:
    """One compiled redactor per set of values, shared by the attempts that use them."""
    return Redactor(values)


def secret_env_names(name: str) -> list[str]:
    """Environment variables that may hold secret ``name``, in lookup order."""
    exact = f"{SECRET_ENV_PREFIX}{name}"
    normalized = f"{SECRET_ENV_PREFIX}{normalized_name(name)}"
    return [exact] if normalized == exact else [exact, normalized]


def _too_short(variable: str, value: str) -> str:
    return f"{variable} holds {len(value)} characters; a secret needs at least {MIN_SECRET_CHARS}"


def check_secret_environment(env: Mapping[str, str]) -> None:
    """Check every ``TEP_SECRET_*`` variable and the secrets file of ``env``, at start.

    Raises:
        SettingsError: one line naming each secret too short and each malformed
            ``TEP_SECRET_<NAME>_HOSTS`` variable, secrets file or entry (never a value).
    """
    problems = [
        _too_short(variable, value)
        for variable, value in sorted(env.items())
        if variable.startswith(SECRET_ENV_PREFIX)
        and len(variable) > len(SECRET_ENV_PREFIX)
        and not variable.endswith(HOSTS_SUFFIX)
        and len(value) < MIN_SECRET_CHARS
    ]
    try:
        SecretGrants.from_env(env)
    except SettingsError as exc:
        problems.append(str(exc))
    if problems:
        raise SettingsError("; ".join(problems))


class SecretScope:
    """Secrets used by one attempt: resolution where granted, and scrubbing of anything
    derived from them.

    Args:
        env: where ``TEP_SECRET_*`` values and ``{{env.NAME}}`` variables are read (default:
            the process environment).
        grants: where each secret may go (default: read from ``env``).
        allowed_env: the variables ``{{env.NAME}}`` may read (``--allow-env``).

    Example:
        >>> scope = SecretScope({"TEP_SECRET_TOKEN": "s3cr3t-t0ken",
        ...                      "TEP_SECRET_TOKEN_HOSTS": "api.example.com"})
        >>> scope.resolve({"Authorization": "Bearer {{secrets.TOKEN}}"},
        ...               destination=lambda _: Destination.of_url("https://api.example.com/"))
        {'Authorization': 'Bearer s3cr3t-t0ken'}
        >>> scope.scrub_text("401 for token s3cr3t-t0ken")
        '401 for token [redacted]'
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        grants: SecretGrants | None = None,
        *,
        allowed_env: frozenset[str] = frozenset(),
    ) -> None:
        self._env = os.environ if env is None else env
        self._grants = SecretGrants.from_env(self._env) if grants is None else grants
        self._allowed_env = allowed_env
        self._values: dict[str, str] = {}
        self._redactor = _redactor(frozenset())

    @property
    def active(self) -> bool:
        """Whether any secret value was handed out (and so scrubbing is needed)."""
        return bool(self._values)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the secrets handed out, sorted (never their values)."""
        return tuple(sorted(self._values))

    def _lookup(self, name: str) -> tuple[str, str] | None:
        for variable in secret_env_names(name):
            value = self._env.get(variable)
            if value is not None:
                return variable, value
        return None

    def resolve(self, value: Any, *, destination: Callable[[Any], Destination]) -> Any:
        """Substitute every ``{{secrets.NAME}}`` in a JSON value, if each may go there, and
        every ``{{env.NAME}}``, if the executor allows it.

        Args:
            value: the JSON value (a request spec, a handler's input).
            destination: where the resolved value will be sent, given the resolved value
                (a URL's host is known only once its templates are rendered).

        Raises:
            NonRetryableError: ``missing_secret`` naming each unset secret (never a value);
                ``secret_not_allowed`` for a secret too short, or one not granted to the
                destination (naming the variable that would grant it); ``invalid_request``
                for a malformed template, a destination that cannot be told, or an
                ``{{env.NAME}}`` not allowed or not set.
        """
        try:
            references = [r for r in find_references(value) if r.kind in CALL_TIME_KINDS]
        except TemplateError as exc:
            raise NonRetryableError(str(exc), code=ErrorCode.INVALID_REQUEST) from exc
        if not references:
            return value
        environment = env_values(
            (str(r.target) for r in references if r.kind == "env"), self._allowed_env, self._env
        )
        resolved = self._values_of(
            sorted({str(r.target) for r in references if r.kind == "secrets"})
        )
        self._values.update(resolved)
        self._redactor = _redactor(frozenset(self._values.values()))
        rendered = render(value, {"secrets": resolved, "env": environment}, kinds=CALL_TIME_KINDS)
        if not resolved:
            return rendered
        try:
            target = destination(rendered)
        except ValueError as exc:
            raise NonRetryableError(
                f"cannot tell where the request goes: {exc}", code=ErrorCode.INVALID_REQUEST
            ) from exc
        refusals = [reason for name in resolved if (reason := self._grants.refusal(name, target))]
        if refusals:
            raise NonRetryableError("; ".join(refusals), code=ErrorCode.SECRET_NOT_ALLOWED)
        return rendered

    def _values_of(self, names: list[str]) -> dict[str, str]:
        """The value of each secret in ``names``.

        Raises:
            NonRetryableError: a secret is unset, too short, or is a grant variable.
        """
        grant_names = [n for n in names if normalized_name(n).endswith(HOSTS_SUFFIX)]
        if grant_names:
            raise NonRetryableError(
                f"secrets.{grant_names[0]} is not a secret: TEP_SECRET_*{HOSTS_SUFFIX} "
                "variables grant hosts to secrets",
                code=ErrorCode.SECRET_NOT_ALLOWED,
            )
        found = {name: self._lookup(name) for name in names}
        missing = [name for name, entry in found.items() if entry is None]
        if missing:
            where = ", ".join(
                f"{n} (environment variable {secret_env_names(n)[0]})" for n in missing
            )
            raise NonRetryableError(f"secret not set: {where}", code=ErrorCode.MISSING_SECRET)
        values = {name: entry for name, entry in found.items() if entry is not None}
        short = [
            f"secret {name} is too short: {_too_short(variable, value)}"
            for name, (variable, value) in values.items()
            if len(value) < MIN_SECRET_CHARS
        ]
        if short:
            raise NonRetryableError("; ".join(short), code=ErrorCode.SECRET_NOT_ALLOWED)
        return {name: value for name, (_, value) in values.items()}

    def scrub_text(self, text: str) -> str:
        """``text`` with every secret value handed out replaced, in any spelling."""
        return self._redactor.scrub_text(text)

    def scrub(self, value: Any) -> Any:
        """A JSON value with secret values replaced in every string and key."""
        if not self._values:
            return value
        return self._redactor.scrub(value)
