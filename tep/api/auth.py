"""Bearer authentication of the routes: who calls, and whether their token has the scope.

Every route but ``/healthz`` depends on :func:`require`: no token or an unknown one answers
401 (with ``WWW-Authenticate: Bearer``), a token without the route's scope 403. The token is
never logged nor echoed; the holder's name is what the API records as ``requested_by``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tep.api.problems import Problem, forbidden, unauthorized
from tep.api.tokens import Scope, TokenHolder, Tokens

__all__ = ["ApiProblem", "Operator", "Reader", "Submitter", "require"]

_bearer = HTTPBearer(
    auto_error=False,
    description="a token from TEP_API_TOKENS / --tokens-file (under `tep up`: printed in its "
    "banner); scopes read, submit, operate",
)


class ApiProblem(Exception):
    """Answer the request with this problem (and headers)."""

    def __init__(self, problem: Problem, headers: dict[str, str] | None = None) -> None:
        self.problem = problem
        self.headers = headers or {}
        super().__init__(problem.detail or problem.title)


def _tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


def require(scope: Scope) -> Callable[..., Awaitable[TokenHolder]]:
    """A dependency: the caller's token holder, if the token is valid and has ``scope``.

    Raises:
        ApiProblem: 401 without a valid bearer token, 403 without the scope.
    """

    async def caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> TokenHolder:
        challenge = {"WWW-Authenticate": 'Bearer realm="tep"'}
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiProblem(unauthorized("a bearer token is required"), challenge)
        holder = _tokens(request).holder(credentials.credentials)
        if holder is None:
            raise ApiProblem(unauthorized("the bearer token is not valid"), challenge)
        if scope not in holder.scopes:
            raise ApiProblem(forbidden(f"this token lacks the {scope.value!r} scope"))
        return holder

    caller.__name__ = f"require_{scope.value}"
    return caller


Reader = Annotated[TokenHolder, Depends(require(Scope.READ))]
"""A route's caller with the ``read`` scope."""
Submitter = Annotated[TokenHolder, Depends(require(Scope.SUBMIT))]
"""A route's caller with the ``submit`` scope."""
Operator = Annotated[TokenHolder, Depends(require(Scope.OPERATE))]
"""A route's caller with the ``operate`` scope."""
