"""Values stored by reference: the reference, its marker, the limits, walking values. Pure."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest

from eventstore.access import Role, permissions
from eventstore.config import TepSettings
from eventstore.payloads import (
    PayloadCorruptError,
    PayloadLimits,
    PayloadRef,
    PayloadTooLargeError,
    claim_check,
    decode_payload,
    digest_of,
    encode_payload,
    find_refs,
    format_size,
    is_payload_ref,
    payload_ref,
    replace_refs,
    summarize_refs,
)

LIMITS = PayloadLimits(inline_bytes=100, max_bytes=1000)


def big(n: int = 200) -> dict[str, Any]:
    return {"text": "x" * n}


def ref_of(value: Any) -> PayloadRef:
    return encode_payload(value).ref


# --- the reference and its marker ------------------------------------------------------------


def test_the_reference_is_the_sha256_and_length_of_the_json_encoding() -> None:
    value = {"a": [1, 2, 3]}
    encoded = encode_payload(value, "bucket-1")
    data = msgspec.json.encode(value)

    assert encoded.data == data
    assert encoded.ref == PayloadRef(
        digest="sha256:" + hashlib.sha256(data).hexdigest(), size=len(data), bucket="bucket-1"
    )
    assert encoded.ref.name == "sha256-" + hashlib.sha256(data).hexdigest()


def test_the_same_value_always_gets_the_same_reference() -> None:
    assert encode_payload(big()).ref == encode_payload(big()).ref
    assert encode_payload(big()).ref != encode_payload(big(201)).ref


def test_a_marker_is_one_key_holding_exactly_a_reference() -> None:
    ref = ref_of(big())
    marker = ref.marker()

    assert marker == {"$ref": {"digest": ref.digest, "size": ref.size, "bucket": ref.bucket}}
    assert payload_ref(marker) == ref
    assert is_payload_ref(msgspec.json.decode(msgspec.json.encode(marker)))


@pytest.mark.parametrize(
    "value",
    [
        {"$ref": "#/definitions/user"},  # JSON Schema's $ref is a string
        {"$ref": {"digest": "sha256:" + "0" * 64, "size": 1}, "other": 1},
        {"$ref": {"digest": "md5:abc", "size": 1}},
        {"$ref": {"digest": "sha256:" + "0" * 63, "size": 1}},
        {"$ref": {"digest": "sha256:" + "0" * 64, "size": -1}},
        {"$ref": {"digest": "sha256:" + "0" * 64, "size": "1"}},
        {"$ref": {"digest": "sha256:" + "0" * 64, "size": 1, "bucket": "a.b"}},
        {"$ref": {"digest": "sha256:" + "0" * 64, "size": 1, "extra": True}},
        [{"digest": "sha256:" + "0" * 64, "size": 1}],
        "sha256:" + "0" * 64,
        None,
    ],
)
def test_anything_else_is_no_marker(value: Any) -> None:
    assert payload_ref(value) is None


def test_the_summary_names_size_and_digest_briefly() -> None:
    ref = ref_of({"text": "x" * (5 * 1024 * 1024)})

    assert ref.summary() == f"<stored by reference: 5.0 MiB, {ref.digest[:15]}>"
    assert [format_size(n) for n in (512, 256 * 1024, 1536, 3 * 1024 * 1024)] == [
        "512 B",
        "256 KiB",
        "1.5 KiB",
        "3.0 MiB",
    ]


# --- claim check -----------------------------------------------------------------------------


def test_a_value_up_to_the_inline_limit_stays_as_it_is() -> None:
    value = {"text": "x" * 80}

    assert claim_check(value, LIMITS) == (value, None)


def test_a_value_above_the_inline_limit_becomes_its_marker_and_a_payload() -> None:
    value = big()

    kept, payload = claim_check(value, LIMITS)

    assert payload is not None and kept == payload.ref.marker()
    assert decode_payload(payload.ref, payload.data) == value


def test_a_value_above_the_hard_cap_is_refused_naming_the_limit_and_the_setting() -> None:
    with pytest.raises(PayloadTooLargeError) as raised:
        claim_check(big(2000), LIMITS, what="the output of fetch")

    message = str(raised.value)
    assert message.startswith("the output of fetch is 2011 bytes encoded; the limit is 1000")
    assert "TEP_PAYLOAD_MAX_BYTES" in message
    assert raised.value.size == 2011 and raised.value.limit == 1000


def test_reading_back_checks_size_digest_and_json() -> None:
    payload = encode_payload(big())
    with pytest.raises(PayloadCorruptError, match="bytes, expected"):
        decode_payload(payload.ref, payload.data[:-1])
    with pytest.raises(PayloadCorruptError, match="another digest"):
        decode_payload(payload.ref, payload.data.replace(b"x", b"y", 1))
    not_json = b"{not json"
    ref = PayloadRef(digest=digest_of(not_json), size=len(not_json))
    with pytest.raises(PayloadCorruptError, match="not JSON"):
        decode_payload(ref, not_json)


def test_the_settings_bound_the_inline_limit_by_what_fits_a_message() -> None:
    assert TepSettings().payload_limits == PayloadLimits(
        inline_bytes=256 * 1024, max_bytes=64 * 1024 * 1024, bucket="tep-payloads"
    )
    small = TepSettings(max_msg_bytes=200_000, max_plan_bytes=100_000)
    assert small.payload_limits.inline_bytes == 200_000 - 16 * 1024


# --- walking values --------------------------------------------------------------------------


def test_find_refs_finds_every_distinct_marker_in_document_order() -> None:
    a, b = ref_of(big(300)), ref_of(big(400))
    value = {"x": [a.marker(), {"y": b.marker()}], "z": a.marker(), "w": "plain"}

    assert find_refs(value) == [a, b]
    assert find_refs({"none": [1, "two", {"three": None}]}) == []


def test_replace_refs_substitutes_known_digests_and_keeps_the_others() -> None:
    a, b = ref_of(big(300)), ref_of(big(400))
    value = {"x": [a.marker(), b.marker()], "keep": {"n": 1}}

    replaced = replace_refs(value, {a.digest: {"full": True}})

    assert replaced == {"x": [{"full": True}, b.marker()], "keep": {"n": 1}}
    assert replaced["keep"] is value["keep"]
    assert replace_refs(value, {}) is value


def test_summarize_refs_replaces_markers_with_short_text() -> None:
    ref = ref_of(big())

    assert summarize_refs({"output": ref.marker()}) == {"output": ref.summary()}


# --- who may store and read them -------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.CLIENT, Role.EXECUTOR, Role.ORCHESTRATOR])
def test_clients_executors_and_orchestrators_may_store_payloads(role: Role) -> None:
    allowed = permissions(role, payload_bucket="pl").publish_allow

    assert "$O.pl.C.>" in allowed and "$O.pl.M.>" in allowed
    assert not any("PURGE" in s or "MSG.DELETE" in s for s in allowed)


def test_the_projector_stores_no_payloads_but_every_role_may_read_them() -> None:
    projector = permissions(Role.PROJECTOR).publish_allow

    assert not any(s.startswith("$O.") for s in projector)
    for role in (Role.CLIENT, Role.EXECUTOR, Role.ORCHESTRATOR, Role.PROJECTOR):
        allowed = permissions(role).publish_allow
        assert "$JS.API.DIRECT.GET.*.>" in allowed  # an object's metadata
        assert "$JS.API.CONSUMER.CREATE.*.*.>" in allowed  # its chunks, by a named consumer
