"""The server configs in deploy/nats/ are valid and enforce authentication as shipped.

Each config is copied next to identities written by ``tep creds init`` (its
``include "creds/auth.conf"`` is relative to the file). The running server gets a free client
port and monitoring port from flags, which nats-server applies over the file, and a private
store directory in its copy (the server refuses a flag that repeats the file's ``store_dir``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import nats
import nkeys
import pytest
from nats.errors import AuthorizationError

from eventstore.access import ROLES, Role
from eventstore.config import TepSettings
from eventstore.jetstream.connection import connect_as
from tep.creds import init_credentials, seed_path
from tep.server import EmbeddedServer, find_free_port, find_server_binary

pytestmark = pytest.mark.anyio

CONFIG_DIR = Path(__file__).resolve().parents[2] / "deploy" / "nats"
SHIPPED = ["single.conf", "cluster-1.conf", "cluster-2.conf", "cluster-3.conf"]
_STORE_DIR = re.compile(r'store_dir:\s*"[^"]*"')


def _copy(name: str, directory: Path) -> Path:
    copy = directory / name
    shutil.copyfile(CONFIG_DIR / name, copy)
    return copy


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    """``nats-server -c CONFIG -t``: parse the configuration (and its includes) and exit."""
    return subprocess.run(
        [find_server_binary(), "-c", str(config), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    """The identities of ``tep creds init``, where the shipped configs include them from."""
    directory = tmp_path / "creds"
    init_credentials(directory, settings=TepSettings())
    return directory


class ShippedServer:
    """deploy/nats/single.conf running as shipped, on free ports and a private store."""

    def __init__(self, directory: Path) -> None:
        self.port = find_free_port()
        self.monitor_port = find_free_port()
        store = directory / "store"
        config = directory / "single.conf"
        shipped = (CONFIG_DIR / "single.conf").read_text()
        assert _STORE_DIR.search(shipped), "single.conf: jetstream.store_dir"
        config.write_text(_STORE_DIR.sub(f'store_dir: "{store}"', shipped))
        self.server = EmbeddedServer(
            data_dir=store,
            port=self.port,
            config_file=config,
            extra_args=["-p", str(self.port), "-m", str(self.monitor_port)],
            log_file=directory / "nats-server.log",
        )

    @property
    def url(self) -> str:
        return self.server.url

    def varz(self) -> dict[str, Any]:
        """The server's /varz monitoring document."""
        url = f"http://127.0.0.1:{self.monitor_port}/varz"
        with urllib.request.urlopen(url, timeout=5) as response:
            document: dict[str, Any] = json.load(response)
        return document


@pytest.fixture
def single(tmp_path: Path, creds: Path) -> Iterator[ShippedServer]:
    shipped = ShippedServer(tmp_path)
    shipped.server.start()
    try:
        yield shipped
    finally:
        shipped.server.stop()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_is_valid_with_the_generated_credentials(
    name: str, tmp_path: Path, creds: Path
) -> None:
    result = _check(_copy(name, tmp_path))
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_config_without_its_credentials_is_refused(name: str, tmp_path: Path) -> None:
    result = _check(_copy(name, tmp_path))
    assert result.returncode != 0
    assert "creds/auth.conf" in result.stderr + result.stdout


async def _refused(url: str, **options: Any) -> None:
    """Assert that the server answers a connection with ``options`` with an authorization
    violation (what the server says, whatever the client library makes of it)."""
    with pytest.raises(nats.errors.Error) as refused:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5, **options)
        await nc.close()
    error = refused.value
    assert isinstance(error, AuthorizationError) or "authorization violation" in str(error).lower()


async def test_a_connection_without_credentials_is_refused(single: ShippedServer) -> None:
    await _refused(single.url)


async def test_a_key_the_server_does_not_know_is_refused(
    single: ShippedServer, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.nk"
    stranger.write_bytes(nkeys.encode_seed(bytes(32), nkeys.PREFIX_BYTE_USER) + b"\n")
    await _refused(single.url, nkeys_seed=str(stranger))


async def test_the_client_seed_connects_and_reaches_jetstream(
    single: ShippedServer, creds: Path
) -> None:
    settings = TepSettings(nats_url=single.url, nkey=seed_path(creds, Role.CLIENT))
    nc = await connect_as(settings, Role.CLIENT, name="client", reconnect=False)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


@pytest.mark.parametrize("role", [role for role in ROLES if role is not Role.CLIENT])
async def test_every_role_seed_connects(single: ShippedServer, creds: Path, role: Role) -> None:
    settings = TepSettings(nats_url=single.url, nkey=seed_path(creds, role))
    nc = await connect_as(settings, role, name=role.value, reconnect=False)
    assert nc.is_connected
    await nc.close()


async def test_the_server_listens_on_loopback_only(single: ShippedServer) -> None:
    varz = await anyio.to_thread.run_sync(single.varz)
    assert varz["host"] == "127.0.0.1"
    assert varz["http_host"] == "127.0.0.1"
    assert varz["auth_required"] is True
