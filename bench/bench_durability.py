"""Append throughput with JetStream's fsync on every write (``sync_interval: always``) vs default.

    .venv/bin/python bench/bench_durability.py [--sequential 2000] [--pipelined 20000]

By default nats-server flushes its file store to disk every 2 minutes (and on clean shutdown):
an acknowledged append can be lost if the machine loses power in between (Jepsen, 2025).
``sync_interval: always`` makes the server fsync before it acknowledges. This prints appends/s
through :class:`~eventstore.jetstream.log.EventLog` (awaited one by one, and pipelined) with
each setting, and raw nats-py ``js.publish`` awaited one by one as the baseline of each run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from eventstore.config import TepSettings
from eventstore.events import ActionCompleted
from eventstore.jetstream.connection import connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from tep.server import EmbeddedServer, find_free_port


def _config(directory: Path, port: int, sync: str | None) -> Path:
    lines = [f"listen: 127.0.0.1:{port}", "jetstream {", f'  store_dir: "{directory}"']
    if sync is not None:
        lines.append(f"  sync_interval: {sync}")
    lines.append("}")
    path = directory / "nats.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def _events(count: int, tag: str) -> list[ActionCompleted]:
    return [
        ActionCompleted(
            execution_id=f"{tag}-{n // 20}", action_id=f"a{n % 20}", attempt=1, output={"n": n}
        )
        for n in range(count)
    ]


async def _measure(sync: str | None, sequential: int, pipelined: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tep-durability-") as tmp:
        port = find_free_port()
        server = EmbeddedServer(port=port, config_file=_config(Path(tmp), port, sync))
        server.start()
        try:
            settings = TepSettings(nats_url=server.url)
            nc = await connect(settings.nats_url, name="bench-durability")
            try:
                await ensure_log(nc.jetstream(), settings)
                log = EventLog(nc, settings)
                js = nc.jetstream()
                rates: dict[str, float] = {}

                started = time.perf_counter()
                for n in range(sequential):
                    await js.publish(f"action.completed.raw-{n // 20}.a{n % 20}", b"{}")
                rates["raw nats-py, awaited"] = sequential / (time.perf_counter() - started)

                events = _events(sequential, "seq")
                started = time.perf_counter()
                for event in events:
                    await log.append(event)
                rates["EventLog.append, awaited"] = sequential / (time.perf_counter() - started)

                events = _events(pipelined, "pipe")
                started = time.perf_counter()
                await log.append_many(events)
                rates["EventLog.append_many"] = pipelined / (time.perf_counter() - started)
                return rates
            finally:
                await nc.close()
        finally:
            server.stop()


async def main(args: argparse.Namespace) -> None:
    default = await _measure(None, args.sequential, args.pipelined)
    always = await _measure("always", args.sequential, args.pipelined)
    print(f"{'appends/s':<30}{'default (2m)':>14}{'always':>12}{'always/default':>16}")
    for name, rate in default.items():
        print(f"{name:<30}{rate:>14,.0f}{always[name]:>12,.0f}{always[name] / rate:>15.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sequential", type=int, default=2_000)
    parser.add_argument("--pipelined", type=int, default=20_000)
    asyncio.run(main(parser.parse_args()))
