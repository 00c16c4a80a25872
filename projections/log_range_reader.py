"""Reading a range of the log in a child process, for rebuilds that should use two cores.

Receiving a message costs nats-py about as much CPU as decoding and folding it. A rebuild
therefore reads the log in a child process (``python -m projections.log_range_reader``: its own
connection and ordered consumer) that streams the raw records to this process in packed frames
on its stdout, while this process decodes, folds and writes. The pipe is the backpressure: when
this side falls behind, the child's writes block and its consumer stalls.

Frames are msgpack (C on both ends: packing and unpacking cost a fraction of a microsecond per
record). The child keeps its own stdout for frames only: anything else that prints in it goes to
stderr, so nothing can slip into the stream between two frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import struct
import sys
from collections.abc import AsyncGenerator, Iterator
from typing import BinaryIO

import msgspec

from eventstore.access import Role
from eventstore.config import TepSettings
from eventstore.errors import TepError
from eventstore.jetstream.connection import connect_as
from eventstore.jetstream.log import EventLog
from eventstore.records import RawRecord

__all__ = ["few_collections", "pack_records", "read_in_child", "unpack_records"]

_FRAME = struct.Struct("<I")  # length of the frame that follows
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[RawRecord])
_YOUNG_THRESHOLD = 100_000


def pack_records(records: list[RawRecord]) -> bytes:
    """One frame: the records, length-prefixed."""
    body = _encoder.encode(records)
    return _FRAME.pack(len(body)) + body


def unpack_records(body: bytes) -> list[RawRecord]:
    """The records of one frame's body.

    Raises:
        TepError: the body is no frame of records.
    """
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise TepError(f"the log reader process sent a broken frame: {exc}") from None


@contextlib.contextmanager
def few_collections() -> Iterator[None]:
    """Run the cyclic garbage collector rarely while a long read or rebuild allocates.

    Every record allocates a few objects that live until its batch is done, so the default
    thresholds start a collection every few hundred records, each scanning what is in memory;
    the objects made before (modules, connection) are set aside from collections meanwhile.
    Restored on exit.
    """
    thresholds = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    gc.set_threshold(_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if not frozen_before:  # a process that froze its start-up objects keeps them frozen
            gc.unfreeze()


async def _send_range(
    settings: TepSettings, start: int, end: int, max_batch: int, out: BinaryIO
) -> None:
    loop = asyncio.get_running_loop()
    nc = await connect_as(settings, Role.ADMIN, name="tep-rebuild-reader")

    def write(frame: bytes) -> None:
        out.write(frame)
        out.flush()

    try:
        log = EventLog(nc, settings)
        held: list[RawRecord] = []
        writing: asyncio.Future[None] | None = None
        async for batch in log.replay_batches(
            start, to_sequence=end, buffer=4 * max_batch, max_batch=max_batch
        ):
            held += batch
            # One frame in flight; records that arrive meanwhile go out together (bigger
            # frames when the parent is the slower side, so it commits less often).
            if writing is not None and not writing.done() and len(held) < max_batch:
                continue
            if writing is not None:
                await writing
            writing = loop.run_in_executor(None, write, pack_records(held))
            held = []
        if writing is not None:
            await writing
        if held:
            write(pack_records(held))
        write(_FRAME.pack(0))  # the end
    finally:
        await nc.close()


async def read_in_child(
    settings: TepSettings, start: int, end: int, *, max_batch: int
) -> AsyncGenerator[list[RawRecord], None]:
    """The records of sequences ``start..end`` in order, read by a child process.

    Raises:
        TepError: the child failed (its last error line is in the message).
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "projections.log_range_reader",
        settings.model_dump_json(),
        str(start),
        str(end),
        str(max_batch),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=1 << 24,
    )
    assert child.stdout is not None and child.stderr is not None
    try:
        while True:
            try:
                (length,) = _FRAME.unpack(await child.stdout.readexactly(_FRAME.size))
                if length == 0:
                    return
                body = await child.stdout.readexactly(length)
            except asyncio.IncompleteReadError:
                await child.wait()
                error = (await child.stderr.read()).decode(errors="replace").strip()
                last = error.splitlines()[-1] if error else f"exit code {child.returncode}"
                raise TepError(f"the log reader process failed: {last}") from None
            yield unpack_records(body)
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
        await child.wait()


def main(argv: list[str]) -> None:
    """Child entry point: ``SETTINGS-JSON START END MAX_BATCH``; frames go to stdout."""
    settings = TepSettings.model_validate_json(argv[0])
    start, end, max_batch = (int(value) for value in argv[1:4])
    frames = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with few_collections():
        asyncio.run(_send_range(settings, start, end, max_batch, frames))


if __name__ == "__main__":
    main(sys.argv[1:])
