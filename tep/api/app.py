"""The FastAPI application: routes, bearer auth, body limit, CORS, problem+json errors and the
OpenAPI document with the contract's msgspec components.

Example:
    >>> app = create_app(backend, ApiSettings(), tokens)  # doctest: +SKIP
    >>> await serve(app, "127.0.0.1", 8700)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from eventstore.errors import TepError
from tep import __version__
from tep.api import routes_executions, routes_operations, routes_schedules, routes_system
from tep.api.auth import ApiProblem, Reader
from tep.api.backend import ApiBackend
from tep.api.body_limit import PROBLEM_JSON, BodyLimit
from tep.api.config import ApiSettings
from tep.api.problems import (
    Problem,
    ProblemItem,
    http_problem,
    internal_error,
    problem_for,
    validation_problem,
)
from tep.api.schemas import merge_components
from tep.api.tokens import Tokens
from tep.dashboard import mount_dashboard

__all__ = ["create_app"]

_log = logging.getLogger("tep.api")

_DESCRIPTION = """\
Submit plans, follow executions live, scrub through their history, operate on them (cancel,
retry, resume or reject waitpoints) and manage schedules. Every route but `/healthz` needs a
bearer token with the route's scope (`read`, `submit` or `operate`); every error is an RFC 9457
`application/problem+json` document. See docs/api.md.
"""


def _problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def _on_api_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return _problem_response(exc.problem, exc.headers)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return _problem_response(http_problem(exc.status_code, detail), dict(exc.headers or {}))


async def _on_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = [
        ProblemItem(
            loc=[part for part in error.get("loc", ()) if isinstance(part, str | int)],
            message=str(error.get("msg", "invalid")),
        )
        for error in exc.errors()
    ]
    return _problem_response(validation_problem(items))


async def _on_tep_error(request: Request, exc: Exception) -> JSONResponse:
    problem = problem_for(exc)
    if problem is None:
        # The route's template, not the path: a path may hold a waitpoint's token.
        route = getattr(request.scope.get("route"), "path", "?")
        _log.error("unexpected error answering %s %s", request.method, route, exc_info=exc)
        return _problem_response(internal_error())
    return _problem_response(problem)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The server logs the traceback; the body says nothing of it.
    return _problem_response(internal_error())


def _operation_id(route: APIRoute) -> str:
    # The route's function name: what the document's links name (names are unique).
    return route.name


def create_app(backend: ApiBackend, settings: ApiSettings, tokens: Tokens) -> FastAPI:
    """The API over ``backend``, letting in the holders of ``tokens``.

    ``app.state.metrics`` may be set to a callable returning the Prometheus text of
    ``GET /metrics`` (empty until then).
    """
    app = FastAPI(
        title="tep",
        version=__version__,
        description=_DESCRIPTION,
        openapi_url=None,  # served below, behind a token like every route but /healthz
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=_operation_id,
    )
    app.state.backend = backend
    app.state.tokens = tokens
    app.state.heartbeat_s = settings.heartbeat_s
    app.state.metrics = None
    app.add_exception_handler(ApiProblem, _on_api_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(TepError, _on_tep_error)
    app.add_exception_handler(Exception, _on_unexpected)
    for module in (routes_system, routes_executions, routes_operations, routes_schedules):
        app.include_router(module.router)
    mount_dashboard(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Location"],
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _with_problems(merge_components(document))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(caller: Reader) -> JSONResponse:
        return JSONResponse(app.openapi())

    return app


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}}}


def _with_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Every operation's errors as problem documents: FastAPI's 422 becomes the 400 the
    handlers answer, secured routes get 401/403, and ``default`` covers the rest."""
    schemas = document["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    items = schemas["Problem"].pop("$defs", {})
    schemas.update(items)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = _problem("the request is invalid (`problems` lists why)")
            if operation.get("security"):
                responses["401"] = _problem("no valid bearer token")
                responses["403"] = _problem("the token lacks the route's scope")
            responses["default"] = _problem("any other error")
    return document
