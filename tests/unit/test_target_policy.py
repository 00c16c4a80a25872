"""The executor's target policy: which addresses an HTTP call may connect to."""

from __future__ import annotations

import os
from ipaddress import ip_address
from unittest.mock import patch

import pytest

from eventstore.errors import SettingsError
from executor.config import ExecutorConfig
from executor.target_policy import (
    InvalidTargetPolicyError,
    TargetPolicy,
    literal_address,
    parse_allowed_cidr,
    parse_allowed_host,
)
from tep.cli.executor import config_from
from tep.cli.main import build_parser

DEFAULT = TargetPolicy()


def refusal(address: str, host: str | None = None, policy: TargetPolicy = DEFAULT) -> str | None:
    return policy.refusal(host or address, ip_address(address))


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private (unique local)"),
        ("fd12:3456::1", "private (unique local)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("100.64.0.1", "CGNAT (shared address space)"),
        ("100.127.255.255", "CGNAT (shared address space)"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.0.8", "reserved for IETF protocol assignments"),
        ("192.0.2.1", "reserved for documentation"),
        ("198.51.100.1", "reserved for documentation"),
        ("203.0.113.1", "reserved for documentation"),
        ("2001:db8::1", "reserved for documentation"),
        ("198.18.0.1", "reserved for benchmarking"),
        ("198.19.255.255", "reserved for benchmarking"),
        ("100::1", "reserved for discard"),
        ("fec0::1", "site-local"),
    ],
)
def test_internal_addresses_are_refused_by_default(address: str, why: str) -> None:
    reason = refusal(address)

    assert reason is not None
    assert reason.startswith(f"{ip_address(address)} is {why}; allow it with --allow-cidr ")


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle
        "169.254.170.2",  # AWS ECS
        "100.100.100.200",  # Alibaba
        "168.63.129.16",  # Azure WireServer (a public address)
        "fd00:ec2::254",  # AWS over IPv6
    ],
)
def test_cloud_metadata_endpoints_are_refused_and_named(address: str) -> None:
    assert refusal(address) == (
        f"{address} is a cloud metadata endpoint; allow it with --allow-cidr "
        f"{address}/{ip_address(address).max_prefixlen}"
    )


@pytest.mark.parametrize(
    ("address", "form", "inner", "why"),
    [
        ("::ffff:127.0.0.1", "the IPv4-mapped form of", "127.0.0.1", "loopback"),
        ("::ffff:7f00:1", "the IPv4-mapped form of", "127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "the IPv4-mapped form of", "169.254.169.254", "a cloud"),
        ("::127.0.0.1", "the IPv4-compatible form of", "127.0.0.1", "loopback"),
        ("::10.1.2.3", "the IPv4-compatible form of", "10.1.2.3", "private"),
        ("64:ff9b::10.0.0.1", "the NAT64 form of", "10.0.0.1", "private"),
        ("64:ff9b::127.0.0.1", "the NAT64 form of", "127.0.0.1", "loopback"),
        ("64:ff9b:1::a9fe:a9fe", "the NAT64 form of", "169.254.169.254", "a cloud"),
        ("2002:7f00:1::1", "a 6to4 address of", "127.0.0.1", "loopback"),
        ("2002:a9fe:a9fe::", "a 6to4 address of", "169.254.169.254", "a cloud"),
        # Teredo: server 65.54.227.120, client 192.168.1.1 (stored inverted).
        ("2001:0:4136:e378:8000:63bf:3f57:fefe", "a Teredo address of", "192.168.1.1", "private"),
    ],
)
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_embed(
    address: str, form: str, inner: str, why: str
) -> None:
    reason = refusal(address)

    assert reason is not None
    assert reason.startswith(f"{ip_address(address)} is {form} {inner}, which is {why}")


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(address) is None


def test_a_name_that_resolves_inside_names_the_host_the_address_and_both_ways_out() -> None:
    assert refusal("127.0.0.1", host="localhost") == (
        "localhost resolves to 127.0.0.1, which is loopback; "
        "allow it with --allow-cidr 127.0.0.0/8 or --allow-host localhost"
    )
    assert refusal("10.2.3.4", host="Internal.Example.COM.") == (
        "internal.example.com resolves to 10.2.3.4, which is private; "
        "allow it with --allow-cidr 10.0.0.0/8 or --allow-host internal.example.com"
    )


def test_a_legacy_ip_spelling_names_both_spellings() -> None:
    assert refusal("127.0.0.1", host="0x7f000001") == (
        "0x7f000001 (127.0.0.1) is loopback; allow it with --allow-cidr 127.0.0.0/8"
    )


def test_an_allowed_cidr_opens_its_addresses_only() -> None:
    policy = TargetPolicy.from_strings(allow_cidrs=["10.20.0.0/16", "fd00:1::/64"])

    assert refusal("10.20.3.4", policy=policy) is None
    assert refusal("10.20.3.4", host="db.internal", policy=policy) is None
    assert refusal("fd00:1::5", policy=policy) is None
    assert refusal("10.21.0.1", policy=policy) is not None
    assert refusal("fd00:2::5", policy=policy) is not None
    assert refusal("127.0.0.1", policy=policy) is not None


def test_an_allowed_ipv4_cidr_opens_the_ipv6_forms_of_its_addresses() -> None:
    policy = TargetPolicy.from_strings(allow_cidrs=["127.0.0.0/8"])

    assert refusal("::ffff:127.0.0.1", policy=policy) is None
    assert refusal("64:ff9b::127.0.0.1", policy=policy) is None
    assert refusal("::ffff:10.0.0.1", policy=policy) is not None
    assert refusal("::1", policy=policy) is not None


def test_an_allowed_host_is_allowed_whatever_it_resolves_to() -> None:
    policy = TargetPolicy.from_strings(allow_hosts=["API.example.com."])

    assert refusal("127.0.0.1", host="api.example.com", policy=policy) is None
    assert refusal("169.254.169.254", host="API.EXAMPLE.COM.", policy=policy) is None
    assert refusal("127.0.0.1", host="other.example.com", policy=policy) is not None
    assert refusal("127.0.0.1", host="sub.api.example.com", policy=policy) is not None
    assert refusal("127.0.0.1", policy=policy) is not None


def test_a_wildcard_host_allows_every_subdomain_but_not_the_domain_itself() -> None:
    policy = TargetPolicy.from_strings(allow_hosts=["*.example.com"])

    assert refusal("10.0.0.1", host="a.example.com", policy=policy) is None
    assert refusal("10.0.0.1", host="a.b.example.com", policy=policy) is None
    assert refusal("10.0.0.1", host="example.com", policy=policy) is not None
    assert refusal("10.0.0.1", host="evilexample.com", policy=policy) is not None
    assert refusal("10.0.0.1", host="example.com.evil.net", policy=policy) is not None


def test_an_allowed_ip_literal_host_matches_that_literal() -> None:
    policy = TargetPolicy.from_strings(allow_hosts=["127.0.0.1", "[::1]"])

    assert refusal("127.0.0.1", policy=policy) is None
    assert refusal("::1", policy=policy) is None
    assert refusal("127.0.0.2", policy=policy) is not None


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F.0.0.01", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ],
)
def test_every_ip_spelling_is_read_as_the_address_it_means(spelling: str, address: str) -> None:
    assert literal_address(spelling) == ip_address(address)


@pytest.mark.parametrize(
    "host", ["localhost", "example.com", "1.2.3.4.5", "256.0.0.1", "08.0.0.1", "0x", "1..2", ""]
)
def test_names_and_impossible_numbers_are_not_literals(host: str) -> None:
    assert literal_address(host) is None


def test_allow_list_entries_are_normalised() -> None:
    assert parse_allowed_host(" API.Example.com. ") == "api.example.com"
    assert parse_allowed_host("*.Svc.Cluster.Local") == "*.svc.cluster.local"
    assert parse_allowed_host("[::1]") == "::1"
    assert parse_allowed_host("bücher.example") == "xn--bcher-kva.example"
    assert str(parse_allowed_cidr("10.1.2.3/8")) == "10.0.0.0/8"
    assert str(parse_allowed_cidr("10.1.2.3")) == "10.1.2.3/32"
    assert str(parse_allowed_cidr("fd00::/8")) == "fd00::/8"


@pytest.mark.parametrize(
    "host", ["http://api.example.com", "api.example.com:443", "a/b", "*", "*.", "a b", "-a.com"]
)
def test_an_allowed_host_that_is_not_a_host_name_is_refused_in_one_line(host: str) -> None:
    with pytest.raises(InvalidTargetPolicyError) as caught:
        TargetPolicy.from_strings(allow_hosts=[host])

    assert str(caught.value).startswith(f"allowed host {host!r} is not a host name")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "example.com", "10.0.0/8", "", "fd00::/129"])
def test_an_allowed_cidr_that_is_not_a_cidr_is_refused_in_one_line(cidr: str) -> None:
    with pytest.raises(InvalidTargetPolicyError) as caught:
        TargetPolicy.from_strings(allow_cidrs=[cidr])

    assert str(caught.value).startswith(f"allowed CIDR {cidr!r} is not an IPv4 or IPv6 CIDR")
    assert isinstance(caught.value, ValueError)


def test_the_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        DEFAULT.allow_cidrs = ()  # type: ignore[misc]


# ------------------------------------------------------------ settings and flags


def test_the_executor_reads_its_allow_lists_from_json_or_comma_separated_variables() -> None:
    config = ExecutorConfig.from_env(
        {
            "TEP_EXECUTOR_ALLOW_HOSTS": '["api.internal", "*.svc.local"]',
            "TEP_EXECUTOR_ALLOW_CIDRS": "10.20.0.0/16, fd00:1::/64",
        }
    )

    assert config.allow_hosts == ("api.internal", "*.svc.local")
    assert config.allow_cidrs == ("10.20.0.0/16", "fd00:1::/64")
    policy = config.target_policy()
    assert refusal("10.0.0.1", host="db.svc.local", policy=policy) is None
    assert refusal("10.20.0.1", policy=policy) is None
    assert refusal("10.21.0.1", policy=policy) is not None


def test_by_default_the_executor_allows_nothing_internal() -> None:
    assert ExecutorConfig.from_env({}).target_policy() == TargetPolicy()


def test_a_bad_cidr_in_the_variable_is_one_line_naming_variable_and_value() -> None:
    with pytest.raises(SettingsError) as caught:
        ExecutorConfig.from_env({"TEP_EXECUTOR_ALLOW_CIDRS": '["10.0.0.0/8", "10.0.0.0/33"]'})

    message = str(caught.value)
    assert "TEP_EXECUTOR_ALLOW_CIDRS" in message
    assert "allowed CIDR '10.0.0.0/33' is not an IPv4 or IPv6 CIDR" in message
    assert "\n" not in message


def test_a_variable_that_is_neither_json_nor_a_list_is_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        ExecutorConfig.from_env({"TEP_EXECUTOR_ALLOW_HOSTS": '["a.com"'})

    assert "TEP_EXECUTOR_ALLOW_HOSTS" in str(caught.value)
    assert "is not a JSON list of strings" in str(caught.value)


def test_repeated_flags_replace_the_variables() -> None:
    flags = "executor --allow-host a.internal --allow-cidr 10.1.0.0/16 --allow-cidr 127.0.0.1"
    args = build_parser().parse_args(flags.split())
    env = {"TEP_EXECUTOR_ALLOW_CIDRS": '["192.168.0.0/16"]'}

    with patch.dict(os.environ, env):
        config = config_from(args)
        unflagged = config_from(build_parser().parse_args(["executor"]))

    assert config.allow_hosts == ("a.internal",)
    assert config.allow_cidrs == ("10.1.0.0/16", "127.0.0.1/32")
    assert unflagged.allow_cidrs == ("192.168.0.0/16",)
