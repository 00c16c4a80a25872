"""Connection identity settings, the local stack note, and the per-role permission model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eventstore.access import ROLES, Role, inbox_prefix, permissions
from eventstore.config import TepSettings
from eventstore.errors import SettingsError
from eventstore.jetstream.connection import auth_options
from eventstore.jetstream.local_stack import (
    local_stack_for,
    note_local_stack,
    remove_local_stack,
)
from executor.config import ExecutorConfig
from tep.creds import init_credentials, public_key, seed_path


def test_a_missing_credential_file_is_named_with_its_variable_and_flag(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"nkey \(TEP_NKEY, --nkey\): file .* does not exist"):
        TepSettings.from_env({"TEP_NKEY": str(tmp_path / "nope.nk")})


def test_identities_do_not_mix_and_a_password_needs_a_user(tmp_path: Path) -> None:
    seed = tmp_path / "x.nk"
    seed.write_text("x")
    with pytest.raises(SettingsError, match="one of creds, nkey or user"):
        TepSettings.from_env({}, nkey=seed, user="u")
    with pytest.raises(SettingsError, match="password needs a user"):
        TepSettings.from_env({}, password="p")
    with pytest.raises(SettingsError, match="tls_cert and tls_key go together"):
        TepSettings.from_env({}, tls_cert=seed)


def test_a_list_setting_that_is_not_json_is_one_line() -> None:
    with pytest.raises(SettingsError, match=r"handler_modules.*expected a JSON list"):
        ExecutorConfig.from_env({"TEP_EXECUTOR_HANDLER_MODULES": "not json"})


def test_explicit_identities_map_to_connect_options(tmp_path: Path) -> None:
    seed = tmp_path / "x.nk"
    seed.write_text("x")
    options = auth_options(TepSettings.from_env({}, nkey=seed), Role.EXECUTOR)
    assert options == {"nkeys_seed": str(seed), "inbox_prefix": "_INBOX.executor"}
    options = auth_options(TepSettings.from_env({}, user="u", password="p"), Role.CLIENT)
    assert options == {"user": "u", "password": "p", "inbox_prefix": "_INBOX.client"}
    assert auth_options(TepSettings.from_env({}, state_dir=tmp_path), Role.CLIENT) == {}


def test_the_local_stack_note_gives_each_role_its_seed_for_that_url_only(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    init_credentials(creds)
    url = "nats://127.0.0.1:14999"
    note_local_stack(tmp_path, url, creds)
    assert (tmp_path / "stack-127.0.0.1-14999.json").stat().st_mode & 0o077 == 0
    settings = TepSettings.from_env({}, nats_url=url, state_dir=tmp_path)
    options = auth_options(settings, Role.CLIENT)
    assert options["nkeys_seed"] == str(seed_path(creds.resolve(), Role.CLIENT))
    other = TepSettings.from_env({}, nats_url="nats://127.0.0.1:15000", state_dir=tmp_path)
    assert auth_options(other, Role.CLIENT) == {}
    remove_local_stack(tmp_path, url)
    assert local_stack_for(tmp_path, url) is None


def test_a_note_left_by_a_dead_process_is_ignored(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    init_credentials(creds)
    url = "nats://127.0.0.1:14998"
    note_local_stack(tmp_path, url, creds)
    path = tmp_path / "stack-127.0.0.1-14998.json"
    path.write_text(path.read_text().replace(f'"pid":{os.getpid()}', '"pid":999999999'))
    assert local_stack_for(tmp_path, url) is None


def test_creds_init_writes_private_seeds_and_refuses_to_overwrite(tmp_path: Path) -> None:
    written = init_credentials(tmp_path / "c")
    assert {p.name for p in written} == {f"{r.value}.nk" for r in ROLES} | {"auth.conf"}
    for role in ROLES:
        path = seed_path(tmp_path / "c", role)
        assert path.stat().st_mode & 0o077 == 0
        assert public_key(path) in (tmp_path / "c" / "auth.conf").read_text()
    before = public_key(seed_path(tmp_path / "c", Role.EXECUTOR))
    with pytest.raises(Exception, match="--rotate ROLE"):
        init_credentials(tmp_path / "c")
    init_credentials(tmp_path / "c", rotate=[Role.EXECUTOR])
    after = public_key(seed_path(tmp_path / "c", Role.EXECUTOR))
    assert after != before
    assert public_key(seed_path(tmp_path / "c", Role.CLIENT)) in (
        tmp_path / "c" / "auth.conf"
    ).read_text()


@pytest.mark.parametrize("role", [r for r in ROLES if r is not Role.ADMIN])
def test_no_role_but_admin_may_create_unnamed_consumers_on_the_log(role: Role) -> None:
    rules = permissions(role)
    assert "$JS.API.CONSUMER.CREATE.TEP_EVENTS" in rules.publish_deny
    assert f"{inbox_prefix(role)}.>" in rules.subscribe_allow
    assert "_INBOX.>" not in rules.subscribe_allow


def test_each_role_publishes_only_its_own_events() -> None:
    client = permissions(Role.CLIENT).publish_allow
    executor = permissions(Role.EXECUTOR).publish_allow
    assert "plan.submitted.*" in client
    assert [s for s in client if s.startswith("action.")] == ["action.resume.requested.*.*"]
    assert not any(s.startswith(("plan.", "execution.")) for s in executor)
    assert "$JS.API.CONSUMER.MSG.NEXT.TEP_EVENTS.queue-http" in executor
    assert not any("MSG.NEXT" in s for s in client)
