"""How a KV bucket lies on JetStream: its stream, its key subjects, its delete markers.

nats-py's ``KeyValue`` hides these; the atomic batch writer, the key scan and the view
bookkeeping publish and read the bucket's stream directly, and spell them here once.
"""

from __future__ import annotations

from collections.abc import Mapping

from eventstore import headers as h

__all__ = [
    "KV_DELETE",
    "KV_PURGE",
    "is_deleted",
    "kv_stream",
    "kv_subject",
    "kv_subject_prefix",
]

KV_DELETE = "DEL"
"""``KV-Operation`` of a delete marker."""
KV_PURGE = "PURGE"
"""``KV-Operation`` of a purge marker."""

_REMOVED = frozenset({KV_DELETE, KV_PURGE})


def kv_stream(bucket: str) -> str:
    """The stream holding ``bucket``."""
    return f"KV_{bucket}"


def kv_subject_prefix(bucket: str) -> str:
    """What every key subject of ``bucket`` starts with (the key follows)."""
    return f"$KV.{bucket}."


def kv_subject(bucket: str, key: str) -> str:
    """The subject of ``key`` (or a key pattern with ``*`` / ``>``) in ``bucket``."""
    return f"$KV.{bucket}.{key}"


def is_deleted(headers: Mapping[str, str]) -> bool:
    """Whether a key's message marks it removed: deleted, purged, or expired by the server."""
    return headers.get(h.KV_OPERATION) in _REMOVED or h.MARKER_REASON in headers
