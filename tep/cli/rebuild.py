"""``tep rebuild``: replay the whole log into a fresh view and switch readers to it."""

from __future__ import annotations

import argparse
import sys
import time

import anyio
import msgspec

from eventstore.access import Role
from eventstore.jetstream.connection import connect_as
from projections.view_rebuild import DEFAULT_REBUILD_BATCH, RebuildProgress, RebuildReport, rebuild
from tep.cli.common import EXIT_OK, add_nats_url, print_json, settings_from
from tep.cli.text_format import format_duration
from tep.logging_setup import configure_logging

__all__ = ["register"]

_EPILOG = """\
examples:
  tep rebuild
  tep rebuild --keep-old --json | jq .events_per_second

The new view (KV bucket tep_view_<n+1>) is filled from sequence 1 while the current one keeps
serving; readers and projectors switch to it in one step once it has caught up. Interrupted
(Ctrl-C), it resumes where it stopped when run again. Progress goes to stderr.
exit codes: 0 rebuilt and switched, 1 another rebuild switched first, 3 NATS unreachable.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep rebuild``."""
    parser = subparsers.add_parser(
        "rebuild",
        help="replay the whole log into a fresh view and switch to it; prints events/s",
        description="Rebuild the current-state view from the event log: fold every event "
        "into a new bucket, then atomically switch readers and projectors to it.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--keep-old", action="store_true", help="keep the previous view bucket after the switch"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_REBUILD_BATCH,
        metavar="N",
        help="events folded between writes (default %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``tep rebuild``."""
    configure_logging("rebuild", level="WARNING")
    report = anyio.run(_rebuild, args)
    if args.json:
        print_json(msgspec.to_builtins(report))
    else:
        print(_summary(report))
    return EXIT_OK


class _Progress:
    """Prints a progress line to stderr once a second; the summary line has the last word.

    Every line and the summary measure the same thing, events folded since the rebuild began
    over the time since then, so the figures agree (a rebuild under a second prints none).
    """

    def __init__(self) -> None:
        self.last = time.monotonic()

    def __call__(self, progress: RebuildProgress) -> None:
        now = time.monotonic()
        if now - self.last < 1.0:
            return
        self.last = now
        share = progress.sequence / progress.end if progress.end else 1.0
        sys.stderr.write(
            f"rebuild {progress.bucket}: sequence {progress.sequence:,}/{progress.end:,} "
            f"({share:.0%}), {progress.events:,} events in {format_duration(progress.seconds)} "
            f"({progress.events_per_second:,.0f} events/s so far)\n"
        )
        sys.stderr.flush()


async def _rebuild(args: argparse.Namespace) -> RebuildReport:
    settings = settings_from(args)
    nc = await connect_as(settings, Role.ADMIN, name="tep-rebuild")
    try:
        return await rebuild(
            nc,
            settings,
            keep_old=args.keep_old,
            batch_size=args.batch,
            progress=None if args.quiet else _Progress(),
        )
    finally:
        await nc.close()


def _summary(report: RebuildReport) -> str:
    resumed = f", resumed after sequence {report.resumed_from:,}" if report.resumed_from else ""
    previous = (
        f"; generation {report.previous_generation} "
        + ("deleted" if report.previous_deleted else "kept")
        if report.previous_generation is not None
        else ""
    )
    took = format_duration(report.seconds)
    return (
        f"rebuilt {report.bucket}: {report.events:,} events, {report.executions:,} executions "
        f"in {took} ({report.events_per_second:,.0f} events/s{resumed}); "
        f"readers switched{previous}"
    )
