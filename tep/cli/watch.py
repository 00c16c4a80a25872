"""``tep watch``: live per-action progress of one execution until it ends."""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import UTC, datetime
from typing import TextIO

import anyio

from eventstore.fold import apply
from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState
from projections.execution_watch import ended_for_good
from tep.cli.common import EXIT_TIMEOUT, UsageError, add_nats_url, single_errors
from tep.cli.event_lines import snapshot, transitions
from tep.cli.execution_views import live_view, summary
from tep.cli.executions import follow, open_log, require_execution
from tep.cli.submit import exit_code_for

__all__ = ["LiveScreen", "PlainLines", "register"]

_EPILOG = """\
examples:
  tep watch exe_018f2a9c3b1d4e5f6a7b
  tep watch "$(tep submit examples/fan-out-fan-in.json)"
  tep watch exe_018f2a9c3b1d4e5f6a7b --plain | tee run.log

On a terminal the view is redrawn in place (status, attempts, duration per action and an overall
progress bar); otherwise (or with --plain) one line is printed per change. A waiting action
shows what it waits for and until when (a waitpoint: how to `tep resume` it; a sleep: when it
wakes); each resume request is shown accepted or refused (and why). A summary ends the output.
exit codes: 0 completed, 1 failed or cancelled, 2 unknown execution, 3 NATS unreachable,
124 --timeout ran out.
"""

_REFRESH_S = 0.2
_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep watch``."""
    parser = subparsers.add_parser(
        "watch",
        help="show live progress of an execution until it ends",
        description="Follow one execution's events in the log (no projector needed) and show "
        "each action's status, attempt and duration with an overall progress bar, until the "
        "execution completes, fails or is cancelled. An execution that already ended is shown "
        "as it ended.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("execution_id", metavar="ID", help="the execution id")
    parser.add_argument(
        "--plain", action="store_true", help="print one line per change even on a terminal"
    )
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="stop watching after S seconds (exit 124)"
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


class PlainLines:
    """One line per change: for logs, pipes and CI."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._status = "pending"

    def on_event(
        self, before: dict[str, tuple[str, int]], state: ExecutionState, record: RecordedEvent
    ) -> None:
        """Print what ``record`` changed."""
        for line in transitions(before, state, record, self._status):
            self.out.write(line + "\n")
        self._status = state.status
        self.out.flush()

    def tick(self, state: ExecutionState | None) -> None:
        """Nothing to redraw in plain mode."""

    def close(self) -> None:
        """Nothing to restore in plain mode."""


class LiveScreen:
    """The view redrawn in place with ANSI escapes, sized to the terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._drawn = 0
        self.out.write(_HIDE_CURSOR)

    def on_event(
        self, before: dict[str, tuple[str, int]], state: ExecutionState, record: RecordedEvent
    ) -> None:
        """Events only mark the view dirty; :meth:`tick` redraws."""

    def tick(self, state: ExecutionState | None) -> None:
        """Redraw the whole view over the previous one."""
        if state is None:
            return
        size = shutil.get_terminal_size()
        lines = live_view(state, datetime.now(UTC), width=size.columns, height=size.lines)
        buffer = []
        if self._drawn:
            buffer.append(f"\x1b[{self._drawn}F")
        buffer.append("\x1b[J")
        buffer.append("\n".join(lines) + "\n")
        self.out.write("".join(buffer))
        self.out.flush()
        self._drawn = len(lines)

    def close(self) -> None:
        """Show the cursor again."""
        self.out.write(_SHOW_CURSOR)
        self.out.flush()


def run(args: argparse.Namespace) -> int:
    """Handle ``tep watch``."""
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    tty = sys.stdout.isatty() and not args.plain
    view: PlainLines | LiveScreen = LiveScreen(sys.stdout) if tty else PlainLines(sys.stdout)
    try:
        state, finished = anyio.run(_watch, args, view)
    finally:
        view.close()
    if state is not None:
        for line in ["", *summary(state)] if tty else summary(state):
            print(line)
    if not finished:
        sys.stderr.write(f"tep: stopped watching after {args.timeout:g}s; the execution goes on\n")
        return EXIT_TIMEOUT
    return exit_code_for(state, finished)


async def _watch(
    args: argparse.Namespace, view: PlainLines | LiveScreen
) -> tuple[ExecutionState | None, bool]:
    state: ExecutionState | None = None

    async def consume() -> None:
        nonlocal state
        async for record in follow(log, args.execution_id):
            before = snapshot(state)
            state = apply(state, record)
            if state is None:
                continue
            view.on_event(before, state, record)
            if await ended_for_good(log, state):  # not an end a retry re-opened since
                return

    async def redraw() -> None:
        while True:
            view.tick(state)
            await anyio.sleep(_REFRESH_S)

    finished = False
    async with open_log(args) as log:
        await require_execution(log, args.execution_id)
        with anyio.move_on_after(args.timeout), single_errors():
            async with anyio.create_task_group() as group:
                group.start_soon(redraw)
                await consume()
                finished = True
                group.cancel_scope.cancel()
        view.tick(state)
    return state, finished
