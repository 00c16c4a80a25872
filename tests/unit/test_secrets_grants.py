"""Secret grants: the accepted forms, host matching as the client connects, handler grants,
the secrets file, and one-line errors naming the bad entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventstore.errors import SettingsError
from executor.secret_grants import (
    Destination,
    InvalidGrantError,
    SecretGrants,
    grants_variable,
    parse_grant,
)


def grants(value: str, name: str = "TOKEN") -> SecretGrants:
    return SecretGrants.from_env({f"TEP_SECRET_{name}_HOSTS": value})


def allowed(grant: SecretGrants, url: str, name: str = "TOKEN") -> bool:
    return grant.refusal(name, Destination.of_url(url)) is None


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("api.example.com", "api.example.com"),
        ("  API.Example.COM. ", "api.example.com"),
        ("*.example.org", "*.example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1", "fe80::1"),
        ("*", "*"),
        ("handler:resize-image", "handler:resize-image"),
    ],
)
def test_accepted_grant_forms_are_normalised(text: str, parsed: str) -> None:
    assert parse_grant(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "https://api.example.com",
        "api.example.com:443",
        "api.example.com/v1",
        "api.*.example.com",
        "*example.com",
        "**.example.com",
        "a b.example.com",
        "handler:",
        "handler:no spaces",
        "user@api.example.com",
    ],
)
def test_malformed_grants_are_refused_naming_the_entry(text: str) -> None:
    with pytest.raises(InvalidGrantError) as caught:
        parse_grant(text)

    assert repr(text) in str(caught.value)


def test_an_exact_grant_matches_its_host_in_any_case_port_or_scheme_only() -> None:
    grant = grants("api.example.com")

    assert allowed(grant, "https://api.example.com/x")
    assert allowed(grant, "http://API.EXAMPLE.com:8080/x")
    assert allowed(grant, "https://api.example.com./x")
    assert not allowed(grant, "https://example.com/")
    assert not allowed(grant, "https://a.api.example.com/")
    assert not allowed(grant, "https://api.example.com.evil.net/")


def test_a_wildcard_grants_the_subdomains_not_the_domain_or_look_alikes() -> None:
    grant = grants("*.example.org")

    assert allowed(grant, "https://a.example.org/")
    assert allowed(grant, "https://a.b.example.org/")
    assert not allowed(grant, "https://example.org/")
    assert not allowed(grant, "https://evilexample.org/")
    assert not allowed(grant, "https://example.org.evil.net/")


def test_star_grants_every_host_and_handler() -> None:
    grant = grants("*")

    assert allowed(grant, "https://anything.example/")
    assert grant.refusal("TOKEN", Destination.handler("resize")) is None


def test_hosts_are_compared_as_the_client_connects_to_them() -> None:
    grant = grants("api.example.com,bücher.example,::1")

    # userinfo and fragments do not change the host connected to: that is what counts.
    assert not allowed(grant, "https://api.example.com@evil.net/")
    assert not allowed(grant, "https://evil.net#@api.example.com")
    assert allowed(grant, "https://user:pw@api.example.com/")
    # International names in either spelling; U+3002 is a dot to IDNA.
    assert allowed(grant, "https://BÜCHER.example/")
    assert allowed(grant, "https://xn--bcher-kva.example/")
    assert allowed(grant, "https://api\u3002example.com/")
    assert allowed(grant, "http://[::1]:8080/")


def test_a_url_without_a_host_has_no_destination() -> None:
    with pytest.raises(ValueError):
        Destination.of_url("http:///x")


def test_a_handler_grant_covers_that_handler_type_only() -> None:
    grant = grants("handler:resize,api.example.com")

    assert grant.refusal("TOKEN", Destination.handler("resize")) is None
    assert grant.refusal("TOKEN", Destination.handler("crop")) is not None
    assert not allowed(grant, "https://resize/")
    assert grants("api.example.com").refusal("TOKEN", Destination.handler("resize")) == (
        "secret TOKEN is not granted to handler resize (granted: api.example.com); add "
        "handler:resize to TEP_SECRET_TOKEN_HOSTS to allow it"
    )


def test_an_ungranted_secret_names_the_variable_that_would_grant_it() -> None:
    refusal = SecretGrants.from_env({}).refusal("api-token", Destination.handler("resize"))

    assert refusal == (
        "secret api-token is not granted to any host: set "
        "TEP_SECRET_API_TOKEN_HOSTS=handler:resize (or * for any)"
    )
    assert grants_variable("api-token") == "TEP_SECRET_API_TOKEN_HOSTS"


def test_names_match_upper_cased_with_underscores_and_empty_entries_are_skipped() -> None:
    grant = SecretGrants.from_env({"TEP_SECRET_API_TOKEN_HOSTS": "a.example.com,, b.example.com,"})

    assert grant.granted("api-token") == {"a.example.com", "b.example.com"}
    assert grant.granted("OTHER") == frozenset()


def test_the_secrets_file_adds_grants_to_the_variables(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"API_TOKEN": ["*.example.org"], "s3-key": ["handler:resize", "*"]}))

    grant = SecretGrants.from_env(
        {"TEP_SECRET_API_TOKEN_HOSTS": "api.example.com", "TEP_EXECUTOR_SECRETS_FILE": str(path)}
    )

    assert grant.granted("API_TOKEN") == {"api.example.com", "*.example.org"}
    assert grant.granted("S3_KEY") == {"handler:resize", "*"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read it"),
        ("{not json", "not JSON"),
        ('["API_TOKEN"]', "expected a JSON object"),
        ('{"API_TOKEN": "api.example.com"}', "entry 'API_TOKEN': expected"),
        ('{"API_TOKEN": [1]}', "entry 'API_TOKEN': expected"),
        ('{"": ["api.example.com"]}', "entry '': expected"),
        ('{"API_TOKEN": ["ok.example.com", "http://x"]}', "entry 'API_TOKEN': 'http://x' is"),
    ],
)
def test_a_bad_secrets_file_is_one_line_naming_the_file_and_entry(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "secrets.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(SettingsError) as caught:
        SecretGrants.from_env({"TEP_EXECUTOR_SECRETS_FILE": str(path)})

    message = str(caught.value)
    assert message.startswith(f"TEP_EXECUTOR_SECRETS_FILE={path}: ")
    assert expected in message and "\n" not in message


def test_every_malformed_variable_is_named() -> None:
    with pytest.raises(SettingsError) as caught:
        SecretGrants.from_env(
            {"TEP_SECRET_A_HOSTS": "ok.example.com,a/b", "TEP_SECRET_B_HOSTS": "x:1"}
        )

    message = str(caught.value)
    assert "TEP_SECRET_A_HOSTS: 'a/b'" in message and "TEP_SECRET_B_HOSTS: 'x:1'" in message
