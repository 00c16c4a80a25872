"""Where the view lives: versioned view buckets and the pointer that names the live one.

``tep_meta`` (key ``view.current``) holds a :class:`ViewPointer`; readers and projectors
resolve it to a bucket ``tep_view_<generation>``. A rebuild fills the next generation and
switches the pointer with a compare-and-set, so readers move from one complete view to another.
"""

from __future__ import annotations

import contextlib

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from eventstore.config import TepSettings
from eventstore.errors import TepError
from eventstore.events import utc_now
from eventstore.jetstream.kv_protocol import kv_stream
from eventstore.jetstream.provision import META_BUCKET, ensure_kv

__all__ = [
    "META_BUCKET",
    "POINTER_KEY",
    "PointerConflictError",
    "ViewPointer",
    "bucket_name",
    "delete_view_bucket",
    "ensure_current_view",
    "ensure_meta_bucket",
    "ensure_view_bucket",
    "read_pointer",
    "switch_pointer",
    "view_bucket_exists",
]

POINTER_KEY = "view.current"
_VIEW_PREFIX = "tep_view_"


class ViewPointer(msgspec.Struct, frozen=True, kw_only=True):
    """The live view: its generation (bucket ``tep_view_<generation>``) and when it went live.

    ``revision`` is the pointer key's KV revision when it was read (0 if never stored).
    """

    generation: int
    switched_at: str | None = None
    revision: int = 0

    @property
    def bucket(self) -> str:
        """The view bucket's name."""
        return bucket_name(self.generation)


class _StoredPointer(msgspec.Struct, frozen=True, kw_only=True):
    generation: int
    switched_at: str | None = None


_pointer_decoder = msgspec.json.Decoder(_StoredPointer)
_encoder = msgspec.json.Encoder()


class PointerConflictError(TepError):
    """The pointer moved while we were about to switch it (another rebuild switched first)."""


def bucket_name(generation: int) -> str:
    """The bucket of view generation ``generation``."""
    return f"{_VIEW_PREFIX}{generation}"


async def ensure_meta_bucket(js: JetStreamContext, settings: TepSettings) -> KeyValue:
    """The small bucket holding the pointer."""
    return await ensure_kv(js, META_BUCKET, replicas=settings.replicas)


async def ensure_view_bucket(
    js: JetStreamContext, settings: TepSettings, generation: int
) -> KeyValue:
    """Create or open a view bucket, enabling atomic batches and per-message TTLs on it.

    Atomic batches let the projector write states, index entries, counters and checkpoint
    all-or-nothing; TTLs let index tombstones expire instead of piling up.
    """
    name = bucket_name(generation)
    kv = await ensure_kv(js, name, replicas=settings.replicas)
    info = await js.stream_info(kv_stream(name))
    config = info.config
    if not (config.allow_atomic and config.allow_msg_ttl):
        config.allow_atomic = True
        config.allow_msg_ttl = True
        await js.update_stream(config)
    return kv


async def view_bucket_exists(js: JetStreamContext, generation: int) -> bool:
    """Whether the bucket of ``generation`` exists."""
    try:
        await js.stream_info(kv_stream(bucket_name(generation)))
    except NotFoundError:
        return False
    return True


async def delete_view_bucket(js: JetStreamContext, generation: int) -> bool:
    """Delete a view bucket; ``False`` if it did not exist."""
    try:
        return bool(await js.delete_key_value(bucket_name(generation)))
    except NotFoundError:
        return False


async def read_pointer(meta: KeyValue) -> ViewPointer | None:
    """The current pointer, or ``None`` before any view was created."""
    try:
        entry = await meta.get(POINTER_KEY)
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    stored = _pointer_decoder.decode(entry.value)
    return ViewPointer(
        generation=stored.generation,
        switched_at=stored.switched_at,
        revision=entry.revision or 0,
    )


async def ensure_current_view(
    js: JetStreamContext, settings: TepSettings
) -> tuple[KeyValue, ViewPointer, KeyValue]:
    """The meta bucket, the live pointer and its view bucket, creating generation 1 if none.

    Safe to race: the pointer is created with a compare-and-set, losers read the winner's. A
    pointer whose bucket has gone (deleted by hand) gets an empty bucket again, which the
    projector then fills from the start of the log.
    """
    meta = await ensure_meta_bucket(js, settings)
    while True:
        pointer = await read_pointer(meta)
        if pointer is None:
            await ensure_view_bucket(js, settings, 1)
            stored = _StoredPointer(generation=1, switched_at=utc_now())
            with contextlib.suppress(KeyWrongLastSequenceError):  # someone else created it
                await meta.create(POINTER_KEY, _encoder.encode(stored))
            continue
        if await view_bucket_exists(js, pointer.generation):
            return meta, pointer, await ensure_view_bucket(js, settings, pointer.generation)
        # Gone: a rebuild may just have switched away from it and deleted it.
        again = await read_pointer(meta)
        if again is not None and again.generation == pointer.generation:
            return meta, pointer, await ensure_view_bucket(js, settings, pointer.generation)


async def switch_pointer(
    meta: KeyValue, current: ViewPointer | None, generation: int
) -> ViewPointer:
    """Point readers at ``generation`` if the pointer is still ``current`` (``None``: absent).

    Raises:
        PointerConflictError: the pointer changed since ``current`` was read.
    """
    stored = _StoredPointer(generation=generation, switched_at=utc_now())
    last = current.revision if current is not None else 0
    try:
        revision = await meta.update(POINTER_KEY, _encoder.encode(stored), last=last)
    except KeyWrongLastSequenceError as exc:
        raise PointerConflictError(
            f"the view pointer moved while switching to generation {generation}"
        ) from exc
    return ViewPointer(generation=generation, switched_at=stored.switched_at, revision=revision)
