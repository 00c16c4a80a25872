"""Which addresses an HTTP call may connect to: the executor's SSRF guard, as pure rules.

A plan names any URL it likes, so by default the executor refuses addresses that reach inside
the network it runs in rather than the public internet: loopback, private, link-local, CGNAT,
multicast, unspecified, broadcast, reserved, documentation and benchmarking ranges, and the
cloud metadata endpoints; IPv6 forms that embed an IPv4 address (``::ffff:a.b.c.d``,
``::a.b.c.d``, NAT64, 6to4, Teredo) are judged by that IPv4 address too. An operator opens
what a queue needs with ``--allow-host`` (a name, or ``*.example.com`` for its subdomains;
allowed whatever it resolves to) and ``--allow-cidr`` (an address range).

The HTTP client asks :meth:`TargetPolicy.refusal` about every address it is about to connect
to, after DNS resolution, so the address judged is the one connected to.

Example:
    >>> policy = TargetPolicy.from_strings(allow_cidrs=["10.1.0.0/16"])
    >>> policy.refusal("10.1.2.3", ipaddress.ip_address("10.1.2.3")) is None
    True
    >>> policy.refusal("127.0.0.1", ipaddress.ip_address("127.0.0.1"))
    '127.0.0.1 is loopback; allow it with --allow-cidr 127.0.0.0/8'
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from eventstore.errors import TepError

__all__ = [
    "IPAddress",
    "IPNetwork",
    "InvalidTargetPolicyError",
    "TargetPolicy",
    "literal_address",
    "parse_allowed_cidr",
    "parse_allowed_host",
]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class InvalidTargetPolicyError(TepError, ValueError):
    """An ``--allow-host`` or ``--allow-cidr`` value that is not a host name or a CIDR."""


@dataclass(frozen=True)
class _Range:
    network: IPNetwork
    what: str


def _ranges(*rows: tuple[str, str]) -> tuple[_Range, ...]:
    return tuple(_Range(ipaddress.ip_network(cidr), what) for cidr, what in rows)


_METADATA = "a cloud metadata endpoint"

# The first match names the reason, so the narrow entries come before the blocks holding them.
_REFUSED_V4 = _ranges(
    ("169.254.169.254/32", _METADATA),  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
    ("169.254.170.2/32", _METADATA),  # AWS ECS task metadata
    ("169.254.170.23/32", _METADATA),  # AWS EKS pod identity
    ("100.100.100.200/32", _METADATA),  # Alibaba Cloud
    ("168.63.129.16/32", _METADATA),  # Azure WireServer
    ("192.0.0.192/32", _METADATA),  # Oracle Cloud (legacy)
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("169.254.0.0/16", "link-local"),
    ("100.64.0.0/10", "CGNAT (shared address space)"),
    ("192.0.0.0/24", "reserved for IETF protocol assignments"),
    ("192.0.2.0/24", "reserved for documentation"),
    ("198.51.100.0/24", "reserved for documentation"),
    ("203.0.113.0/24", "reserved for documentation"),
    ("198.18.0.0/15", "reserved for benchmarking"),
    ("192.88.99.0/24", "reserved (the former 6to4 relay anycast)"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
)
_REFUSED_V6 = _ranges(
    ("fd00:ec2::254/128", _METADATA),  # AWS
    ("fd00:ec2::23/128", _METADATA),  # AWS EKS pod identity
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "private (unique local)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
    ("2001:db8::/32", "reserved for documentation"),
    ("3fff::/20", "reserved for documentation"),
    ("100::/64", "reserved for discard"),
)

_MAPPED = IPv6Network("::ffff:0:0/96")
_COMPATIBLE = IPv6Network("::/96")
_NAT64 = (IPv6Network("64:ff9b::/96"), IPv6Network("64:ff9b:1::/48"))


@dataclass(frozen=True)
class _Verdict:
    what: str
    allow: IPNetwork


def _in_table(address: IPAddress, table: tuple[_Range, ...]) -> _Verdict | None:
    for row in table:
        if address in row.network:
            return _Verdict(row.what, row.network)
    return None


def _single(address: IPAddress) -> IPNetwork:
    return ipaddress.ip_network(f"{address}/{address.max_prefixlen}")


def _embedded(address: IPv6Address) -> list[tuple[str, IPv4Address]]:
    """The IPv4 addresses an IPv6 address stands for, with what kind of form it is."""
    if address in _MAPPED:
        return [("the IPv4-mapped form of", IPv4Address(int(address) & 0xFFFFFFFF))]
    if address in _COMPATIBLE:
        return [("the IPv4-compatible form of", IPv4Address(int(address)))]
    if any(address in prefix for prefix in _NAT64):
        return [("the NAT64 form of", IPv4Address(int(address) & 0xFFFFFFFF))]
    if address.sixtofour is not None:
        return [("a 6to4 address of", address.sixtofour)]
    if address.teredo is not None:
        server, client = address.teredo
        return [("a Teredo address of", client), ("a Teredo address via", server)]
    return []


def _verdict(address: IPAddress, allowed: Callable[[IPAddress], bool]) -> _Verdict | None:
    """Why ``address`` is refused (``None``: it is not); ``allowed`` opens embedded IPv4s."""
    if isinstance(address, IPv4Address):
        found = _in_table(address, _REFUSED_V4)
        if found is None and not address.is_global:
            found = _Verdict("not a globally routable address", _single(address))
        return found
    found = _in_table(address, _REFUSED_V6)
    if found is not None:
        return found
    embedded = _embedded(address)
    for kind, inner in embedded:
        if allowed(inner):
            continue
        reason = _verdict(inner, allowed)
        if reason is not None:
            return _Verdict(f"{kind} {inner}, which is {reason.what}", reason.allow)
    if embedded or address.is_global:
        return None
    return _Verdict("not a globally routable address", _single(address))


_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")


def _normal_host(host: str) -> str:
    """Lower case, no brackets around an IPv6 literal, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


def parse_allowed_host(text: str) -> str:
    """``text`` as an allow-list entry: a host name, ``*.domain`` or an IP address.

    Raises:
        InvalidTargetPolicyError: ``text`` is none of those (the message names it).
    """
    host = _normal_host(text)
    if not host.isascii():
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii")
    if _HOST_NAME.match(host) or literal_address(host) is not None:
        return host
    raise InvalidTargetPolicyError(
        f"allowed host {text!r} is not a host name (e.g. api.example.com, *.example.com or an "
        "IP address; no scheme, port or path)"
    )


def parse_allowed_cidr(text: str) -> IPNetwork:
    """``text`` as an allowed address range (a bare address is a range of one).

    Raises:
        InvalidTargetPolicyError: ``text`` is not an IPv4 or IPv6 CIDR (the message names it).
    """
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InvalidTargetPolicyError(
            f"allowed CIDR {text!r} is not an IPv4 or IPv6 CIDR (e.g. 10.0.0.0/8 or fd00::/8)"
        ) from None


def _legacy_ipv4(host: str) -> IPv4Address | None:
    """The address of a numeric IPv4 spelling as ``inet_aton`` reads it (``127.1``,
    ``2130706433``, ``0177.0.0.1``, ``0x7f.1``), else ``None``."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        if not part.isascii():
            return None
        try:
            if part[:2] in ("0x", "0X"):
                numbers.append(int(part[2:], 16))
            elif len(part) > 1 and part[0] == "0":
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10) if part.isdigit() else -1)
        except ValueError:
            return None
    *front, last = numbers
    if any(not 0 <= n <= 0xFF for n in front) or not 0 <= last < 1 << (8 * (4 - len(front))):
        return None
    value = last
    for index, number in enumerate(front):
        value |= number << (8 * (3 - index))
    return IPv4Address(value)


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells out, if it is an IP literal in any spelling.

    Accepts dotted quads, IPv6 (with or without brackets or a zone), and the legacy numeric
    IPv4 forms the C library still resolves (decimal, octal, hex, fewer than four parts).
    """
    host = _normal_host(host)
    plain = _plain_ip(host)
    return plain if plain is not None else _legacy_ipv4(host)


def _plain_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class TargetPolicy:
    """The addresses an executor may connect to: public ones, plus what is allowed.

    The default instance refuses every range listed in this module.

    Attributes:
        allow_hosts: host names (lower case; ``*.example.com`` matches its subdomains) allowed
            whatever they resolve to.
        allow_cidrs: address ranges allowed (an IPv6 address that embeds an IPv4 address is
            allowed when that IPv4 address is).
    """

    allow_hosts: frozenset[str] = frozenset()
    allow_cidrs: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_strings(
        cls, allow_hosts: Iterable[str] = (), allow_cidrs: Iterable[str] = ()
    ) -> TargetPolicy:
        """A policy from ``--allow-host`` / ``--allow-cidr`` values.

        Raises:
            InvalidTargetPolicyError: a value is not a host name or a CIDR (naming it).
        """
        return cls(
            allow_hosts=frozenset(parse_allowed_host(host) for host in allow_hosts),
            allow_cidrs=tuple(parse_allowed_cidr(cidr) for cidr in allow_cidrs),
        )

    def allows_host(self, host: str) -> bool:
        """Whether ``host`` (as written in the URL) is on the allow-host list."""
        host = _normal_host(host)
        if host in self.allow_hosts:
            return True
        return any(
            entry.startswith("*.") and host.endswith(entry[1:]) for entry in self.allow_hosts
        )

    def _in_allowed_cidr(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allow_cidrs)

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why connecting to ``address`` for ``host`` is refused, or ``None`` if it may.

        ``host`` is the URL's host (a name or a literal), ``address`` the one about to be
        connected to. The reason is one line naming both and how to allow them.
        """
        if self.allows_host(host) or self._in_allowed_cidr(address):
            return None
        verdict = _verdict(address, self._in_allowed_cidr)
        if verdict is None:
            return None
        how = f"allow it with --allow-cidr {verdict.allow}"
        written = _normal_host(host)
        if literal_address(written) is None:
            return (
                f"{written} resolves to {address}, which is {verdict.what}; "
                f"{how} or --allow-host {written}"
            )
        if _plain_ip(written) is not None:
            return f"{address} is {verdict.what}; {how}"
        return f"{written} ({address}) is {verdict.what}; {how}"
