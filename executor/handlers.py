"""Action types served by Python functions: a registry, a decorator, and module loading.

A handler is an async function taking the dispatched request (secrets resolved: a secret in the
input must be granted ``handler:<action type>``, see :mod:`executor.secret_grants`) and returning
the output: a JSON object (or any JSON value, wrapped as ``{"value": ...}``), ``None`` for
``{}``, or a :class:`HandlerResult`. It gets the same retries, timeouts, idempotency key and
events as the built-in ``http`` type. Raise :class:`~executor.errors.RetryableError` or
:class:`~executor.errors.NonRetryableError` to control retries; any other exception is
``handler_error`` and retried. :func:`current_attempt` tells the handler which attempt it runs.

Example (``myapp/handlers.py``, served with ``tep executor --queue resize-image --handlers
myapp.handlers``)::

    from executor import NonRetryableError, handler

    @handler("resize-image")
    async def resize(request):
        if "url" not in request.input:
            raise NonRetryableError("input.url is required", code=ErrorCode.INVALID_REQUEST)
        return {"thumbnail": await make_thumbnail(request.input["url"])}
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any, TypeVar

import msgspec

from eventstore.events import ActionExecuteRequested
from eventstore.plan import DEFAULT_ACTION_TYPE
from executor.errors import HandlerLoadError

__all__ = [
    "AttemptInfo",
    "Handler",
    "HandlerRegistry",
    "HandlerResult",
    "current_attempt",
    "default_registry",
    "handler",
    "load_handler_modules",
    "set_current_attempt",
]

Handler = Callable[[ActionExecuteRequested], Awaitable[Any]]
H = TypeVar("H", bound=Handler)

_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class HandlerResult(msgspec.Struct, frozen=True, kw_only=True):
    """A handler's output with optional HTTP-like metadata kept on ``action.completed``."""

    output: Any = None
    status_code: int | None = None
    headers: dict[str, str] = {}


class AttemptInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The attempt a handler is running: ids, attempt number, limits."""

    execution_id: str
    action_id: str
    action_type: str
    attempt: int
    max_attempts: int
    timeout_s: float
    idempotency_key: str
    secrets: tuple[str, ...] = ()
    """The names of the secrets resolved into the request (never their values)."""
    traceparent: str | None = None
    """The W3C ``traceparent`` of the attempt's span: what a handler calling another service
    passes on (the ``http`` type sends it as that request header)."""


_current: ContextVar[AttemptInfo] = ContextVar("tep_attempt")


def current_attempt() -> AttemptInfo:
    """The attempt being run by the calling handler.

    Raises:
        LookupError: called outside a handler.
    """
    return _current.get()


class HandlerRegistry:
    """Action type -> handler. The executor consults it for every request it takes."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, action_type: str, function: Handler) -> None:
        """Serve ``action_type`` with ``function``.

        Raises:
            HandlerLoadError: a bad type name, the built-in ``http`` type, or a type that
                already has a different handler.
        """
        if not _TYPE_PATTERN.match(action_type):
            raise HandlerLoadError(f"action type {action_type!r} must match [A-Za-z0-9_-]{{1,64}}")
        if action_type == DEFAULT_ACTION_TYPE:
            raise HandlerLoadError(f"action type {action_type!r} is built in")
        existing = self._handlers.get(action_type)
        if existing is not None and existing is not function:
            raise HandlerLoadError(
                f"action type {action_type!r} already has a handler "
                f"({_describe(existing)}); cannot also register {_describe(function)}"
            )
        self._handlers[action_type] = function

    def handler(self, action_type: str) -> Callable[[H], H]:
        """Decorator form of :meth:`register`."""

        def decorate(function: H) -> H:
            self.register(action_type, function)
            return function

        return decorate

    def get(self, action_type: str) -> Handler | None:
        """The handler of ``action_type``, or ``None``."""
        return self._handlers.get(action_type)

    def types(self) -> list[str]:
        """Registered action types, sorted."""
        return sorted(self._handlers)


default_registry = HandlerRegistry()
"""Where :func:`handler` registers; the executor serves it alongside the built-in ``http``."""


def handler(action_type: str) -> Callable[[H], H]:
    """Register an async function as the handler of ``action_type`` (in :data:`default_registry`).

    Example:
        >>> @handler("greet")  # doctest: +SKIP
        ... async def greet(request):
        ...     return {"greeting": f"hello {request.input['name']}"}
    """
    return default_registry.handler(action_type)


def load_handler_modules(modules: Iterable[str]) -> None:
    """Import each module so its ``@handler`` decorators run.

    Raises:
        HandlerLoadError: a module cannot be imported (the message names it and the reason).
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except HandlerLoadError:
            raise
        except Exception as exc:
            raise HandlerLoadError(
                f"cannot import handler module {name!r}: {type(exc).__name__}: {exc}"
            ) from exc


def _describe(function: Handler) -> str:
    module = getattr(function, "__module__", "?")
    name = getattr(function, "__qualname__", repr(function))
    return f"{module}.{name}"


def set_current_attempt(info: AttemptInfo) -> None:
    """Make ``info`` what :func:`current_attempt` returns in the calling task (executor use)."""
    _current.set(info)
