"""TLS on the client port of a real nats-server, with certificates made by the test.

A throwaway CA signs a server certificate for IP 127.0.0.1 and a client certificate
(:func:`_pki`). The server runs from a config file with a ``tls`` block (``verify: false``:
the client checks the server; ``verify: true``: the server also requires a client certificate
signed by its CA). The server's own monitoring (``/connz``) shows that a connection is
encrypted and which client certificate it showed.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from eventstore.access import Role
from eventstore.config import TepSettings
from eventstore.errors import NatsUnavailableError, TepError
from eventstore.events import PlanSubmitted
from eventstore.jetstream.connection import connect_as
from eventstore.jetstream.log import EventLog
from eventstore.plan import Action, Plan, RequestSpec
from projections.buckets import ensure_current_view
from tep.provision import provision
from tep.server import EmbeddedServer, find_free_port

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
PLAN = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://127.0.0.1:1/x"))])
CLIENT_NAME = "tep-client"


@dataclass(frozen=True)
class Pki:
    """The PEM files of a CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    """A client certificate signed by another CA."""
    stranger_key: Path


class _Authority:
    """A CA key and its self-signed certificate, issuing short-lived certificates."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(name)
        self.cert = (
            _builder(self.name, self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self, directory: Path, name: str, usage: x509.ObjectIdentifier, ip: str | None = None
    ) -> tuple[Path, Path]:
        """A certificate (and its key) for ``usage``, written as ``NAME.pem`` / ``NAME.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _builder(_name(name), self.name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if ip is not None:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
            builder = builder.add_extension(san, critical=False)
        return _write(directory, name, key, builder.sign(self.key, hashes.SHA256()))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


def _write(
    directory: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> tuple[Path, Path]:
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "tls"
    directory.mkdir()
    authority = _Authority("tep test CA")
    ca = directory / "ca.pem"
    ca.write_bytes(authority.cert.public_bytes(serialization.Encoding.PEM))
    server = authority.issue(directory, "server", ExtendedKeyUsageOID.SERVER_AUTH, "127.0.0.1")
    client = authority.issue(directory, CLIENT_NAME, ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = _Authority("another CA").issue(
        directory, "stranger", ExtendedKeyUsageOID.CLIENT_AUTH
    )
    return Pki(ca, *server, *client, *stranger)


class TlsServer:
    """A nats-server with JetStream whose client port requires TLS."""

    def __init__(self, directory: Path, pki: Pki, *, verify: bool) -> None:
        self.port = find_free_port()
        self.monitor_port = find_free_port()
        directory.mkdir(parents=True)
        store = directory / "store"
        config = directory / "nats.conf"
        config.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'http: "127.0.0.1:{self.monitor_port}"\n'
            f'jetstream {{ store_dir: "{store}" }}\n'
            "tls {\n"
            f'  cert_file: "{pki.server_cert}"\n'
            f'  key_file: "{pki.server_key}"\n'
            f'  ca_file: "{pki.ca}"\n'
            f"  verify: {'true' if verify else 'false'}\n"
            "}\n"
        )
        self.server = EmbeddedServer(
            data_dir=store,
            port=self.port,
            config_file=config,
            log_file=directory / "nats-server.log",
        )

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"

    def connection(self, name: str) -> dict[str, Any]:
        """The server's /connz entry of the client connection called ``name``."""
        url = f"http://127.0.0.1:{self.monitor_port}/connz?auth=true"
        with urllib.request.urlopen(url, timeout=5) as response:
            connz: dict[str, Any] = json.load(response)
        entries: list[dict[str, Any]] = [c for c in connz["connections"] if c.get("name") == name]
        assert len(entries) == 1, connz["connections"]
        return entries[0]


def _running(directory: Path, pki: Pki, *, verify: bool) -> Iterator[TlsServer]:
    for attempt in range(3):  # a port found free may be taken before the server binds it
        server = TlsServer(directory / str(attempt), pki, verify=verify)
        try:
            server.server.start()
            break
        except TepError:
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.server.stop()


@pytest.fixture
def tls_server(tmp_path: Path, pki: Pki) -> Iterator[TlsServer]:
    """``verify: false``: any client that trusts the CA may connect."""
    yield from _running(tmp_path / "nats", pki, verify=False)


@pytest.fixture
def verifying_server(tmp_path: Path, pki: Pki) -> Iterator[TlsServer]:
    """``verify: true``: clients must show a certificate signed by the CA."""
    yield from _running(tmp_path / "nats", pki, verify=True)


async def _round_trip(settings: TepSettings, server: TlsServer) -> dict[str, Any]:
    """Provision, append a submission and read it back over one TLS connection; the server's
    /connz entry of that connection."""
    nc = await connect_as(settings, Role.ADMIN, name="tls-round-trip")
    try:
        await provision(nc.jetstream(), settings)
        await ensure_current_view(nc.jetstream(), settings)
        log = EventLog(nc, settings)
        submitted = PlanSubmitted(execution_id="e1", plan=PLAN)
        await log.append(submitted)
        assert [r.event for r in await log.read_execution("e1")] == [submitted]
        return server.connection("tls-round-trip")
    finally:
        await nc.close()


async def _refusal(settings: TepSettings) -> str:
    with pytest.raises(NatsUnavailableError) as refused:
        await connect_as(settings, Role.ADMIN, name="tls-refused", timeout_s=5)
    message = str(refused.value)
    assert "\n" not in message
    return message


def _tep(*args: str) -> subprocess.CompletedProcess[str]:
    """``tep ARGS`` as a child process, with no TEP_* settings of this environment but the
    state directory of tests/conftest.py."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEP_")}
    env["TEP_STATE_DIR"] = os.environ["TEP_STATE_DIR"]
    return subprocess.run(
        [sys.executable, "-m", "tep.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_client_trusting_the_ca_appends_and_reads_events_over_tls(
    tls_server: TlsServer, pki: Pki
) -> None:
    settings = TepSettings(nats_url=tls_server.url, tls_ca=pki.ca)

    connection = await _round_trip(settings, tls_server)

    assert connection["tls_version"].startswith("1.")
    assert connection["tls_cipher_suite"]


async def test_without_the_ca_the_server_certificate_is_refused_in_one_line(
    tls_server: TlsServer,
) -> None:
    message = await _refusal(TepSettings(nats_url=tls_server.url))

    assert message == (
        f"TLS with NATS at {tls_server.url} failed: the server's certificate is not trusted "
        "(unable to get local issuer certificate): give the CA that signed it with --tls-ca "
        "(TEP_TLS_CA)"
    )


async def test_a_verifying_server_refuses_a_client_without_a_certificate(
    verifying_server: TlsServer, pki: Pki
) -> None:
    message = await _refusal(TepSettings(nats_url=verifying_server.url, tls_ca=pki.ca))

    # The server's alert names the reason; when its close arrives first, the message says
    # what a closed TLS set-up usually means.
    assert "requires a client certificate" in message
    assert "--tls-cert and --tls-key" in message


async def test_a_verifying_server_refuses_a_certificate_of_another_ca(
    verifying_server: TlsServer, pki: Pki
) -> None:
    settings = TepSettings(
        nats_url=verifying_server.url,
        tls_ca=pki.ca,
        tls_cert=pki.stranger_cert,
        tls_key=pki.stranger_key,
    )

    message = await _refusal(settings)

    assert message.startswith(
        f"TLS with NATS at {verifying_server.url} failed: the server refused the handshake ("
    )
    assert "unknown ca" in message


async def test_a_verifying_server_accepts_a_client_certificate_of_its_ca(
    verifying_server: TlsServer, pki: Pki
) -> None:
    settings = TepSettings(
        nats_url=verifying_server.url,
        tls_ca=pki.ca,
        tls_cert=pki.client_cert,
        tls_key=pki.client_key,
    )

    connection = await _round_trip(settings, verifying_server)

    assert connection["tls_version"].startswith("1.")
    assert connection["tls_peer_certs"][0]["subject"] == f"CN={CLIENT_NAME}"


async def test_the_cli_works_over_tls_with_a_client_certificate(
    verifying_server: TlsServer, pki: Pki
) -> None:
    settings = TepSettings(
        nats_url=verifying_server.url,
        tls_ca=pki.ca,
        tls_cert=pki.client_cert,
        tls_key=pki.client_key,
    )
    await _round_trip(settings, verifying_server)
    tls = ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert)]

    result = _tep(
        "status", "nope", "--nats-url", verifying_server.url, *tls, "--tls-key", str(pki.client_key)
    )

    assert (result.returncode, result.stderr) == (2, "tep: unknown execution 'nope'\n")


def test_the_cli_names_a_missing_ca_file_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"

    result = _tep("status", "nope", "--nats-url", "tls://127.0.0.1:1", "--tls-ca", str(missing))

    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert str(missing) in result.stderr and "tls_ca" in result.stderr
