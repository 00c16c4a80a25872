"""The executor's HTTP layer against aiohttp's ``ClientSession`` used directly.

    .venv/bin/python bench/bench_http.py [--concurrency 50] [--requests 20000] [--rounds 3]

Starts a loopback ``aiohttp.web`` server in a child process, then, in this process, makes the
same GET requests (a small JSON body each) at the given concurrency through (a) the executor's
HTTP layer (:class:`executor.http_client.AiohttpClient`, with the per-request timeout, body cap
and header mapping it always applies) and (b) a bare ``aiohttp.ClientSession``. The two
alternate for several rounds; the best round of each is printed, with the ratio (a)/(b).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from executor.http_client import AiohttpClient, HttpRequest
from executor.target_policy import TargetPolicy
from tep.server import find_free_port


def serve(port: int) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def wait_for_server(url: str) -> None:
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def drive(call: Callable[[int], Awaitable[None]], total: int, concurrency: int) -> float:
    """Requests per second for ``total`` calls with ``concurrency`` workers."""
    counter = iter(range(total))

    async def worker() -> None:
        for index in counter:
            await call(index)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return total / (time.perf_counter() - started)


async def ours(url: str, total: int, concurrency: int) -> float:
    loopback = TargetPolicy.from_strings(allow_cidrs=["127.0.0.0/8"])
    client = AiohttpClient(max_connections=concurrency, policy=loopback)

    async def call(index: int) -> None:
        response = await client.send(
            HttpRequest(
                method="GET",
                url=f"{url}/item/{index}",
                headers={"Idempotency-Key": f"bench:{index}"},
            ),
            timeout_s=30.0,
            max_body_bytes=1 << 20,
        )
        assert response.status == 200

    try:
        await drive(call, min(total, 500), concurrency)  # warm the pool
        return await drive(call, total, concurrency)
    finally:
        await client.aclose()


async def direct(url: str, total: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(index: int) -> None:
            async with session.get(
                f"{url}/item/{index}", headers={"Idempotency-Key": f"bench:{index}"}
            ) as response:
                await response.read()
                assert response.status == 200

        await drive(call, min(total, 500), concurrency)
        return await drive(call, total, concurrency)


async def main(args: argparse.Namespace) -> None:
    port = find_free_port()
    server = multiprocessing.Process(target=serve, args=(port,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_for_server(url)
        ours_rates: list[float] = []
        direct_rates: list[float] = []
        for _ in range(args.rounds):
            direct_rates.append(await direct(url, args.requests, args.concurrency))
            ours_rates.append(await ours(url, args.requests, args.concurrency))
    finally:
        server.terminate()
        server.join(5)
    best_ours, best_direct = max(ours_rates), max(direct_rates)
    print(f"concurrency {args.concurrency}, {args.requests} GETs per round, {args.rounds} rounds")
    print(f"(a) executor HTTP layer (AiohttpClient): {best_ours:8,.0f} requests/s")
    print(f"(b) aiohttp ClientSession directly:      {best_direct:8,.0f} requests/s")
    print(f"ratio (a)/(b): {best_ours / best_direct:.2f}  (target >= 0.80)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
