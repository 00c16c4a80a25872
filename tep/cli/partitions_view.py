"""``tep status --partitions``: which orchestrator process holds each partition, and how far
behind each partition's consumer is."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import anyio
from nats.js.errors import NotFoundError

from eventstore.jetstream.partition_status import partition_backlogs
from eventstore.jetstream.provision import partition_count
from orchestrator.config import OrchestratorConfig
from orchestrator.partition_leases import LeaseRecord, read_leases
from tep.cli.common import EXIT_OK, UsageError, print_json, settings_from
from tep.cli.executions import open_log
from tep.cli.text_format import format_table

__all__ = ["partition_rows", "run_partitions"]


def run_partitions(args: argparse.Namespace) -> int:
    """Print the partitions table (or ``--json``)."""
    rows = anyio.run(partition_rows, args)
    if rows is None:
        raise UsageError("no orchestrator partitions yet: the log is not provisioned")
    if args.json:
        print_json({"partitions": rows})
        return EXIT_OK
    for line in partition_lines(rows):
        print(line)
    return EXIT_OK


async def partition_rows(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """One row per partition: holder, when its lease was renewed, backlog; ``None`` before
    the deployment was provisioned."""
    settings = settings_from(args)
    config = OrchestratorConfig.from_env()
    async with open_log(args) as log:
        count = await partition_count(log.js)
        if count is None:
            return None
        try:
            kv = await log.js.key_value(config.lease_bucket)
            leases = await read_leases(kv, count)
        except NotFoundError:  # no orchestrator ever ran here
            leases = {partition: LeaseRecord(holder=None) for partition in range(count)}
        backlogs = await partition_backlogs(log.js, settings, prefix=config.consumer)
    return [
        {
            "partition": partition,
            "holder": leases[partition].holder,
            "renewed_at": leases[partition].renewed_at,
            "pending": backlogs[partition].pending,
            "unsettled": backlogs[partition].ack_pending,
            "node": backlogs[partition].node,
        }
        for partition in range(count)
    ]


def partition_lines(rows: list[dict[str, Any]], now: datetime | None = None) -> list[str]:
    """The table, then one line naming each holder and how many partitions it serves (NODE:
    the server leading the partition's consumer, on a cluster)."""
    now = now or datetime.now(UTC)
    table = format_table(
        ["PARTITION", "HOLDER", "RENEWED", "PENDING", "UNSETTLED", "NODE"],
        (
            [
                str(row["partition"]),
                row["holder"] or "-",
                _ago(row["renewed_at"], now) if row["holder"] else "-",
                str(row["pending"]),
                str(row["unsettled"]),
                row["node"] or "-",
            ]
            for row in rows
        ),
    )
    held = Counter(row["holder"] for row in rows if row["holder"])
    free = sum(1 for row in rows if not row["holder"])
    summary = ", ".join(f"{holder} ({n})" for holder, n in sorted(held.items()))
    tail = f"; {free} without a holder" if free else ""
    return [
        *table,
        f"{len(rows)} partitions, {len(held)} orchestrator(s): {summary or '-'}{tail}",
    ]


def _ago(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    try:
        seconds = (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return "-"
    return f"{max(seconds, 0.0):.1f}s ago"
