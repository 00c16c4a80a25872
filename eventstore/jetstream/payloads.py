"""The payload bucket: values too large for their event, in a JetStream Object Store.

The bucket is an ordinary Object Store (stream ``OBJ_<bucket>``, readable with ``nats object``),
created by provisioning with the log's retention (``TEP_MAX_AGE_S``). Objects are named after
their digest (``sha256-<hex>``, see :class:`~eventstore.payloads.PayloadRef`), so storing a
value again finds it there and stores nothing: a retry after a crash, or two replicas storing
the same output, cost one metadata read. Each copy's chunks go to a subject of their own; a
put that dies half way leaves chunks no metadata points to, and retention removes them.

Reading checks the size and the digest of what comes back; an object that is not there (expired
with the log, or deleted) raises :class:`~eventstore.payloads.PayloadMissingError`.

Example:
    >>> store = PayloadStore(nc, settings)  # doctest: +SKIP
    >>> value = await store.store({"rows": rows})  # doctest: +SKIP  (the value, or its marker)
    >>> await store.resolve(value) == {"rows": rows}  # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from eventstore import headers as h
from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ActionExecuteRequested, EventBase, PlanSubmitted
from eventstore.jetstream.consumer_read import read_matching
from eventstore.jetstream.provision import ensure_stream
from eventstore.payload_reading import PayloadNeeded, PayloadReader, reading_payloads
from eventstore.payloads import (
    EncodedPayload,
    PayloadError,
    PayloadLimits,
    PayloadMissingError,
    PayloadRef,
    claim_check,
    decode_payload,
    find_refs,
    replace_refs,
)
from eventstore.subjects import (
    payload_chunk_subject,
    payload_meta_subject,
    payload_stream,
    payload_subjects,
)

__all__ = [
    "CHUNK_BYTES",
    "PayloadStore",
    "ensure_payload_store",
    "payload_stream_config",
    "run_with_payloads",
    "store_large_output",
    "store_large_values",
]

CHUNK_BYTES = 128 * 1024
"""The size of one stored chunk (the Object Store default)."""
_API_TIMEOUT_S = 10.0
_READ_BYTES_PER_S = 8 * 1024 * 1024
"""The slowest reading speed allowed for before a read of a large payload times out."""
_MAX_ROUNDS = 32
_log = logging.getLogger("tep.payloads")

T = TypeVar("T")
E = TypeVar("E", bound=EventBase)


def payload_stream_config(settings: TepSettings) -> StreamConfig:
    """The payload bucket's stream, as NATS clients create an Object Store, with the log's
    retention and replicas."""
    bucket = settings.payload_bucket
    return StreamConfig(
        name=payload_stream(bucket),
        description=f"tep payloads: values stored by reference (object store {bucket})",
        subjects=payload_subjects(bucket),
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        max_age=settings.max_age_s,
        discard=DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        allow_direct=True,
    )


async def ensure_payload_store(js: JetStreamContext, settings: TepSettings) -> str:
    """Create the payload bucket if absent, check it if present; its stream's name.

    Raises:
        ConfigConflictError: it exists with other settings (each named).
    """
    config = payload_stream_config(settings)
    await ensure_stream(js, config)
    assert config.name is not None
    return config.name


class PayloadStore:
    """Stores and reads values by reference in the payload bucket.

    Args:
        nc: a NATS connection.
        settings: the bucket and the limits (``TepSettings.payload_limits``).
        limits: other limits than the settings' (an executor's lower cap).
    """

    def __init__(
        self, nc: NatsClient, settings: TepSettings, *, limits: PayloadLimits | None = None
    ) -> None:
        self.nc = nc
        self.settings = settings
        self.limits: PayloadLimits = limits or settings.payload_limits
        self.js: JetStreamContext = nc.jetstream(timeout=_API_TIMEOUT_S)
        self._ready: set[str] = set()

    # ---------------------------------------------------------------- write

    async def store(self, value: Any, *, what: str = "the value") -> Any:
        """``value`` itself when it is small enough to travel inline, else its marker, once
        the value is stored.

        Raises:
            PayloadTooLargeError: above the hard cap (the message names ``what``).
        """
        kept, payload = claim_check(value, self.limits, what=what)
        if payload is not None:
            await self.put(payload)
        return kept

    async def put(self, payload: EncodedPayload) -> PayloadRef:
        """Store an encoded value under its reference (nothing new if it is there already)."""
        ref = payload.ref
        stream = await self._writable(ref.bucket)
        meta_subject = payload_meta_subject(ref.bucket, ref.name)
        existing = await self._meta(stream, meta_subject)
        if existing is not None and _matches(existing, ref):
            return ref
        nuid = uuid.uuid4().hex
        chunk_subject = payload_chunk_subject(ref.bucket, nuid)
        data = memoryview(payload.data)
        chunks = 0
        for start in range(0, len(data), CHUNK_BYTES):
            await self.js.publish(chunk_subject, bytes(data[start : start + CHUNK_BYTES]))
            chunks += 1
        info = {
            "name": ref.name,
            "bucket": ref.bucket,
            "nuid": nuid,
            "size": ref.size,
            "chunks": chunks,
            "mtime": datetime.now(UTC).isoformat(),
            "digest": "SHA-256=" + base64.urlsafe_b64encode(_digest_bytes(ref)).decode(),
            "options": {"max_chunk_size": CHUNK_BYTES},
        }
        await self.js.publish(meta_subject, json.dumps(info).encode(), headers={h.ROLLUP: "sub"})
        _log.debug("payload stored", extra={"digest": ref.digest, "size": ref.size})
        return ref

    async def _writable(self, bucket: str) -> str:
        """The bucket's stream, created the first time if it is missing (where allowed)."""
        stream = payload_stream(bucket)
        if stream not in self._ready:
            if bucket == self.settings.payload_bucket:
                try:
                    await ensure_payload_store(self.js, self.settings)
                except TimeoutError:
                    # Unanswered, as a refused create is: say what would fix it, and let the
                    # caller retry as after any timeout.
                    _log.warning(
                        "the payload bucket %s is missing, or not answering: `tep provision` "
                        "(with the admin identity) creates it",
                        stream,
                    )
                    raise
            self._ready.add(stream)
        return stream

    # ----------------------------------------------------------------- read

    async def get(self, ref: PayloadRef) -> Any:
        """The value stored under ``ref``.

        Raises:
            PayloadMissingError: the bucket does not hold it (expired or deleted).
            PayloadCorruptError: what was read has another size or digest, or is not JSON.
        """
        return decode_payload(ref, await self.get_bytes(ref))

    async def get_bytes(self, ref: PayloadRef) -> bytes:
        """The stored bytes of ``ref`` (checked by :meth:`get`, not here)."""
        stream = payload_stream(ref.bucket)
        meta = await self._meta(stream, payload_meta_subject(ref.bucket, ref.name))
        if meta is None or not _matches(meta, ref):
            raise PayloadMissingError(
                f"payload {ref.digest} ({ref.size} bytes) is not in bucket {ref.bucket}: it "
                "expired with the log (TEP_MAX_AGE_S) or was deleted"
            )
        if ref.size == 0:
            return b""
        chunks = await read_matching(
            self.nc,
            self.js,
            stream,
            [payload_chunk_subject(ref.bucket, str(meta["nuid"]))],
            lambda msg: msg.data,
            timeout=_API_TIMEOUT_S + ref.size / _READ_BYTES_PER_S,
        )
        return b"".join(chunks)

    async def resolve(self, value: Any) -> Any:
        """``value`` with every marker in it (also in stored values) replaced by its value.

        Raises:
            PayloadMissingError, PayloadCorruptError: a payload cannot be read.
        """
        values: dict[str, Any] = {}
        pending = find_refs(value)
        while pending:
            fetched = [await self.get(ref) for ref in pending]
            values.update((ref.digest, v) for ref, v in zip(pending, fetched, strict=True))
            pending = [ref for ref in find_refs(fetched) if ref.digest not in values]
        result = value
        while values and any(ref.digest in values for ref in find_refs(result)):
            result = replace_refs(result, values)
        return result

    async def _meta(self, stream: str, subject: str) -> dict[str, Any] | None:
        """The object's metadata, or ``None`` if there is none (or it was deleted)."""
        try:
            msg = await self.js.get_last_msg(stream, subject, direct=True)
        except NotFoundError:
            return None
        except NoRespondersError:
            # No stream answers direct gets for this bucket: is there a bucket at all?
            try:
                await self.js.stream_info(stream)
            except NotFoundError:
                return None
            raise
        try:
            info = json.loads(msg.data or b"")
        except ValueError:
            return None
        if not isinstance(info, dict) or info.get("deleted") or not info.get("nuid"):
            return None
        return info


def _digest_bytes(ref: PayloadRef) -> bytes:
    return bytes.fromhex(ref.digest.removeprefix("sha256:"))


def _matches(meta: dict[str, Any], ref: PayloadRef) -> bool:
    """Whether stored metadata describes ``ref``'s bytes."""
    digest = str(meta.get("digest", ""))
    try:
        stored = base64.urlsafe_b64decode(digest.split("=", 1)[-1] + "==")
    except (ValueError, binascii.Error):
        return False
    return meta.get("size") == ref.size and stored == _digest_bytes(ref)


async def store_large_output(store: PayloadStore, event: E) -> E:
    """``event`` as it goes to the log: an ``action.completed`` whose output is above the
    inline limit carries its marker, once the output is stored; any other event as it is.

    Raises:
        PayloadTooLargeError: the output is above the hard cap.
    """
    if not isinstance(event, ActionCompleted):
        return event
    output = await store.store(event.output, what=f"the output of {event.action_id}")
    if output is event.output:
        return event
    return msgspec.structs.replace(event, output=output)


async def store_large_values(store: PayloadStore, event: E) -> E:
    """``event`` as the orchestrator appends it: every value above the inline limit that it
    carries stored first and replaced by its reference. That is an ``action.completed``'s
    output (:func:`store_large_output`), a dispatched request's JSON body and input (unless
    they hold templates the executor resolves, which a stored value must not), and a child
    plan's input.

    Raises:
        PayloadTooLargeError: an output above the hard cap.
    """
    if isinstance(event, ActionCompleted):
        return await store_large_output(store, event)
    if isinstance(event, ActionExecuteRequested):
        spec = event.request
        body = None if spec is None else await _stored_unless_templated(store, spec.json)
        given = await _stored_unless_templated(store, event.input)
        if (spec is None or body is spec.json) and given is event.input:
            return event
        if spec is not None:
            spec = msgspec.structs.replace(spec, json=body)
        return msgspec.structs.replace(event, request=spec, input=given)
    if isinstance(event, PlanSubmitted) and event.plan.input:
        kept = await _stored_unless_templated(store, event.plan.input)
        if kept is not event.plan.input:
            plan = msgspec.structs.replace(event.plan, input=kept)
            return msgspec.structs.replace(event, plan=plan)
    return event


async def _stored_unless_templated(store: PayloadStore, value: Any) -> Any:
    """``value``, or its reference when it is above the inline limit, holds no ``{{`` and is
    below the hard cap (a larger one stays, and its event is refused as too large)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        kept, payload = claim_check(value, store.limits)
    except PayloadError:
        return value
    if payload is None or b"{{" in payload.data:
        return value
    await store.put(payload)
    return kept


async def run_with_payloads(
    store: PayloadStore,
    reader: PayloadReader,
    run: Callable[[], T],
    *,
    max_rounds: int = _MAX_ROUNDS,
) -> T:
    """``run()`` with ``reader`` current, fetching what it says it needs until it succeeds.

    A payload that cannot be read is noted in ``reader`` as unavailable, and ``run`` sees
    :class:`~eventstore.payload_reading.PayloadUnavailableError` for it.

    Raises:
        PayloadError: ``run`` still needed payloads after ``max_rounds`` fetches.
    """
    for _ in range(max_rounds):
        with reading_payloads(reader):
            try:
                return run()
            except PayloadNeeded as needed:
                refs = needed.refs
        for ref in refs:
            try:
                reader.add(ref, await store.get(ref))
            except PayloadError as exc:
                _log.warning("payload unavailable: %s", exc, extra={"digest": ref.digest})
                reader.fail(ref, str(exc))
    raise PayloadError(f"still needing payloads after {max_rounds} rounds of fetching")
