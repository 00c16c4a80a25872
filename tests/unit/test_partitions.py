"""Which partition an execution belongs to, and the names and subjects of the partition stream."""

from __future__ import annotations

import re

import pytest

from eventstore.partitions import (
    DEFAULT_PARTITIONS,
    MAX_PARTITIONS,
    PARTITION_PREFIX,
    origin_subject,
    partition_consumer,
    partition_filter,
    partition_of,
    partition_stream,
    partition_transforms,
    source_sequence,
)
from eventstore.subjects import ORCHESTRATOR_FILTERS, orchestrator_subject_type

# 32-bit FNV-1a of the id (the published test vectors), then modulo the count.
FNV1A_32 = {
    "": 0x811C9DC5,
    "a": 0xE40C292C,
    "b": 0xE70C2DE5,
    "foobar": 0xBF9CF968,
}


@pytest.mark.parametrize(("text", "digest"), sorted(FNV1A_32.items()))
@pytest.mark.parametrize("count", [1, 2, 7, 16, 256])
def test_partition_of_is_fnv1a_of_the_id_modulo_the_count(
    text: str, digest: int, count: int
) -> None:
    assert partition_of(text, count) == digest % count


def test_partition_of_known_ids_over_sixteen() -> None:
    # 0xE40C292C % 16 == 12, 0xBF9CF968 % 16 == 8
    assert partition_of("a", 16) == 12
    assert partition_of("foobar", 16) == 8


def test_partition_of_is_stable_and_in_range() -> None:
    ids = [f"exec-{n}" for n in range(2000)]
    for count in (1, 3, 16, 256):
        first = [partition_of(i, count) for i in ids]
        assert first == [partition_of(i, count) for i in ids]
        assert all(0 <= p < count for p in first)
    assert {partition_of(i, 1) for i in ids} == {0}


def test_partition_of_spreads_ids_over_every_partition() -> None:
    ids = [f"exec-{n}" for n in range(1600)]
    counts = [0] * DEFAULT_PARTITIONS
    for execution_id in ids:
        counts[partition_of(execution_id, DEFAULT_PARTITIONS)] += 1
    # 100 expected per partition: a fair hash stays well within a factor of two.
    assert min(counts) > 50 and max(counts) < 200, counts


# ---------------------------------------------------------------- transforms

_TOKEN = re.compile(r"\{\{(\w+)\(([^)]*)\)\}\}")


@pytest.mark.parametrize("count", [1, 16, 256])
def test_transforms_route_every_orchestrator_subject_by_its_execution(count: int) -> None:
    pairs = partition_transforms(count)
    sources = [source for source, _ in pairs]
    assert len(sources) == len(set(sources)) == len(ORCHESTRATOR_FILTERS)
    # The same subjects as the orchestrator's filters, one wildcard per token.
    assert sorted(s.split(".*")[0] + ".>" for s in sources) == sorted(ORCHESTRATOR_FILTERS)
    for source, destination in pairs:
        wildcards = source.count("*")
        assert wildcards >= 1
        assert destination.startswith(f"{PARTITION_PREFIX}.{{{{partition({count},1)}}}}.")
        functions = _TOKEN.findall(destination)
        assert functions[0] == ("partition", f"{count},1")
        assert functions[1:] == [("wildcard", str(i)) for i in range(1, wildcards + 1)]
        # Without the prefix and the functions, the destination spells the source.
        rest = destination.split(".", 3)[3]
        assert _TOKEN.sub("*", rest) == source


@pytest.mark.parametrize(
    "subject",
    [
        "plan.submitted.e1",
        "action.completed.e1.a",
        "action.failed.e1.a~2@3",
        "action.resume.requested.e1.a",
        "action.timer.fired.e1.a",
        "execution.cancel.requested.e1",
        "execution.completed.e1",
        "execution.failed.e1",
        "execution.cancelled.e1",
        "execution.retried.e1",
    ],
)
def test_the_partitioned_subject_of_an_event_reads_back_as_the_original(subject: str) -> None:
    """What the server makes of a subject (simulated from the transform), and back again."""
    found = orchestrator_subject_type(subject)
    assert found is not None
    _, execution_id = found
    (source, destination), *_ = [
        (s, d) for s, d in partition_transforms(16) if _matches(s, subject)
    ]
    tokens = subject.split(".")
    wildcard_tokens = [
        t for t, pattern in zip(tokens, source.split("."), strict=True) if pattern == "*"
    ]
    assert wildcard_tokens[0] == execution_id  # partition(16,1) hashes the execution id

    def substitute(match: re.Match[str]) -> str:
        name, args = match.groups()
        if name == "partition":
            return str(partition_of(wildcard_tokens[0], 16))
        return wildcard_tokens[int(args) - 1]

    partitioned = _TOKEN.sub(substitute, destination)
    assert partitioned == f"tep.part.{partition_of(execution_id, 16)}.{subject}"
    assert origin_subject(partitioned) == subject


def _matches(pattern: str, subject: str) -> bool:
    parts, tokens = pattern.split("."), subject.split(".")
    return len(parts) == len(tokens) and all(
        p in ("*", t) for p, t in zip(parts, tokens, strict=True)
    )


@pytest.mark.parametrize("count", [0, -1, MAX_PARTITIONS + 1, 10_000])
def test_invalid_partition_counts_are_refused(count: int) -> None:
    with pytest.raises(ValueError, match=str(count)):
        partition_transforms(count)


def test_the_largest_count_is_allowed() -> None:
    assert len(partition_transforms(MAX_PARTITIONS)) == len(ORCHESTRATOR_FILTERS)


# ---------------------------------------------------------------- origin_subject


@pytest.mark.parametrize(
    ("subject", "origin"),
    [
        ("tep.part.3.plan.submitted.e1", "plan.submitted.e1"),
        ("tep.part.15.action.completed.e1.a", "action.completed.e1.a"),
        ("tep.part.0.execution.cancel.requested.e1", "execution.cancel.requested.e1"),
        # not a partition stream subject: unchanged
        ("plan.submitted.e1", "plan.submitted.e1"),
        ("tep.partition.3.plan.submitted.e1", "tep.partition.3.plan.submitted.e1"),
        (
            "tep.deadletter.orchestrator.plan.submitted.e1",
            "tep.deadletter.orchestrator.plan.submitted.e1",
        ),
        # a prefix with nothing after it: unchanged
        ("tep.part.3", "tep.part.3"),
        ("tep.part.", "tep.part."),
        ("tep.part", "tep.part"),
        ("", ""),
    ],
)
def test_origin_subject(subject: str, origin: str) -> None:
    assert origin_subject(subject) == origin


# ---------------------------------------------------------------- source_sequence


@pytest.mark.parametrize(
    ("header", "sequence"),
    [
        (
            "TEP_EVENTS 42 plan.submitted.* "
            "tep.part.{{partition(16,1)}}.plan.submitted.{{wildcard(1)}}",
            42,
        ),
        ("TEP_EVENTS 1", 1),
        ("TEP_EVENTS:abc123 7 > >", 7),
        ("TEP_EVENTS 18446744073709551615 x y", 18446744073709551615),
    ],
)
def test_source_sequence_reads_the_log_sequence(header: str, sequence: int) -> None:
    assert source_sequence(header) == sequence


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "TEP_EVENTS",
        "TEP_EVENTS ",
        "TEP_EVENTS  42",  # an empty field where the sequence belongs
        "TEP_EVENTS x42",
        "TEP_EVENTS -42",
        "TEP_EVENTS +42",
        "TEP_EVENTS 4.2",
        "TEP_EVENTS 0x2a",
        "42",
        "TEP_EVENTS\t42",
        "TEP_EVENTS ²",  # a digit to str.isdigit, no number to int()
    ],
)
def test_source_sequence_is_none_without_a_sequence(header: str | None) -> None:
    assert source_sequence(header) is None


# ---------------------------------------------------------------- names


def test_partition_names() -> None:
    assert partition_stream("TEP_EVENTS") == "TEP_EVENTS_PARTITIONS"
    assert partition_consumer("orchestrator", 0) == "orchestrator-p00"
    assert partition_consumer("orchestrator", 3) == "orchestrator-p03"
    assert partition_consumer("orchestrator", 15) == "orchestrator-p15"
    assert partition_consumer("orch", 255) == "orch-p255"
    assert partition_filter(0) == "tep.part.0.>"
    assert partition_filter(15) == "tep.part.15.>"


def test_partition_consumers_are_distinct_and_filters_disjoint() -> None:
    consumers = {partition_consumer("orchestrator", p) for p in range(MAX_PARTITIONS)}
    filters = [partition_filter(p) for p in range(MAX_PARTITIONS)]
    assert len(consumers) == len(set(filters)) == MAX_PARTITIONS
    # The partition is one whole token: tep.part.1.> never matches tep.part.10.<subject>.
    assert [f.split(".")[2] for f in filters] == [str(p) for p in range(MAX_PARTITIONS)]
