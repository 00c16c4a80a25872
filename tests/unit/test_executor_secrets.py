"""{{secrets.NAME}}: resolved from the environment where granted, scrubbed from everything
recorded; refused when unset, too short, ungranted or aimed at the wrong host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eventstore.errors import SettingsError
from executor.errors import NonRetryableError
from executor.secret_grants import Destination
from executor.secrets import REDACTED, SecretScope, check_secret_environment

ENV = {
    "TEP_SECRET_API_TOKEN": "tok/en+1-value",
    "TEP_SECRET_API_TOKEN_HOSTS": "api.example.com",
    "TEP_SECRET_OTHER": "other-secret",
    "TEP_SECRET_OTHER_HOSTS": "*",
}


def to(url: str) -> Callable[[Any], Destination]:
    return lambda _: Destination.of_url(url)


API = to("https://api.example.com/v1")


def refusal(scope: SecretScope, value: Any, destination: Callable[[Any], Destination]) -> str:
    with pytest.raises(NonRetryableError) as caught:
        scope.resolve(value, destination=destination)
    assert caught.value.code == "secret_not_allowed"
    assert not caught.value.retryable
    return caught.value.message


def test_secrets_are_substituted_in_strings_keys_and_nested_values() -> None:
    scope = SecretScope(ENV)

    resolved = scope.resolve(
        {
            "url": "http://t/?k={{secrets.API_TOKEN}}",
            "h": {"{{secrets.OTHER}}": ["{{ secrets.OTHER }}"]},
        },
        destination=API,
    )

    assert resolved == {
        "url": "http://t/?k=tok/en+1-value",
        "h": {"other-secret": ["other-secret"]},
    }
    assert scope.active and scope.names == ("API_TOKEN", "OTHER")


def test_the_destination_is_judged_on_the_rendered_value() -> None:
    scope = SecretScope({**ENV, "TEP_SECRET_HOST": "api.example.com"})
    seen: list[Any] = []

    def destination(rendered: Any) -> Destination:
        seen.append(rendered)
        return Destination.of_url(rendered["url"])

    message = refusal(scope, {"url": "https://{{secrets.HOST}}/"}, destination)

    assert seen == [{"url": "https://api.example.com/"}]
    # The host is the secret here: the message is scrubbed before it is recorded.
    assert "HOST" in message and "api.example.com" not in scope.scrub_text(message)


def test_a_value_without_secrets_is_returned_as_is() -> None:
    scope = SecretScope(ENV)
    value = {"a": "{{input.x}}"}

    assert scope.resolve(value, destination=API) is value
    assert not scope.active


def test_a_missing_secret_names_the_secret_and_its_variable() -> None:
    scope = SecretScope(ENV)

    with pytest.raises(NonRetryableError) as caught:
        scope.resolve(["{{secrets.API_TOKEN}}", "{{secrets.NOPE}}"], destination=API)

    assert caught.value.code == "missing_secret"
    assert "NOPE" in caught.value.message and "TEP_SECRET_NOPE" in caught.value.message
    assert "tok/en+1" not in caught.value.message


def test_names_are_also_looked_up_upper_cased_with_underscores() -> None:
    scope = SecretScope(
        {"TEP_SECRET_STRIPE_KEY": "sk_live_123", "TEP_SECRET_STRIPE_KEY_HOSTS": "*"}
    )

    assert scope.resolve("{{secrets.stripe-key}}", destination=API) == "sk_live_123"


def test_a_secret_without_any_grant_is_refused_naming_the_variable_to_set() -> None:
    scope = SecretScope({"TEP_SECRET_API_TOKEN": "tok/en+1-value"})

    message = refusal(scope, "Bearer {{secrets.API_TOKEN}}", API)

    assert message == (
        "secret API_TOKEN is not granted to any host: set "
        "TEP_SECRET_API_TOKEN_HOSTS=api.example.com (or * for any)"
    )


def test_a_secret_aimed_at_a_host_it_is_not_granted_is_refused() -> None:
    scope = SecretScope(ENV)

    message = refusal(scope, "{{secrets.API_TOKEN}}", to("https://evil.example.net/"))

    assert "API_TOKEN" in message and "evil.example.net" in message
    assert "TEP_SECRET_API_TOKEN_HOSTS" in message and "tok/en+1" not in message


def test_every_secret_of_a_request_must_be_granted() -> None:
    scope = SecretScope({**ENV, "TEP_SECRET_OTHER_HOSTS": "other.example.com"})

    message = refusal(scope, ["{{secrets.API_TOKEN}}", "{{secrets.OTHER}}"], API)

    assert "OTHER" in message and "API_TOKEN" not in message


def test_a_secret_shorter_than_eight_characters_is_refused_naming_variable_and_minimum() -> None:
    scope = SecretScope({"TEP_SECRET_PIN": "1234567", "TEP_SECRET_PIN_HOSTS": "*"})

    message = refusal(scope, "{{secrets.PIN}}", API)

    assert "TEP_SECRET_PIN" in message and "at least 8" in message and "1234567" not in message
    assert not scope.active


def test_a_grant_variable_cannot_be_used_as_a_secret() -> None:
    scope = SecretScope(ENV)

    message = refusal(scope, "{{secrets.API_TOKEN_HOSTS}}", API)

    assert "not a secret" in message and "api.example.com" not in message


def test_a_request_whose_host_cannot_be_told_is_invalid() -> None:
    scope = SecretScope(ENV)

    with pytest.raises(NonRetryableError) as caught:
        scope.resolve("{{secrets.OTHER}}", destination=to("http:///path"))

    assert caught.value.code == "invalid_request"


def test_scrubbing_removes_raw_url_encoded_and_json_escaped_forms() -> None:
    scope = SecretScope({"TEP_SECRET_T": 'a b/"c"-xyz', "TEP_SECRET_T_HOSTS": "*"})
    scope.resolve("{{secrets.T}}", destination=API)

    text = 'raw a b/"c"-xyz url a%20b%2F%22c%22-xyz plus a+b%2F%22c%22-xyz json a b/\\"c\\"-xyz'

    assert (
        scope.scrub_text(text) == f"raw {REDACTED} url {REDACTED} plus {REDACTED} json {REDACTED}"
    )


def test_scrubbing_walks_outputs() -> None:
    scope = SecretScope(ENV)
    scope.resolve("{{secrets.API_TOKEN}}", destination=API)

    scrubbed = scope.scrub(
        {"headers": {"auth": "Bearer tok/en+1-value"}, "n": 1, "l": ["tok/en+1-value"]}
    )

    assert scrubbed == {"headers": {"auth": f"Bearer {REDACTED}"}, "n": 1, "l": [REDACTED]}


def test_the_environment_check_passes_a_sound_environment() -> None:
    check_secret_environment({**ENV, "PATH": "/bin", "TEP_NATS_URL": "nats://x"})


def test_the_environment_check_names_every_problem_on_one_line_and_never_a_value(
    tmp_path: Any,
) -> None:
    bad_file = tmp_path / "grants.json"
    bad_file.write_text('{"API_TOKEN": "api.example.com"}')
    env = {
        **ENV,
        "TEP_SECRET_PIN": "12345",
        "TEP_SECRET_EMPTY": "",
        "TEP_SECRET_API_TOKEN_HOSTS": "https://api.example.com/",
        "TEP_EXECUTOR_SECRETS_FILE": str(bad_file),
    }

    with pytest.raises(SettingsError) as caught:
        check_secret_environment(env)

    message = str(caught.value)
    assert "\n" not in message
    assert "TEP_SECRET_PIN holds 5 characters" in message and "at least 8" in message
    assert "TEP_SECRET_EMPTY holds 0 characters" in message
    assert "TEP_SECRET_API_TOKEN_HOSTS" in message and "https://api.example.com/" in message
    assert "TEP_EXECUTOR_SECRETS_FILE" in message and "'API_TOKEN'" in message
    assert "12345" not in message and "tok/en+1" not in message
