"""``tep events``: one execution's event history, as a timeline or as JSON."""

from __future__ import annotations

import argparse
import sys

import anyio
import msgspec

from eventstore.errors import EventDecodeError
from eventstore.jetstream.payloads import PayloadStore
from eventstore.records import RawRecord
from tep.cli.common import EXIT_OK, UsageError, add_nats_url, print_json
from tep.cli.event_lines import timeline
from tep.cli.executions import open_log, require_execution

__all__ = ["register"]

_EPILOG = """\
examples:
  tep events exe_018f2a9c3b1d4e5f6a7b
  tep events exe_018f2a9c3b1d4e5f6a7b --json | jq '.events[] | .event.type'

Columns: TIME (since the first event), SEQ (stream sequence), EVENT, ACTION, ATTEMPT and a
DETAIL such as the HTTP status, error code, retry delay or skip reason (and the size of an
output stored by reference; --json --resolve writes such values out). A record on the
execution's subjects that is no event of it (undecodable, or of another execution) is left out
and named on stderr ("tep: skipped record SEQ ...").
exit codes: 0 ok, 2 unknown execution, 3 NATS unreachable.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep events``."""
    parser = subparsers.add_parser(
        "events",
        help="print an execution's event history, in order",
        description="Read every event of one execution from the log (not from the projected "
        "view) and print it as a timeline, or with --json as one JSON document "
        '{"execution_id", "events": [{"sequence", "subject", "event"}]}.',
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("execution_id", metavar="ID", help="the execution id")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--resolve",
        action="store_true",
        help="with --json: write out values stored by reference instead of their "
        '{"$ref": {"digest", "size", "bucket"}}',
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``tep events``."""
    return anyio.run(_events, args)


async def _events(args: argparse.Namespace) -> int:
    skipped: list[str] = []

    def note(record: RawRecord, exc: EventDecodeError) -> None:
        skipped.append(f"tep: skipped record {record.sequence} ({record.subject}): {exc}")

    async with open_log(args) as log:
        await require_execution(log, args.execution_id)
        records = await log.read_execution(args.execution_id, on_skipped=note)
        events = [msgspec.to_builtins(r.event) for r in records] if args.json else []
        if args.resolve and events:
            events = await PayloadStore(log.nc, log.settings).resolve(events)
    for line in skipped:
        print(line, file=sys.stderr)
    if not records:
        raise UsageError(f"unknown execution {args.execution_id!r}")
    if args.json:
        print_json(
            {
                "execution_id": args.execution_id,
                "events": [
                    {"sequence": r.sequence, "subject": r.subject, "event": event}
                    for r, event in zip(records, events, strict=True)
                ],
            }
        )
    else:
        for line in timeline(records):
            print(line)
    return EXIT_OK
