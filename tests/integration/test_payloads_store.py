"""The payload bucket on a real nats-server, and the executor storing and reading through it."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from support.executors import http_request, running_executor, wait_for_outcome
from support.http_target import HttpTarget
from support.nats_auth import AuthServer, provision

from eventstore.access import Role
from eventstore.config import TepSettings
from eventstore.errors import ConfigConflictError
from eventstore.events import ActionCompleted, ActionFailed, PlanSubmitted
from eventstore.jetstream.connection import NatsClient, connect_as
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.payloads import (
    PayloadStore,
    ensure_payload_store,
    store_large_values,
)
from eventstore.payloads import (
    PayloadMissingError,
    PayloadRef,
    PayloadTooLargeError,
    encode_payload,
    payload_ref,
)
from eventstore.plan import Action, Plan
from eventstore.subjects import payload_stream
from executor.handlers import HandlerRegistry

pytestmark = pytest.mark.anyio

LARGE = {"rows": [{"id": n, "name": f"row {n}", "pad": "x" * 100} for n in range(5000)]}


async def stored_messages(nc: NatsClient, settings: TepSettings) -> int:
    info = await nc.jetstream().stream_info(payload_stream(settings.payload_bucket))
    return int(info.state.messages)


async def test_a_large_value_is_stored_once_and_read_back_whole(
    nc: NatsClient, settings: TepSettings
) -> None:
    store = PayloadStore(nc, settings)

    marker = await store.store(LARGE)
    messages = await stored_messages(nc, settings)
    again = await store.store(LARGE)
    ref = payload_ref(marker)

    assert ref is not None and ref.size > settings.payload_inline_bytes
    assert again == marker and await stored_messages(nc, settings) == messages
    assert await store.get(ref) == LARGE
    assert await store.resolve({"nested": [marker]}) == {"nested": [LARGE]}
    assert await store.store({"small": 1}) == {"small": 1}


async def test_the_bucket_is_an_object_store_other_nats_clients_read(
    nc: NatsClient, settings: TepSettings
) -> None:
    ref = payload_ref(await PayloadStore(nc, settings).store(LARGE))
    assert ref is not None

    objects = await nc.jetstream().object_store(settings.payload_bucket)
    result = await objects.get(ref.name)

    assert result.data is not None and json.loads(result.data) == LARGE


async def test_a_reference_to_nothing_stored_is_missing(
    nc: NatsClient, settings: TepSettings
) -> None:
    absent = encode_payload({"never": "stored"}).ref
    elsewhere = PayloadRef(digest=absent.digest, size=absent.size, bucket="no-such-bucket")
    store = PayloadStore(nc, settings)
    await store.store(LARGE)  # the bucket exists

    with pytest.raises(PayloadMissingError, match="is not in bucket tep-payloads"):
        await store.get(absent)
    with pytest.raises(PayloadMissingError, match="no-such-bucket"):
        await store.get(elsewhere)


async def test_above_the_hard_cap_nothing_is_stored(nc: NatsClient, settings: TepSettings) -> None:
    capped = settings.model_copy(update={"payload_max_bytes": 400_000})

    with pytest.raises(PayloadTooLargeError, match="the limit is 400000 bytes"):
        await PayloadStore(nc, capped).store(LARGE)


async def test_the_bucket_keeps_what_the_log_keeps(nc: NatsClient, settings: TepSettings) -> None:
    keeping = settings.model_copy(update={"max_age_s": 3600.0, "payload_bucket": "kept"})
    await ensure_payload_store(nc.jetstream(), keeping)

    info = await nc.jetstream().stream_info("OBJ_kept")
    other = keeping.model_copy(update={"max_age_s": 60.0})

    assert info.config.max_age == 3600.0
    with pytest.raises(ConfigConflictError, match="max_age"):
        await ensure_payload_store(nc.jetstream(), other)


async def test_decisions_carry_references_for_their_large_values(
    nc: NatsClient, settings: TepSettings
) -> None:
    store = PayloadStore(nc, settings)
    request = http_request("e1", "send", "http://127.0.0.1:9/x", method="POST", json=LARGE)
    templated = http_request(
        "e1", "t", "http://127.0.0.1:9/x", method="POST", json={**LARGE, "k": "{{secrets.K}}"}
    )
    child = PlanSubmitted(
        execution_id="c1", plan=Plan(id="p", input=LARGE, actions=[Action(id="a", type="noop")])
    )
    done = ActionCompleted(execution_id="e1", action_id="a", attempt=1, output=LARGE)

    stored = await store_large_values(store, request)
    assert stored.request is not None and payload_ref(stored.request.json) is not None
    assert await store_large_values(store, templated) is templated  # the executor's templates
    stored_child = await store_large_values(store, child)
    assert await store.resolve(stored_child.plan.input) == LARGE
    stored_done = await store_large_values(store, done)
    assert await store.resolve(stored_done.output) == LARGE
    small = msgspec.structs.replace(done, output={"ok": True})
    assert await store_large_values(store, small) is small


# --- the executor ----------------------------------------------------------------------------


async def test_an_output_above_the_inline_limit_is_stored_and_the_event_holds_its_reference(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget, nc: NatsClient
) -> None:
    await event_log.append(http_request("e1", "big", http_target.url("/big/1000000/x")))

    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "big")

    assert isinstance(outcome, ActionCompleted)
    ref = payload_ref(outcome.output)
    assert ref is not None and ref.size == 1_000_000 + len('{"value":}')
    output = await PayloadStore(nc, settings).get(ref)
    assert output == {"value": "x" * (1_000_000 - 2)}


async def test_a_request_holding_a_reference_reaches_the_target_with_the_value(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget, nc: NatsClient
) -> None:
    marker = await PayloadStore(nc, settings).store(LARGE)
    request = http_request(
        "e1", "send", http_target.url("/echo/send"), method="POST", json={"data": marker}
    )
    await event_log.append(request)

    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "send")

    assert isinstance(outcome, ActionCompleted)
    [hit] = http_target.hits_for("/echo/send")
    assert json.loads(hit.body) == {"data": LARGE}
    # The echo of the large body is itself large: stored by reference again.
    assert payload_ref(outcome.output) is not None


async def test_a_request_holding_a_reference_to_nothing_fails_without_a_call(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget, nc: NatsClient
) -> None:
    await PayloadStore(nc, settings).store(LARGE)  # the bucket exists
    marker = encode_payload({"never": "stored"}).ref.marker()
    await event_log.append(
        http_request("e1", "send", http_target.url("/echo/x"), method="POST", json=marker)
    )

    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "send")

    assert isinstance(outcome, ActionFailed) and outcome.error.code == "invalid_request"
    assert "cannot be read" in outcome.error.message
    assert not http_target.hits


async def test_an_output_holding_a_forged_reference_is_refused(
    settings: TepSettings, event_log: EventLog
) -> None:
    registry = HandlerRegistry()
    forged = encode_payload({"someone": "else's"}).ref.marker()

    @registry.handler("forge")
    async def forge(request: object) -> object:
        return {"looks": forged}

    await event_log.append(http_request("e1", "f", "", action_type="forge", queue="forge"))

    async with running_executor(settings, registry=registry, queue="forge"):
        outcome = await wait_for_outcome(event_log, "e1", "f")

    assert isinstance(outcome, ActionFailed) and outcome.error.code == "invalid_response"
    assert "payload reference" in outcome.error.message


# --- under the shipped permissions -----------------------------------------------------------


async def test_each_role_stores_and_reads_payloads_as_its_permissions_allow(
    tmp_path: Path,
) -> None:
    server = AuthServer(tmp_path).start()
    try:
        async with provision(server):
            refs: dict[Role, PayloadRef] = {}
            for role in (Role.CLIENT, Role.EXECUTOR, Role.ORCHESTRATOR):
                settings = server.settings(role)
                nc = await connect_as(settings, role, name=f"payloads-{role}")
                try:
                    value = {"role": role.value, **LARGE}
                    ref = payload_ref(await PayloadStore(nc, settings).store(value))
                    assert ref is not None
                    refs[role] = ref
                    assert await PayloadStore(nc, settings).get(ref) == value
                finally:
                    await nc.close()
            assert server.violations() == []

            settings = server.settings(Role.PROJECTOR)
            nc = await connect_as(settings, Role.PROJECTOR, name="payloads-projector")
            try:
                store = PayloadStore(nc, settings)
                assert (await store.get(refs[Role.CLIENT]))["role"] == "client"
                with pytest.raises(Exception):  # noqa: B017 - refused: no answer comes
                    await store.store({"projector": "x" * 300_000})
            finally:
                await nc.close()
            refused = {(v.role, v.kind) for v in server.violations()}
            assert refused == {("projector", "Publish")}
    finally:
        server.stop()
