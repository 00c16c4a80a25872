"""Bearer tokens of the HTTP API: configuration shapes, digests, scopes; never the token in an
error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventstore.config import TepSettings
from eventstore.errors import SettingsError
from tep.api.backend import admin_settings
from tep.api.config import ApiSettings
from tep.api.tokens import Scope, hash_token, load_tokens, new_token, parse_tokens

SECRET = "a-development-token-000"


def test_a_token_given_as_itself_or_as_its_digest_finds_its_holder() -> None:
    other = new_token()
    tokens = load_tokens(
        json.dumps(
            {
                "dev": {"token": SECRET, "scopes": ["read"]},
                "ci": {"token_sha256": hash_token(other).upper(), "scopes": ["submit", "read"]},
            }
        ),
        None,
    )
    dev, ci = tokens.holder(SECRET), tokens.holder(other)
    assert dev is not None and dev.name == "dev" and dev.scopes == {Scope.READ}
    assert ci is not None and ci.scopes == {Scope.SUBMIT, Scope.READ}
    assert tokens.holder("nope") is None and tokens.holder("") is None
    assert len(tokens) == 2


def test_a_tokens_file_and_the_variable_add_up(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"file": {"token": "t" * 20, "scopes": ["operate"]}}))
    tokens = load_tokens(json.dumps({"env": {"token": SECRET, "scopes": ["read"]}}), path)
    assert len(tokens) == 2
    with pytest.raises(SettingsError, match="also"):
        load_tokens(json.dumps({"again": {"token": "t" * 20, "scopes": ["read"]}}), path)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a JSON object"),
        ({"bad name!": {"token": SECRET, "scopes": ["read"]}}, "token name"),
        ({"x": "string"}, "must be an object"),
        ({"x": {"scopes": ["read"]}}, "exactly one of"),
        ({"x": {"token": SECRET, "token_sha256": "0" * 64, "scopes": ["read"]}}, "exactly one"),
        ({"x": {"token_sha256": "abc", "scopes": ["read"]}}, "64 hex digits"),
        ({"x": {"token": "short", "scopes": ["read"]}}, "at least 16"),
        ({"x": {"token": SECRET, "scopes": []}}, "non-empty list"),
        ({"x": {"token": SECRET, "scopes": ["admin"]}}, "unknown scope 'admin'"),
        ({"x": {"token": SECRET, "scopes": ["read"], "extra": 1}}, "unknown field 'extra'"),
        (
            {
                "a": {"token": SECRET, "scopes": ["read"]},
                "b": {"token": SECRET, "scopes": ["read"]},
            },
            "are equal",
        ),
    ],
)
def test_bad_configurations_are_refused_without_showing_the_token(
    document: object, message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as refused:
        parse_tokens(document)
    assert SECRET not in str(refused.value)


def test_unreadable_configurations(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_tokens(None, tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{" + SECRET)
    with pytest.raises(SettingsError, match="not JSON") as refused:
        load_tokens(None, tmp_path / "bad.json")
    assert SECRET not in str(refused.value)
    with pytest.raises(SettingsError, match="TEP_API_TOKENS: not JSON") as inline:
        load_tokens("{" + SECRET, None)
    assert SECRET not in str(inline.value)


def test_settings_read_the_environment_and_split_origins() -> None:
    api = ApiSettings.from_env(
        {"TEP_API_PORT": "9001", "TEP_API_CORS_ORIGINS": "https://a.example, https://b.example"}
    )
    assert api.port == 9001 and api.cors_origins == ("https://a.example", "https://b.example")
    assert ApiSettings.from_env({"TEP_API_CORS_ORIGINS": '["*"]'}).cors_origins == ("*",)
    assert SECRET not in repr(ApiSettings.from_env({"TEP_API_TOKENS": SECRET}))
    with pytest.raises(SettingsError, match="TEP_API_PORT"):
        ApiSettings.from_env({"TEP_API_PORT": "70000"})


def test_the_admin_identity_for_schedule_writes(tmp_path: Path) -> None:
    seed = tmp_path / "admin.nk"
    plain = TepSettings(nats_url="nats://127.0.0.1:4222")
    as_client = plain.model_copy(update={"nkey": tmp_path / "client.nk"})
    assert admin_settings(plain, ApiSettings()) == plain  # a local `tep up` or no auth
    assert admin_settings(as_client, ApiSettings()) is None  # another identity: refused
    chosen = admin_settings(as_client, ApiSettings(admin_nkey=seed))
    assert chosen is not None and chosen.nkey == seed and chosen.creds is None
