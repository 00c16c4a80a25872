"""``{{env.NAME}}``: the executor's own environment, only the names it allows.

An operator lists the variables plans may read (``tep executor --allow-env REGION``, or
``TEP_EXECUTOR_ALLOW_ENV=REGION,STAGE``); ``{{env.REGION}}`` then becomes the value of the
executor's variable ``REGION`` at call time. Unlike a secret, the value is not redacted: it may
appear in outputs, errors and the log, so only configuration that is not secret belongs here.
A variable not listed is never read, whether it is set or not: the request fails with
``invalid_request`` naming the reference and how to allow it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from eventstore.error_codes import ErrorCode
from executor.errors import NonRetryableError
from executor.secret_grants import SECRET_ENV_PREFIX

__all__ = ["ENV_ALLOW_VARIABLE", "env_values", "parse_env_name"]

ENV_ALLOW_VARIABLE = "TEP_EXECUTOR_ALLOW_ENV"
"""The setting that lists the variables ``{{env.NAME}}`` may read."""
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def parse_env_name(name: str) -> str:
    """An ``--allow-env`` entry, checked.

    Raises:
        ValueError: not a variable name, or a ``TEP_SECRET_*`` variable (a secret must stay a
            ``{{secrets.NAME}}``: granted per host and redacted).
    """
    name = name.strip()
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not an environment variable name")
    if name.upper().startswith(SECRET_ENV_PREFIX):
        secret = name[len(SECRET_ENV_PREFIX) :]
        raise ValueError(
            f"{name} is a secret, not an environment value: use {{{{secrets.{secret}}}}}, "
            "which is granted per host and redacted"
        )
    return name


def _how_to_allow(names: list[str]) -> str:
    flags = " ".join(f"--allow-env {name}" for name in names)
    return f"allow it with `tep executor {flags}` or {ENV_ALLOW_VARIABLE}={','.join(names)}"


def env_values(
    names: Iterable[str], allowed: frozenset[str], env: Mapping[str, str]
) -> dict[str, str]:
    """The value of each variable in ``names``, read from ``env`` only if ``allowed``.

    Raises:
        NonRetryableError: ``invalid_request`` naming each reference not on the allow-list
            (and how to allow it), else each allowed variable that is not set.
    """
    wanted = sorted(set(names))
    refused = [name for name in wanted if name not in allowed]
    if refused:
        refs = ", ".join(f"{{{{env.{name}}}}}" for name in refused)
        verb = "is" if len(refused) == 1 else "are"
        raise NonRetryableError(
            f"{refs} {verb} not on this executor's environment allow-list; "
            + _how_to_allow(refused),
            code=ErrorCode.INVALID_REQUEST,
        )
    unset = [name for name in wanted if name not in env]
    if unset:
        raise NonRetryableError(
            "the executor's environment does not set "
            + ", ".join(f"{name} (for {{{{env.{name}}}}})" for name in unset),
            code=ErrorCode.INVALID_REQUEST,
        )
    return {name: env[name] for name in wanted}
