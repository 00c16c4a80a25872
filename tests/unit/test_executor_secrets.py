"""{{secrets.NAME}}: resolved from the environment, scrubbed from everything recorded."""

from __future__ import annotations

import pytest

from executor.errors import NonRetryableError
from executor.secrets import REDACTED, SecretScope

ENV = {"TEP_SECRET_API_TOKEN": "tok/en+1", "TEP_SECRET_OTHER": "zz"}


def test_secrets_are_substituted_in_strings_keys_and_nested_values() -> None:
    scope = SecretScope(ENV)

    resolved = scope.resolve(
        {
            "url": "http://t/?k={{secrets.API_TOKEN}}",
            "h": {"{{secrets.OTHER}}": ["{{ secrets.OTHER }}"]},
        }
    )

    assert resolved == {"url": "http://t/?k=tok/en+1", "h": {"zz": ["zz"]}}
    assert scope.active


def test_a_value_without_secrets_is_returned_as_is() -> None:
    scope = SecretScope(ENV)
    value = {"a": "{{input.x}}"}

    assert scope.resolve(value) is value
    assert not scope.active


def test_a_missing_secret_names_the_secret_and_its_variable() -> None:
    scope = SecretScope(ENV)

    with pytest.raises(NonRetryableError) as caught:
        scope.resolve(["{{secrets.API_TOKEN}}", "{{secrets.NOPE}}"])

    assert caught.value.code == "missing_secret"
    assert "NOPE" in caught.value.message and "TEP_SECRET_NOPE" in caught.value.message
    assert "tok/en+1" not in caught.value.message


def test_names_are_also_looked_up_upper_cased_with_underscores() -> None:
    scope = SecretScope({"TEP_SECRET_STRIPE_KEY": "sk"})

    assert scope.resolve("{{secrets.stripe-key}}") == "sk"


def test_scrubbing_removes_raw_url_encoded_and_json_escaped_forms() -> None:
    scope = SecretScope({"TEP_SECRET_T": 'a b/"c"'})
    scope.resolve("{{secrets.T}}")

    text = 'raw a b/"c" url a%20b%2F%22c%22 plus a+b%2F%22c%22 json a b/\\"c\\"'

    assert (
        scope.scrub_text(text) == f"raw {REDACTED} url {REDACTED} plus {REDACTED} json {REDACTED}"
    )


def test_scrubbing_walks_outputs() -> None:
    scope = SecretScope(ENV)
    scope.resolve("{{secrets.API_TOKEN}}")

    scrubbed = scope.scrub({"headers": {"auth": "Bearer tok/en+1"}, "n": 1, "l": ["tok/en+1"]})

    assert scrubbed == {"headers": {"auth": f"Bearer {REDACTED}"}, "n": 1, "l": [REDACTED]}
