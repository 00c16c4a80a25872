"""``{{secrets.NAME}}``: resolved from ``TEP_SECRET_NAME`` at call time, then kept out of sight.

A :class:`SecretScope` lives for one attempt. It substitutes secrets into the request and
remembers every value it handed out, so error texts, outputs and kept headers can be scrubbed
before anything is written. Values are looked up as ``TEP_SECRET_<NAME>``, then with the name
upper-cased and ``-`` turned into ``_``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from eventstore.error_codes import ErrorCode
from eventstore.templates import TemplateError, find_references, render
from executor.errors import NonRetryableError

__all__ = ["REDACTED", "SECRET_ENV_PREFIX", "SecretScope", "secret_env_names"]

SECRET_ENV_PREFIX = "TEP_SECRET_"
REDACTED = "[redacted]"
_SECRETS_ONLY = frozenset({"secrets"})


def secret_env_names(name: str) -> list[str]:
    """Environment variables that may hold secret ``name``, in lookup order."""
    exact = f"{SECRET_ENV_PREFIX}{name}"
    normalized = f"{SECRET_ENV_PREFIX}{name.upper().replace('-', '_')}"
    return [exact] if normalized == exact else [exact, normalized]


class SecretScope:
    """Secrets used by one attempt: resolution, and scrubbing of anything derived from them.

    Example:
        >>> scope = SecretScope({"TEP_SECRET_TOKEN": "s3cr3t"})
        >>> scope.resolve({"Authorization": "Bearer {{secrets.TOKEN}}"})
        {'Authorization': 'Bearer s3cr3t'}
        >>> scope.scrub_text("401 for token s3cr3t")
        '401 for token [redacted]'
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env
        self._forms: list[str] = []

    @property
    def active(self) -> bool:
        """Whether any secret value was handed out (and so scrubbing is needed)."""
        return bool(self._forms)

    def _lookup(self, name: str) -> str | None:
        for variable in secret_env_names(name):
            value = self._env.get(variable)
            if value is not None:
                return value
        return None

    def resolve(self, value: Any) -> Any:
        """Substitute every ``{{secrets.NAME}}`` in a JSON value.

        Raises:
            NonRetryableError: ``missing_secret`` naming each unset secret (never a value), or
                ``invalid_request`` for a malformed template.
        """
        try:
            references = [r for r in find_references(value) if r.kind == "secrets"]
        except TemplateError as exc:
            raise NonRetryableError(str(exc), code=ErrorCode.INVALID_REQUEST) from exc
        if not references:
            return value
        names = sorted({str(r.target) for r in references})
        found = {name: self._lookup(name) for name in names}
        missing = [name for name, secret in found.items() if secret is None]
        if missing:
            where = ", ".join(
                f"{n} (environment variable {secret_env_names(n)[0]})" for n in missing
            )
            raise NonRetryableError(f"secret not set: {where}", code=ErrorCode.MISSING_SECRET)
        resolved = {name: str(secret) for name, secret in found.items()}
        for secret in resolved.values():
            self._remember(secret)
        return render(value, {"secrets": resolved}, kinds=_SECRETS_ONLY)

    def _remember(self, secret: str) -> None:
        if not secret:
            return
        forms = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret)}
        forms.add(json.dumps(secret)[1:-1])
        for form in forms:
            if form and form not in self._forms:
                self._forms.append(form)
        # Longest first, so a secret containing another is replaced whole.
        self._forms.sort(key=len, reverse=True)

    def scrub_text(self, text: str) -> str:
        """``text`` with every secret value (raw, URL- or JSON-escaped) replaced."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def scrub(self, value: Any) -> Any:
        """A JSON value with secret values replaced in every string and key."""
        if not self._forms:
            return value
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {self.scrub_text(str(k)): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(item) for item in value]
        return value
