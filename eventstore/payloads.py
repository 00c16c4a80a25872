"""Large payloads by reference (claim check): the reference, its marker, the limits. Pure.

A JSON value above the inline limit (an action's output, a plan's input, a waitpoint's resume
data) is not carried in its event: its JSON encoding is stored in the payload bucket (a
JetStream Object Store, see :mod:`eventstore.jetstream.payloads`) under its SHA-256 digest,
and the event carries a **marker** in the value's place::

    {"$ref": {"digest": "sha256:<64 hex digits>", "size": 5242880, "bucket": "tep-payloads"}}

A marker is an object with the single key ``"$ref"`` whose value is exactly a
:class:`PayloadRef` (JSON Schema's ``"$ref"`` is a string, so schemas never look like one).
The stored bytes are the value's JSON encoding; ``size`` is their length. Storing is
content-addressed: the same value always gets the same reference, so storing it again (a
retry after a crash, racing replicas) changes nothing.

The fold, the KV view and the log keep markers as they are; readers resolve them when they
need the value (:mod:`eventstore.payload_reading` for the orchestrator's templates and
conditions, the executor for a request holding one, ``StateManager.output``,
``get_execution_state(..., resolve=True)`` and ``tep status --json --resolve`` for people).

Writers of a value that may be large call :func:`claim_check` (pure) and store the payload it
returns before appending the event; ``eventstore.jetstream.payloads`` does both
(``PayloadStore.store``, ``store_large_output``, ``store_large_values``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from eventstore.errors import TepError

__all__ = [
    "DEFAULT_INLINE_BYTES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_PAYLOAD_BUCKET",
    "REF_KEY",
    "EncodedPayload",
    "PayloadCorruptError",
    "PayloadError",
    "PayloadLimits",
    "PayloadMissingError",
    "PayloadRef",
    "PayloadTooLargeError",
    "claim_check",
    "decode_payload",
    "digest_of",
    "encode_payload",
    "find_refs",
    "format_size",
    "is_payload_ref",
    "payload_ref",
    "replace_refs",
    "summarize_refs",
]

REF_KEY = "$ref"
"""The one key of a marker object."""
DEFAULT_PAYLOAD_BUCKET = "tep-payloads"
DEFAULT_INLINE_BYTES = 256 * 1024
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_BUCKET = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_encoder = msgspec.json.Encoder()


class PayloadError(TepError):
    """A payload cannot be stored or read."""


class PayloadTooLargeError(PayloadError):
    """A value is larger than the hard cap (``TEP_PAYLOAD_MAX_BYTES``)."""

    def __init__(self, size: int, limit: int, what: str = "the value") -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} is {size} bytes encoded; the limit is {limit} bytes "
            f"({format_size(limit)}, setting TEP_PAYLOAD_MAX_BYTES)"
        )


class PayloadMissingError(PayloadError):
    """The bucket does not hold the payload a reference names (expired or deleted)."""


class PayloadCorruptError(PayloadError):
    """The bytes read for a reference do not have its digest or size, or are not JSON."""


class PayloadRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a value stored by reference lives, and how to check what is read back.

    Attributes:
        digest: ``sha256:`` and the hex SHA-256 of the stored bytes.
        size: the stored bytes' length.
        bucket: the Object Store bucket holding them.
    """

    digest: str
    size: int
    bucket: str = DEFAULT_PAYLOAD_BUCKET

    @property
    def name(self) -> str:
        """The object's name in its bucket: ``sha256-<hex>``."""
        return self.digest.replace(":", "-", 1)

    def marker(self) -> dict[str, Any]:
        """The JSON value that stands for the payload inside events and states."""
        return {REF_KEY: {"digest": self.digest, "size": self.size, "bucket": self.bucket}}

    def summary(self) -> str:
        """A short human description, e.g. ``<stored by reference: 5.0 MiB, sha256:1a2b3c4d>``."""
        return f"<stored by reference: {format_size(self.size)}, {self.digest[:15]}>"


class PayloadLimits(msgspec.Struct, frozen=True, kw_only=True):
    """When values go to the payload bucket, and how large they may be.

    Attributes:
        inline_bytes: values whose JSON encoding is larger are stored by reference.
        max_bytes: values larger than this are refused (:class:`PayloadTooLargeError`).
        bucket: the payload bucket.
    """

    inline_bytes: int = DEFAULT_INLINE_BYTES
    max_bytes: int = DEFAULT_MAX_BYTES
    bucket: str = DEFAULT_PAYLOAD_BUCKET


class EncodedPayload(msgspec.Struct, frozen=True, kw_only=True):
    """A value's JSON encoding and the reference it is stored under."""

    ref: PayloadRef
    data: bytes


def format_size(size: int) -> str:
    """``512 B``, ``256 KiB``, ``5.0 MiB``: a byte count for people."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KiB" if size % 1024 == 0 else f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def digest_of(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def payload_ref(value: Any) -> PayloadRef | None:
    """The reference ``value`` stands for, if it is a marker; else ``None``.

    Example:
        >>> payload_ref({"$ref": {"digest": "sha256:" + "0" * 64, "size": 3}}).size
        3
        >>> payload_ref({"$ref": "#/definitions/x"}) is None
        True
    """
    if type(value) is not dict or len(value) != 1 or REF_KEY not in value:
        return None
    inner = value[REF_KEY]
    if type(inner) is not dict:
        return None
    try:
        ref = msgspec.convert(inner, PayloadRef)
    except msgspec.ValidationError:
        return None
    if not _DIGEST.match(ref.digest) or not _BUCKET.match(ref.bucket) or ref.size < 0:
        return None
    return ref


def is_payload_ref(value: Any) -> bool:
    """Whether ``value`` is a marker."""
    return payload_ref(value) is not None


def encode_payload(value: Any, bucket: str = DEFAULT_PAYLOAD_BUCKET) -> EncodedPayload:
    """``value``'s JSON encoding and its content-addressed reference.

    Raises:
        PayloadError: the value is not JSON-serialisable.
    """
    try:
        data = _encoder.encode(value)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise PayloadError(f"the value is not JSON: {exc}") from exc
    ref = PayloadRef(digest=digest_of(data), size=len(data), bucket=bucket)
    return EncodedPayload(ref=ref, data=data)


def decode_payload(ref: PayloadRef, data: bytes) -> Any:
    """The value stored under ``ref``, after checking the bytes' size and digest.

    Raises:
        PayloadCorruptError: wrong size or digest, or not JSON.
    """
    if len(data) != ref.size:
        raise PayloadCorruptError(
            f"payload {ref.digest} read back as {len(data)} bytes, expected {ref.size}"
        )
    if digest_of(data) != ref.digest:
        raise PayloadCorruptError(f"payload {ref.digest} read back with another digest")
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise PayloadCorruptError(f"payload {ref.digest} is not JSON: {exc}") from None


def claim_check(
    value: Any, limits: PayloadLimits, *, what: str = "the value"
) -> tuple[Any, EncodedPayload | None]:
    """The value to put in an event, and the payload to store first (if any).

    Up to ``limits.inline_bytes`` the value stays as it is (``(value, None)``); above, the
    event gets its marker and the payload must be stored before the event is appended.

    Raises:
        PayloadTooLargeError: above ``limits.max_bytes`` (the message names ``what``).
        PayloadError: the value is not JSON-serialisable.

    Example:
        >>> claim_check({"a": 1}, PayloadLimits())
        ({'a': 1}, None)
    """
    encoded = encode_payload(value, limits.bucket)
    size = encoded.ref.size
    if size > limits.max_bytes:
        raise PayloadTooLargeError(size, limits.max_bytes, what)
    if size <= limits.inline_bytes:
        return value, None
    return encoded.ref.marker(), encoded


def find_refs(value: Any) -> list[PayloadRef]:
    """Every distinct reference in a JSON value (markers at any depth), in document order.

    Values inside a marker are not looked into; the walk uses an explicit stack.
    """
    found: dict[str, PayloadRef] = {}
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            ref = payload_ref(node)
            if ref is not None:
                found.setdefault(ref.digest, ref)
            else:
                stack.extend(reversed(list(node.values())))
        elif type(node) is list:
            stack.extend(reversed(node))
    return list(found.values())


def _mapped(value: Any, replace: Callable[[PayloadRef, Any], Any]) -> Any:
    """``value`` with every marker replaced by ``replace(ref, marker)`` (a copy where
    anything changed, the very objects where nothing did)."""
    if type(value) is dict:
        ref = payload_ref(value)
        if ref is not None:
            return replace(ref, value)
        changed = {k: _mapped(v, replace) for k, v in value.items()}
        same = all(changed[k] is v for k, v in value.items())
        return value if same else changed
    if type(value) is list:
        items = [_mapped(item, replace) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def replace_refs(value: Any, values: Mapping[str, Any]) -> Any:
    """``value`` with each marker whose digest ``values`` holds replaced by that value.

    Markers of other digests stay; a replaced value is not looked into again.
    """
    return _mapped(value, lambda ref, marker: values.get(ref.digest, marker))


def summarize_refs(value: Any) -> Any:
    """``value`` with each marker replaced by :meth:`PayloadRef.summary` text (for people)."""
    return _mapped(value, lambda ref, _: ref.summary())
