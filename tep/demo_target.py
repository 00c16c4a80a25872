"""``tep demo-target``: a small local HTTP service for the examples (no internet needed).

Endpoints (all JSON)::

    GET  /health                      {"ok": true}
    GET  /users/{id}                  a user; tier "premium" for even ids, "standard" for odd;
                                      404 for ids that are not 1..999
    GET  /users/{id}/orders           the user's orders
    GET  /recommendations?user_id=    a few product ids
    GET  /catalog?items=N             a product catalog of N items (default 40,000: about 5 MB)
    *    /flaky/{key}?fail=N          503 for the first N calls, then 200 (counted per key and
                                      Idempotency-Key, so every execution sees fresh failures;
                                      with &per=key per key alone, so a retried run, whose
                                      Idempotency-Key is new, finds it recovered)
    GET  /slow?ms=N                   answers after N milliseconds (at most 30 s)
    POST /score                       a score for {"tier", "orders"}
    POST /notify                      pretends to send a message; echoes the recipient
    *    /echo                        the request: method, path, query, JSON body, idempotency key
    *    /status/{code}               answers with that HTTP status
    GET  /stats                       calls per route, for tests and curiosity
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
from aiohttp import web

from tep.logging_setup import configure_logging

__all__ = ["DEFAULT_PORT", "build_app", "register", "serve"]

DEFAULT_PORT = 8787
_log = logging.getLogger("tep.demo_target")

_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tony")
_PRODUCTS = ("lamp", "desk", "chair", "kettle", "plant", "rug", "clock", "mug")

_EPILOG = f"""\
examples:
  tep demo-target                       # http://127.0.0.1:{DEFAULT_PORT}
  tep demo-target --port 9000
  curl -s http://127.0.0.1:{DEFAULT_PORT}/users/42
  curl -s -i 'http://127.0.0.1:{DEFAULT_PORT}/flaky/x?fail=2'   # 503, 503, then 200

endpoints: /health, /users/{{id}}, /users/{{id}}/orders, /recommendations?user_id=, /catalog,
/flaky/{{key}}?fail=N, /slow?ms=N, POST /score, POST /notify, /echo, /status/{{code}}, /stats
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep demo-target``."""
    parser = subparsers.add_parser(
        "demo-target",
        help="run the bundled HTTP service the example plans call",
        description="A small local HTTP service with deterministic data, flaky and slow "
        "endpoints, so the examples show retries, fallbacks and fan-out without the internet.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)"
    )
    parser.set_defaults(handler=run)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def _user_id(request: web.Request) -> int:
    raw = request.match_info["user_id"]
    if not raw.isdigit() or not 1 <= int(raw) <= 999:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "not_found", "detail": f"no user {raw}"}),
            content_type="application/json",
        )
    return int(raw)


_ATTEMPTS: web.AppKey[Counter[tuple[str, str]]] = web.AppKey("attempts")
_HITS: web.AppKey[Counter[str]] = web.AppKey("hits")


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _user(request: web.Request) -> web.Response:
    user_id = _user_id(request)
    name = _NAMES[user_id % len(_NAMES)]
    return web.json_response(
        {
            "id": str(user_id),
            "name": name,
            "email": f"{name.lower()}.{user_id}@example.test",
            "tier": "premium" if user_id % 2 == 0 else "standard",
        }
    )


async def _orders(request: web.Request) -> web.Response:
    user_id = _user_id(request)
    count = user_id % 4 + 1
    orders = [
        {
            "id": f"o-{user_id}-{n}",
            "product": _PRODUCTS[_digest(f"{user_id}/{n}") % len(_PRODUCTS)],
            "amount": 5 + _digest(f"amount/{user_id}/{n}") % 95,
        }
        for n in range(1, count + 1)
    ]
    return web.json_response(
        {"user_id": str(user_id), "orders": orders, "total": sum(o["amount"] for o in orders)}
    )


async def _recommendations(request: web.Request) -> web.Response:
    user_id = request.query.get("user_id", "0")
    start = _digest(user_id) % len(_PRODUCTS)
    picks = [_PRODUCTS[(start + n) % len(_PRODUCTS)] for n in range(3)]
    return web.json_response({"user_id": user_id, "products": picks})


_CATALOG_ITEMS = 40_000
_MAX_CATALOG_ITEMS = 400_000


async def _catalog(request: web.Request) -> web.Response:
    try:
        count = int(request.query.get("items", str(_CATALOG_ITEMS)))
    except ValueError:
        raise web.HTTPBadRequest(text="items must be an integer") from None
    if not 0 <= count <= _MAX_CATALOG_ITEMS:
        raise web.HTTPBadRequest(text=f"items must be 0..{_MAX_CATALOG_ITEMS}")
    items = [
        {
            "sku": f"sku-{n:06d}",
            "name": f"{_PRODUCTS[n % len(_PRODUCTS)]} no. {n}",
            "price": round(5 + (_digest(str(n)) % 9500) / 100, 2),
            "description": f"a {_PRODUCTS[n % len(_PRODUCTS)]} from the demo catalog, item {n}",
        }
        for n in range(count)
    ]
    return web.json_response({"count": count, "items": items})


async def _flaky(request: web.Request) -> web.Response:
    attempts: Counter[tuple[str, str]] = request.app[_ATTEMPTS]
    try:
        fail = int(request.query.get("fail", "1"))
    except ValueError:
        raise web.HTTPBadRequest(text="fail must be an integer") from None
    per_key = request.query.get("per") == "key"
    key = (request.match_info["key"], "" if per_key else request.headers.get("Idempotency-Key", ""))
    attempts[key] += 1
    attempt = attempts[key]
    if attempt <= fail:
        return web.json_response(
            {"error": "temporarily_unavailable", "attempt": attempt, "fails_left": fail - attempt},
            status=503,
        )
    return web.json_response({"key": key[0], "attempt": attempt, "ok": True})


async def _slow(request: web.Request) -> web.Response:
    try:
        ms = min(max(int(request.query.get("ms", "500")), 0), 30_000)
    except ValueError:
        raise web.HTTPBadRequest(text="ms must be an integer") from None
    await anyio.sleep(ms / 1000)
    return web.json_response({"slept_ms": ms})


async def _json_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "invalid_json"}), content_type="application/json"
        ) from None


async def _score(request: web.Request) -> web.Response:
    body = await _json_body(request) or {}
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    base = 70 if body.get("tier") == "premium" else 40
    orders = body.get("orders")
    bonus = min(len(orders), 10) * 3 if isinstance(orders, list) else 0
    total = body.get("total")
    if isinstance(total, int | float):
        bonus += min(int(total) // 20, 15)
    return web.json_response({"score": min(base + bonus, 100), "tier": body.get("tier")})


async def _notify(request: web.Request) -> web.Response:
    body = await _json_body(request) or {}
    if not isinstance(body, dict) or not body.get("to"):
        raise web.HTTPUnprocessableEntity(
            text=json.dumps({"error": "missing 'to'"}), content_type="application/json"
        )
    message_id = f"msg-{_digest(json.dumps(body, sort_keys=True)):08x}"
    return web.json_response(
        {"delivered": True, "to": body["to"], "message_id": message_id}, status=202
    )


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "json": await _json_body(request),
            "idempotency_key": request.headers.get("Idempotency-Key"),
        }
    )


async def _status(request: web.Request) -> web.Response:
    raw = request.match_info["code"]
    if not raw.isdigit() or not 200 <= int(raw) <= 599:
        raise web.HTTPBadRequest(text="status must be 200..599")
    return web.json_response({"status": int(raw)}, status=int(raw))


async def _stats(request: web.Request) -> web.Response:
    hits = request.app[_HITS]
    return web.json_response(dict(hits.items()))


@web.middleware
async def _count_hits(request: web.Request, handler: Any) -> web.StreamResponse:
    route = request.match_info.route.resource
    name = route.canonical if route is not None else request.path
    request.app[_HITS][name] += 1
    response: web.StreamResponse = await handler(request)
    return response


def build_app() -> web.Application:
    """The demo service as an aiohttp application (tests run it in-process)."""
    app = web.Application(middlewares=[_count_hits])
    app[_ATTEMPTS] = Counter()
    app[_HITS] = Counter()
    app.router.add_get("/health", _health)
    app.router.add_get("/users/{user_id}", _user)
    app.router.add_get("/users/{user_id}/orders", _orders)
    app.router.add_get("/recommendations", _recommendations)
    app.router.add_get("/catalog", _catalog)
    app.router.add_route("*", "/flaky/{key}", _flaky)
    app.router.add_get("/slow", _slow)
    app.router.add_post("/score", _score)
    app.router.add_post("/notify", _notify)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_route("*", "/status/{code}", _status)
    app.router.add_get("/stats", _stats)
    return app


@contextlib.asynccontextmanager
async def _listening(host: str, port: int) -> AsyncIterator[None]:
    """The demo service listening on ``host:port`` for as long as the context lasts."""
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        _log.info("demo target listening", extra={"url": f"http://{host}:{port}"})
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


async def serve(host: str, port: int, stop: anyio.Event) -> None:
    """Serve until ``stop`` is set."""
    async with _listening(host, port):
        await stop.wait()


async def _serve_until_signalled(host: str, port: int) -> None:
    # Caught before listening: a signal that arrives while starting up stops right after.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with _listening(host, port):
            async for _ in signals:
                return


def run(args: argparse.Namespace) -> int:
    """Handle ``tep demo-target``."""
    configure_logging("demo-target")
    try:
        anyio.run(_serve_until_signalled, args.host, args.port)
    except OSError as exc:
        _log.error("cannot listen on %s:%s: %s", args.host, args.port, exc.strerror or exc)
        return 2
    return 0
