"""Per-role NATS permissions on a real server with the identities of ``tep creds init``.

Each role's seed is used the way an attacker holding it would: a raw nats-py connection,
publishing and subscribing to whatever it likes. The server refuses what the role may not do
(``permissions violation`` on the connection, nothing stored); the admin connection checks that
the log, the view and the consumers are unchanged. (That the roles doing their job are never
refused: test_nats_permissions_system.py.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from support.nats_auth import Admin, AuthServer, Violation, provision
from support.waiting import eventually

from eventstore.access import Role, inbox_prefix
from eventstore.config import TepSettings
from eventstore.errors import NatsAuthorizationError
from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    Event,
    ExecutionCancelRequested,
    ExecutionCompleted,
    PlanSubmitted,
)
from eventstore.jetstream.connection import connect_as, last_permission_denial
from eventstore.jetstream.event_messages import event_message
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_kv
from eventstore.jetstream.queues import QUEUE_CONFIG_BUCKET, ensure_queue_consumer, set_queue_limit
from eventstore.jetstream.settling import asking_again
from eventstore.partitions import partition_consumer, partition_stream
from eventstore.plan import Action, Plan, RequestSpec
from orchestrator.config import OrchestratorConfig
from orchestrator.partition_leases import partition_key
from projections import StateManager
from tep.creds import init_credentials, seed_path

pytestmark = pytest.mark.anyio

STREAM = TepSettings().stream
QUEUE_CONSUMER = "queue-http"
ORCHESTRATOR = OrchestratorConfig()
PARTITIONS = partition_stream(STREAM)
PARTITION_CONSUMER = partition_consumer(ORCHESTRATOR.consumer, 0)
_REFUSED_WAIT_S = 0.25
"""How long a refused request is given before it counts as unanswered (the server's refusal
itself is what the tests wait for)."""


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture
def auth(tmp_path: Path) -> Iterator[AuthServer]:
    server = AuthServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
async def provisioned(auth: AuthServer) -> AsyncIterator[Admin]:
    async with provision(auth) as admin:
        yield admin


@pytest.fixture
async def admin(provisioned: Admin) -> Admin:
    """Besides the log and the view: both durable consumers, a queue limit and a lease, as the
    roles would have left them."""
    js, settings = provisioned.js, provisioned.settings
    await ensure_queue_consumer(js, settings, "http")
    await set_queue_limit(js, settings, "http", 5)
    lease = await ensure_kv(js, ORCHESTRATOR.lease_bucket)
    await lease.put(partition_key(0), b'{"holder": "the-real-leader"}')
    return provisioned


@dataclass
class Identity:
    """A raw connection with one role's seed: what anyone holding that seed could try."""

    role: Role
    nc: Client
    errors: list[str] = field(default_factory=list)

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream(timeout=_REFUSED_WAIT_S)

    async def refused(self, what: str) -> None:
        """Wait until the server has said it refused ``what`` (e.g. ``publish to "x"``)."""
        needle = f"permissions violation for {what}".lower()
        await eventually(
            lambda: any(needle in error for error in self.errors),
            5,
            f"the server never refused {self.role.value}'s {what}; errors: {self.errors}",
        )

    async def refused_request(self, subject: str, payload: bytes = b"") -> None:
        """A request to ``subject`` gets no answer because the server refused to deliver it."""
        with pytest.raises(nats.errors.TimeoutError):
            await self.nc.request(subject, payload, timeout=_REFUSED_WAIT_S)
        await self.refused(f'publish to "{subject}"')

    async def refused_event(self, event: Event) -> str:
        """Publishing ``event`` to the log is refused; its subject."""
        subject, payload, headers = event_message(event, 1 << 20)
        with pytest.raises(nats.errors.TimeoutError):
            await self.js.publish(subject, payload, headers=headers)
        await self.refused(f'publish to "{subject}"')
        return subject


OpenIdentity = Callable[[Role], Awaitable[Identity]]


@pytest.fixture
async def identity(auth: AuthServer) -> AsyncIterator[OpenIdentity]:
    """Opens raw nats-py connections with a role's seed and its own inbox prefix."""
    opened: list[Identity] = []

    async def open_as(role: Role) -> Identity:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        nc = await nats.connect(
            auth.url,
            name=f"raw-{role.value}",
            nkeys_seed=str(auth.seed(role)),
            inbox_prefix=inbox_prefix(role),
            error_cb=on_error,
            allow_reconnect=False,
        )
        opened.append(Identity(role, nc, errors))
        return opened[-1]

    yield open_as
    for each in opened:
        await each.nc.close()


def completed(execution_id: str, action_id: str) -> ActionCompleted:
    return ActionCompleted(
        execution_id=execution_id,
        action_id=action_id,
        attempt=1,
        output={"email": "attacker@example.com"},
    )


def submitted(execution_id: str) -> PlanSubmitted:
    plan = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://127.0.0.1:9/"))])
    return PlanSubmitted(execution_id=execution_id, plan=plan)


# -------------------------------------------------------------------------------- refusals


async def test_an_executor_cannot_submit_plans_or_end_executions(
    auth: AuthServer, admin: Admin, identity: OpenIdentity
) -> None:
    executor = await identity(Role.EXECUTOR)

    forged = [
        await executor.refused_event(submitted("forged-plan")),
        await executor.refused_event(ExecutionCompleted(execution_id="forged-end")),
    ]

    assert forged == ["plan.submitted.forged-plan", "execution.completed.forged-end"]
    for subject in forged:
        assert not await admin.holds(subject), subject
    # The server's log names each refusal and whose it was (what the system test relies on).
    logged = {Violation("executor", "Publish", subject) for subject in forged}
    await eventually(lambda: logged <= set(auth.violations()), 5, "refusals not logged")


async def test_a_client_cannot_forge_an_outcome_or_end_an_execution_in_the_view(
    admin: Admin, identity: OpenIdentity
) -> None:
    client = await identity(Role.CLIENT)
    view = await admin.js.key_value(admin.view_bucket)
    await view.put("exec.victim", b'{"status": "running"}')
    before = await admin.revision(admin.view_bucket, "exec.victim")

    subject = await client.refused_event(completed("victim", "fetch-user"))
    await client.refused_request(f"$KV.{admin.view_bucket}.exec.victim", b'{"status": "completed"}')

    assert subject == "action.completed.victim.fetch-user"
    assert not await admin.holds(subject)
    assert await admin.revision(admin.view_bucket, "exec.victim") == before


async def test_a_client_cannot_take_work_from_an_executor_queue(
    admin: Admin, identity: OpenIdentity
) -> None:
    request = ActionExecuteRequested(
        execution_id="queued", action_id="a", action_type="http", queue="http"
    )
    await EventLog(admin.nc, admin.settings).append(request)
    await eventually(
        lambda: _pending(admin, QUEUE_CONSUMER), 5, "the request never reached the queue"
    )
    client = await identity(Role.CLIENT)

    await client.refused_request(
        f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{QUEUE_CONSUMER}", b'{"batch": 1, "expires": 0}'
    )
    await client.refused_request(f"$JS.ACK.{STREAM}.{QUEUE_CONSUMER}.1.1.1.0.0", b"+ACK")

    info = await admin.consumer(QUEUE_CONSUMER)
    assert (info.num_pending, info.num_ack_pending, info.delivered.consumer_seq) == (1, 0, 0)


async def _pending(admin: Admin, consumer: str) -> bool:
    return (await admin.consumer(consumer)).num_pending == 1


@pytest.mark.parametrize(
    ("role", "stream", "consumer"),
    [
        (Role.CLIENT, STREAM, QUEUE_CONSUMER),
        (Role.CLIENT, PARTITIONS, PARTITION_CONSUMER),
        (Role.EXECUTOR, PARTITIONS, PARTITION_CONSUMER),
        (Role.PROJECTOR, PARTITIONS, PARTITION_CONSUMER),
    ],
    ids=["client-queue", "client-partition", "executor-partition", "projector-partition"],
)
async def test_others_cannot_hijack_or_delete_a_durable_consumer(
    role: Role, stream: str, consumer: str, admin: Admin, identity: OpenIdentity
) -> None:
    before = (await admin.js.consumer_info(stream, consumer)).config
    client = await identity(role)
    hijacked = {
        "name": consumer,
        "durable_name": consumer,
        "deliver_subject": f"{inbox_prefix(Role.CLIENT)}.stolen",
        "filter_subject": ">",
        "ack_policy": "none",
        "max_ack_pending": 1,
    }

    for subject, config in [
        # The unnamed create is a create-or-update of whatever consumer the config names.
        (f"$JS.API.CONSUMER.CREATE.{stream}", hijacked),
        (f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}", hijacked),
        (f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.tep.>", hijacked),
        (f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}", hijacked),
    ]:
        document = {"stream_name": stream, "config": config, "action": ""}
        await client.refused_request(subject, json.dumps(document).encode())
    await client.refused_request(f"$JS.API.CONSUMER.DELETE.{stream}.{consumer}")
    await client.refused_request(
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", b'{"batch": 1, "expires": 0}'
    )

    assert (await admin.js.consumer_info(stream, consumer)).config == before


async def test_a_client_can_submit_cancel_and_read(
    auth: AuthServer, admin: Admin, identity: OpenIdentity
) -> None:
    manager = await StateManager.connect(settings=auth.settings(Role.CLIENT))
    try:
        state = await manager.initialize_state(submitted("mine").plan, "mine")
        log = EventLog(manager.nc, manager.settings)
        await log.append(ExecutionCancelRequested(execution_id="mine", reason="changed my mind"))

        history = [type(record.event) for record in await log.read_execution("mine")]
        assert await manager.in_log("mine")
        assert await manager.get_execution_state("mine") is None  # no projector runs here
        assert (await manager.get_stats()).executions["pending"] == 0
        assert await manager.list_executions() == []
    finally:
        await manager.close()
    client = await identity(Role.CLIENT)
    direct = await client.nc.jetstream().get_last_msg(STREAM, "plan.submitted.mine", direct=True)

    assert state.status == "pending"
    assert history == [PlanSubmitted, ExecutionCancelRequested]
    assert direct.seq == state.last_sequence
    assert [str(v) for v in auth.violations() if v.role == "client"] == []


async def test_a_client_cannot_listen_on_another_roles_inbox(
    admin: Admin, identity: OpenIdentity
) -> None:
    client = await identity(Role.CLIENT)
    overheard = await client.nc.subscribe(f"{inbox_prefix(Role.ORCHESTRATOR)}.>")
    own = await client.nc.subscribe(f"{inbox_prefix(Role.CLIENT)}.marker")
    await client.nc.flush()
    await client.refused(f'subscription to "{inbox_prefix(Role.ORCHESTRATOR)}.>"')

    await admin.nc.publish(f"{inbox_prefix(Role.ORCHESTRATOR)}.reply", b"secret reply")
    await admin.nc.publish(f"{inbox_prefix(Role.CLIENT)}.marker", b"after it")
    await own.next_msg(timeout=5)

    # Published before the marker by the same connection: it would have arrived first.
    assert overheard.pending_msgs == 0


async def test_the_projector_cannot_make_a_stream_that_records_another_roles_replies(
    admin: Admin, identity: OpenIdentity
) -> None:
    projector = await identity(Role.PROJECTOR)
    spy = {"name": "SPY", "subjects": [f"{inbox_prefix(Role.CLIENT)}.>"], "storage": "memory"}

    await projector.refused_request("$JS.API.STREAM.CREATE.SPY", json.dumps(spy).encode())

    with pytest.raises(NotFoundError):
        await admin.js.stream_info("SPY")


@pytest.mark.parametrize(
    ("role", "bucket", "key"),
    [
        (Role.PROJECTOR, ORCHESTRATOR.lease_bucket, partition_key(0)),
        (Role.PROJECTOR, QUEUE_CONFIG_BUCKET, "http"),
        (Role.ORCHESTRATOR, "view", "exec.victim"),
        (Role.EXECUTOR, "view", "exec.victim"),
        (Role.EXECUTOR, QUEUE_CONFIG_BUCKET, "http"),
    ],
    ids=[
        "projector-lease",
        "projector-queue-limits",
        "orchestrator-view",
        "executor-view",
        "executor-queue-limits",
    ],
)
async def test_a_role_cannot_write_another_roles_bucket(
    role: Role, bucket: str, key: str, admin: Admin, identity: OpenIdentity
) -> None:
    bucket = admin.view_bucket if bucket == "view" else bucket
    if bucket == admin.view_bucket:
        await (await admin.js.key_value(bucket)).put(key, b'{"status": "running"}')
    before = await admin.revision(bucket, key)
    assert before is not None
    attacker = await identity(role)

    await attacker.refused_request(f"$KV.{bucket}.{key}", b'{"forged": true}')

    assert await admin.revision(bucket, key) == before


async def test_without_an_identity_the_server_refuses_and_says_how_to_give_one(
    auth: AuthServer, tmp_path: Path
) -> None:
    anonymous = TepSettings(nats_url=auth.url, state_dir=tmp_path / "no-stack-here")

    with pytest.raises(NatsAuthorizationError) as refused:
        await connect_as(anonymous, Role.CLIENT, name="anonymous")

    message = str(refused.value)
    assert "\n" not in message
    assert f"NATS at {auth.url} refused no credentials" in message
    assert "--nkey" in message and "TEP_NKEY" in message


async def test_a_key_the_server_does_not_know_is_refused(auth: AuthServer, tmp_path: Path) -> None:
    init_credentials(tmp_path / "other", settings=TepSettings(nats_url=auth.url))
    stranger = TepSettings(nats_url=auth.url, nkey=seed_path(tmp_path / "other", Role.ADMIN))

    with pytest.raises(NatsAuthorizationError, match="refused the credentials given"):
        await connect_as(stranger, Role.ADMIN, name="stranger", reconnect=False)


async def test_a_start_up_step_refused_a_permission_ends_at_once_not_asked_again(
    auth: AuthServer, admin: Admin
) -> None:
    nc = await connect_as(auth.settings(Role.EXECUTOR), Role.EXECUTOR, name="executor")
    calls = 0

    async def forbidden() -> None:
        nonlocal calls
        calls += 1
        await nc.request("plan.submitted.not-mine", b"{}", timeout=_REFUSED_WAIT_S)

    try:
        with pytest.raises(nats.errors.TimeoutError):
            await asking_again(forbidden, what="a refused step")
    finally:
        await nc.close()
    assert calls == 1
    assert 'publish to "plan.submitted.not-mine"' in (last_permission_denial() or "")
