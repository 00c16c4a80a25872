"""Orchestrator partitions: which events belong to which partition, by subject. Pure.

Executions map to ``count`` partitions (16 by default, fixed per deployment) by the FNV-1a hash
of the execution id, the hash of the server's ``{{partition(n, k)}}`` subject transform. A
stream of its own (:func:`partition_stream`) sources the events the orchestrator consumes from
the log and stores each under ``tep.part.<n>.<original subject>``, so one partition's events
are the one filter ``tep.part.<n>.>``. The log itself, and every subject anyone publishes on,
stay as they are: the partition stream is an index the orchestrators work from, never read as
history.

A sourced message keeps its headers and gains ``Nats-Stream-Source`` (``<stream> <sequence>
...``): :func:`source_sequence` reads the log's own sequence back from it, so decisions guard on
the log's sequences, whichever stream delivered the event.
"""

from __future__ import annotations

from eventstore.subjects import ORCHESTRATOR_SUBJECTS

__all__ = [
    "DEFAULT_PARTITIONS",
    "MAX_PARTITIONS",
    "ORCHESTRATOR_CONSUMER",
    "PARTITIONS_KEY",
    "PARTITION_PREFIX",
    "origin_subject",
    "partition_consumer",
    "partition_filter",
    "partition_of",
    "partition_stream",
    "partition_transforms",
    "source_sequence",
]

DEFAULT_PARTITIONS = 16
MAX_PARTITIONS = 256
ORCHESTRATOR_CONSUMER = "orchestrator"
"""What the partitions' consumers are named after (``orchestrator-p03``), and the name of the
one durable consumer orchestrators shared before partitions."""
PARTITION_PREFIX = "tep.part"
PARTITIONS_KEY = "orchestrator.partitions"
"""The key of the meta bucket holding the deployment's partition count."""

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def partition_stream(log_stream: str) -> str:
    """The name of the partition stream of the log ``log_stream``."""
    return f"{log_stream}_PARTITIONS"


def partition_consumer(prefix: str, partition: int) -> str:
    """The durable consumer of one partition, e.g. ``orchestrator-p03``."""
    return f"{prefix}-p{partition:02d}"


def partition_filter(partition: int) -> str:
    """The one filter matching every event of ``partition`` in the partition stream."""
    return f"{PARTITION_PREFIX}.{partition}.>"


def partition_transforms(count: int) -> list[tuple[str, str]]:
    """``(source filter, destination)`` pairs for the partition stream's source of the log."""
    if not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be 1..{MAX_PARTITIONS}, not {count}")
    pairs = []
    for source in ORCHESTRATOR_SUBJECTS:
        wildcards = source.count("*")
        tail = ".".join(f"{{{{wildcard({i})}}}}" for i in range(1, wildcards + 1))
        stem = source.removesuffix(".*" * wildcards)
        pairs.append((source, f"{PARTITION_PREFIX}.{{{{partition({count},1)}}}}.{stem}.{tail}"))
    return pairs


def partition_of(execution_id: str, count: int) -> int:
    """The partition of ``execution_id`` (what the server's transform computes)."""
    value = _FNV_OFFSET
    for byte in execution_id.encode():
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value % count


def origin_subject(subject: str) -> str:
    """The log subject of a partition stream subject (any other subject unchanged)."""
    if not subject.startswith(PARTITION_PREFIX + "."):
        return subject
    parts = subject.split(".", 3)
    return parts[3] if len(parts) == 4 else subject


def source_sequence(header: str | None) -> int | None:
    """The log's sequence in a ``Nats-Stream-Source`` header value, ``None`` if it has none."""
    if not header:
        return None
    fields = header.split(" ", 2)
    if len(fields) < 2 or not (fields[1].isascii() and fields[1].isdigit()):
        return None
    return int(fields[1])
